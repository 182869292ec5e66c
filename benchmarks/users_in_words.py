"""Users in words: does a text query find the users who will do what it says?

Issue 33 §3. On MovieLens-100K each user's last ``--horizon`` (10) events are held out: the
encoder (configs/pretrain/ml100k.yaml) is trained on the rest, and its user-text head
(`userfm.encoder.user_text.fit_user_text`) is aligned on the rest too: each user's input
but its last 10 events against the mean MiniLM vector of those 10 events' items (each item's
text: its title and genres). Then for each genre the query "<genre> movies" ranks the users by
the cosine between its MiniLM vector and their aligned vectors (`UserEmbeddings.search`); a
user's relevance is the share of that genre among their **held-out** 10 events, which neither
the encoder nor the head saw. NDCG@50 (graded by the share) is averaged over the 18 genres
(``unknown`` left out), for the head's two losses and beside controls:

- ``aligned``: the head with its default loss (cosine to the target vector);
- ``aligned_infonce``: the head trained with InfoNCE over the batch instead;
- ``history_share``: users ranked by the genre's share in their input history (no model);
- ``random``: users in a random order (the mean over 20 orders);
- ``another_user``: the aligned vectors of other users (each user scored with the vector of
  the user next in a seeded permutation): the control of a head that does not read its user.

    python benchmarks/users_in_words.py --quick      # 2 epochs, seed 0
    python benchmarks/users_in_words.py --seeds 0 1 2
    python benchmarks/users_in_words.py --valid      # the validation split: choose on it

``--valid`` first drops every user's last ``--horizon`` events (the test events, never read),
then runs the same protocol on what is left: the split the head's loss and target were chosen
on. Users with no input event left are not ranked (their count is printed).

The last line is one JSON object of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cold_items as ci  # noqa: E402
import pretrain_quality as pq  # noqa: E402

K = 50
#: the aligned rows: the head's loss of each
ALIGNED = {"aligned": "cosine", "aligned_infonce": "infonce"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=pq.DEFAULT_DATA, help="MovieLens-100K folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--horizon", type=int, default=10, help="held-out events per user")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's (100)")
    p.add_argument("--steps", type=int, default=500, help="alignment steps")
    p.add_argument("--text-model", default="all-MiniLM-L6-v2", help="alias or folder")
    p.add_argument("--valid", action="store_true", help="the validation split (see above)")
    p.add_argument("--quick", action="store_true", help="2 epochs, seed 0")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = args.epochs or 2, args.seeds[:1]
    return args


def ndcg_at(scores: np.ndarray, relevance: np.ndarray, k: int = K) -> float:
    """NDCG@k of ranking users by ``scores`` (ties by user order) against graded
    ``relevance``; 0 when no user is relevant."""
    order = np.argsort(-scores, kind="stable")[:k]
    discounts = 1.0 / np.log2(np.arange(2, len(order) + 2))
    ideal = float(np.sort(relevance)[::-1][: len(order)] @ discounts)
    return float(relevance[order] @ discounts) / ideal if ideal > 0 else 0.0


def genre_shares(histories: list[list[str]], genres_of: dict[str, set[str]], genres: list[str]):
    """(U, G) share of each genre among each user's events."""
    out = np.zeros((len(histories), len(genres)))
    for u, items in enumerate(histories):
        for item in items:
            for g, name in enumerate(genres):
                out[u, g] += name in genres_of.get(item, ())
        out[u] /= max(len(items), 1)
    return out


def split_log(
    log: Any, horizon: int, folder: Path, valid: bool = False
) -> tuple[Path, list[str], list, list]:
    """Write each user's events but their last ``horizon`` (the training log); returns its
    path, the users with events in it, their inputs and their held-out items. ``valid``:
    each user's last ``horizon`` events are dropped first (the validation split)."""
    events = log.to_pandas().rename(columns=ci.ML_COLUMNS)
    if valid:
        events = events[events.groupby("user").cumcount(ascending=False) >= horizon]
    last = events.groupby("user").cumcount(ascending=False) < horizon
    path = folder / "inputs.parquet"
    events[~last].to_parquet(path, index=False)
    users, inputs, future = [], [], []
    for user, part in events.groupby("user", sort=False):
        if len(part) > horizon:  # a user with an input left
            users.append(str(user))
            inputs.append(part["item"].tolist()[:-horizon])
            future.append(part["item"].tolist()[-horizon:])
    return path, users, inputs, future


def aligned_scores(
    args, seed: int, path: Path, items: Any, queries: list[str]
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Train the encoder on the inputs, then its head with each loss; returns the users (log
    order) and, per row (``aligned``: cosine, ``aligned_infonce``), the (U, G) cosine of each
    user's aligned vector to each query."""
    from userfm.data.readers import read_events
    from userfm.data.schema import EventSchema
    from userfm.encoder.text_model import encode_texts
    from userfm.encoder.user_text import fit_user_text

    cfg = ci.recipe_config("id", epochs=args.epochs, text_model=args.text_model, id_dropout=0)
    model, _ = ci.fit_recipe(cfg, {"source": str(path), "schema": ci.WARM_SCHEMA}, seed)
    inputs = read_events(str(path), EventSchema.from_dict(ci.WARM_SCHEMA))
    q = encode_texts(queries, model=args.text_model, progress=False)  # (G, text_dim)
    scores = {}
    for row, loss in ALIGNED.items():
        fit_user_text(model, inputs, items, text_columns=ci.TEXT_COLUMNS, horizon=args.horizon,
                      loss=loss, steps=args.steps, text_model=args.text_model, seed=seed,
                      progress=False)  # fmt: skip
        emb = model.embed(inputs, progress=False)
        scores[row] = emb.text_vectors @ q.T
    return emb.user_ids, scores


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pq.quiet()
    t0 = time.perf_counter()
    loaded = ci.load_ml100k(args.data)
    if loaded is None:
        return 0
    log, items = loaded
    genres_of = {i: set((g or "").split("|")) for i, g in zip(items.ids, items.columns["genres"])}
    genres = sorted({g for gs in genres_of.values() for g in gs if g and g != "unknown"})
    queries = [f"{g} movies" for g in genres]
    rows: dict[str, list[list[float]]] = {name: [] for name in (*ALIGNED, "another_user")}
    with tempfile.TemporaryDirectory() as tmp:
        path, users, inputs, future = split_log(log, args.horizon, Path(tmp), args.valid)
        relevance = genre_shares(future, genres_of, genres)  # (U, G)
        history = genre_shares(inputs, genres_of, genres)
        for seed in args.seeds:
            ids, scores = aligned_scores(args, seed, path, items, queries)
            assert ids == users, "users in another order than the split's"
            order = np.random.default_rng(seed).permutation(len(users))
            for name, s in (*scores.items(), ("another_user", scores["aligned"][order])):
                rows[name].append([ndcg_at(s[:, g], relevance[:, g]) for g in range(len(genres))])
    rng = np.random.default_rng(0)
    rand = [[ndcg_at(rng.random(len(users)), relevance[:, g]) for g in range(len(genres))]
            for _ in range(20)]  # fmt: skip
    table = {
        **{name: np.mean(rows[name], axis=0) for name in ALIGNED},  # (G,) over seeds
        "history_share": np.array(
            [ndcg_at(history[:, g], relevance[:, g]) for g in range(len(genres))]
        ),  # fmt: skip
        "another_user": np.mean(rows["another_user"], axis=0),
        "random": np.mean(rand, axis=0),
    }
    summary = report(table, genres, rows["aligned"], args, len(users), log.num_users)
    summary["seconds"] = round(time.perf_counter() - t0)
    print(json.dumps(summary))
    return 0


def report(table: dict[str, np.ndarray], genres: list[str], seeds: list, args, users: int,
           all_users: int):  # fmt: skip
    split = "validation split" if args.valid else "test split"
    print(f"\n== Users in words: MovieLens-100K {split}, {users} users ({all_users - users} "
          f"without input left out), NDCG@{K} of the query '<genre> movies' against each "
          f"user's held-out next {args.horizon} events ({len(seeds)} seed(s); "
          f"{pq.machine_description()}) ==")  # fmt: skip
    print(f"{'genre':<14}" + "".join(f"{r:>17}" for r in table))
    for g, name in enumerate(genres):
        print(f"{name:<14}" + "".join(f"{table[r][g]:>17.4f}" for r in table))
    means = {r: float(v.mean()) for r, v in table.items()}
    print(f"{'mean':<14}" + "".join(f"{means[r]:>17.4f}" for r in table))
    per_seed = [float(np.mean(s)) for s in seeds]
    diff = table["aligned"] - table["history_share"]
    won = int((diff > 0).sum())
    print(
        f"aligned per seed: {', '.join(f'{m:.4f}' for m in per_seed)}; aligned - "
        f"history_share {diff.mean():+.4f} (better on {won} of {len(genres)} genres)"
    )
    return {"split": "valid" if args.valid else "test", "ndcg@50": means,
            "aligned_per_seed": per_seed, "genres_won": won, "genres": len(genres),
            "users": users}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
