"""A new catalogue: what an encoder pretrained on one catalogue brings to another.

Issue 33 §2. MovieLens-100K's users and movies are each split at random into halves (a new
draw per seed): catalogue A is group-1 users' events on A movies, catalogue B group-2 users'
events on B movies; no user and no movie is shared. An encoder that reads items through their
text only (configs/pretrain/ml100k.yaml + the item table, ``item_ids: false``) is pretrained
on A, then on B it is scored:

- ``zero_shot``: no B training at all; B's movies are given to it with `add_items`;
- ``transfer``: fine-tuned (`PretrainModule(init_from=...)`) on the training part of a
  fraction of B's users (``--fractions``, default 5%, 10%, 25%, 100%);
- ``transfer_id``: the same start, fine-tuned with an id table added (``item_ids: true``,
  ID dropout as the text recipe's): B's movies learn ids of their own on top of the text;
- ``scratch_text``: the same text recipe trained from a random start on the same fraction;
- ``scratch_id``: the ID-only recipe (ml100k.yaml as it is) on the same fraction.

Every model is scored on all of B's users by leave-one-out (`split_ranks`: the last event the
target, full ranking over B's movies, the user's own items filtered), with ``text_nn`` (the
user = mean MiniLM vector of their history, items by cosine) and ``most_popular`` (B's
training counts, every B user's) beside them. Ratios ``transfer`` / ``scratch_text`` and
``transfer_id`` / ``scratch_id`` (each start against the same kind of model from scratch) at
each fraction carry 95% intervals from a paired bootstrap over B's users (within each seed).

    python benchmarks/transfer.py --quick        # 2 epochs, seed 0, fractions 10% and 100%
    python benchmarks/transfer.py --seeds 0 1 2 --results R.jsonl --plot docs/transfer.png

``--results`` keeps each finished fit (per-user ranks) and reads back the ones it holds
(``--report`` trains nothing). The last line is one JSON object of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cold_items as ci  # noqa: E402
import pretrain_quality as pq  # noqa: E402

FRACTIONS = (0.05, 0.1, 0.25, 1.0)
TRAINED = ("transfer", "transfer_id", "scratch_text", "scratch_id")
#: what each trained row is: the recipe kind (`cold_items.recipe_config`)
KINDS = {"transfer": "inductive", "transfer_id": "text", "scratch_text": "inductive",
         "scratch_id": "id"}  # fmt: skip
#: the rows fine-tuned from the encoder pretrained on A
FROM_A = ("transfer", "transfer_id")
#: the ratios reported at each fraction: each start against its kind from scratch
RATIOS = (("transfer", "scratch_text"), ("transfer_id", "scratch_id"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=pq.DEFAULT_DATA, help="MovieLens-100K folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--fractions", type=float, nargs="+", default=None,
                   help="shares of B's users to train on (default 0.05 0.1 0.25 1)")  # fmt: skip
    p.add_argument("--rows", nargs="+", default=list(TRAINED), choices=TRAINED)
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's (100)")
    p.add_argument("--text-model", default="all-MiniLM-L6-v2", help="alias or folder")
    p.add_argument("--results", type=Path, default=None, help="JSONL of finished fits")
    p.add_argument("--report", action="store_true", help="train nothing: report --results")
    p.add_argument("--plot", type=Path, default=None, help="PNG of the learning curves")
    p.add_argument("--quick", action="store_true", help="2 epochs, seed 0, 10%% and 100%%")
    args = p.parse_args(argv)
    if args.fractions is None:
        args.fractions = [0.1, 1.0] if args.quick else list(FRACTIONS)
    if args.quick:
        args.epochs, args.seeds = args.epochs or 2, args.seeds[:1]
    if not all(0 < f <= 1 for f in args.fractions):
        p.error("--fractions must be in (0, 1]")
    return args


# ---- the two catalogues ------------------------------------------------------------------------
@dataclass
class Catalogues:
    """One seed's A / B split, as files a run reads."""

    a_log: Path  # parquet: group-1 users' events on A movies
    b_log: Path  # parquet: group-2 users' events on B movies
    b_users: list[str]  # B's users in a seeded order: a fraction trains on its first share
    items: Path  # parquet: every movie's id, title, year, genres
    b_items: set[str]


def halves(ids: list[str], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    order = [ids[i] for i in rng.permutation(len(ids))]
    return order[: len(ids) // 2], order[len(ids) // 2 :]


def split_catalogues(log: Any, items: Any, seed: int, folder: Path) -> Catalogues:
    rng = np.random.default_rng([seed, 34])
    users_a, users_b = halves([str(u) for u in log.user_ids], rng)
    movies_a, movies_b = halves(list(items.ids), rng)
    events = log.to_pandas().rename(columns=ci.ML_COLUMNS)
    paths = {}
    for name, users, movies in (("a", users_a, movies_a), ("b", users_b, movies_b)):
        part = events[events["user"].isin(users) & events["item"].isin(movies)]
        paths[name] = folder / f"{name}_{seed}.parquet"
        part.to_parquet(paths[name], index=False)
    table = folder / "items.parquet"
    items.to_pandas().to_parquet(table, index=False)
    b_users = [u for u in users_b if u in set(events["user"])]
    return Catalogues(paths["a"], paths["b"], b_users, table, set(movies_b))


def fraction_log(cat: Catalogues, fraction: float, folder: Path) -> Path:
    """B's events of the first ``fraction`` of its users (in the seeded order)."""
    events = pd.read_parquet(cat.b_log)
    users = set(cat.b_users[: max(1, round(fraction * len(cat.b_users)))])
    path = folder / f"{cat.b_log.stem}_{fraction:g}.parquet"
    events[events["user"].isin(users)].to_parquet(path, index=False)
    return path


# ---- fits --------------------------------------------------------------------------------------
def config(args: argparse.Namespace, row: str, fraction: float | None) -> dict[str, Any]:
    kind = "inductive" if row in ("pretrain_a", "zero_shot") else KINDS[row]
    dropout = pq.TEXT_ID_DROPOUT if row == "transfer_id" else 0.0
    cfg = ci.recipe_config(kind, epochs=args.epochs, text_model=args.text_model, id_dropout=dropout)
    if row == "transfer_id":  # A's encoder has no id table: fine-tuning adds one
        cfg["model"]["encoder"]["item_ids"] = True
    return {**cfg, "row": row, "fraction": fraction}


def source(path: Path) -> dict[str, Any]:
    return {"source": str(path), "schema": ci.WARM_SCHEMA}


def pretrain_a(args, cat: Catalogues, seed: int, folder: Path) -> Path:
    """The text-only encoder of catalogue A, saved (what ``transfer`` starts from)."""
    model, _ = ci.fit_recipe(config(args, "pretrain_a", None), source(cat.a_log), seed,
                             items=cat.items)  # fmt: skip
    return model.save_pretrained(folder / f"a_{seed}")


def fit_record(args, row: str, fraction: float | None, seed: int, cat, b_test, folder, a_model):
    """One scored model of B: its per-user test ranks."""
    from userfm.encoder import UserEncoder

    t0 = time.perf_counter()
    cfg = config(args, row, fraction)
    if row == "zero_shot":
        model = UserEncoder.from_pretrained(a_model).eval()
    else:
        init = a_model if row in FROM_A else None
        train = fraction_log(cat, fraction, folder)
        model, _ = ci.fit_recipe(cfg, source(train), seed, items=cat.items, init_from=init)
    if model.config.text_dim:
        model.add_items(b_item_table(cat), progress=False)  # B's movies the fraction never saw
    # the zero-shot model still holds A's movies: only B's may take a place in its ranking
    scorer = OnlyItems(model, sorted(cat.b_items)) if row == "zero_shot" else model
    ranks = ci.ranks_of(scorer, {"test": b_test})["test"]
    return {"row": row, "fraction": fraction, "seed": seed, "config": cfg, "ranks": ranks,
            "fit_s": round(time.perf_counter() - t0)}  # fmt: skip


class OnlyItems:
    """A recommender ranking only ``items`` (`UserEncoder.recommend`'s ``candidates``)."""

    def __init__(self, model: Any, items: list[str]) -> None:
        self.model, self.items = model, items

    def recommend(self, histories: Any, **options: Any) -> Any:
        return self.model.recommend(histories, candidates=self.items, **options)


def b_item_table(cat: Catalogues) -> Any:
    """B's movies as an item table (with genres, so a model scoring categories reads them)."""
    from userfm.data.items import read_items

    return read_items(cat.items).subset(sorted(cat.b_items))


def untrained(args, cat: Catalogues, b_test: Any) -> dict[str, list[int]]:
    """The text nearest-neighbour and most-popular rankings of B's test users."""
    from userfm.data.readers import read_events
    from userfm.data.schema import EventSchema
    from userfm.encoder.item_vectors import encode_items
    from userfm.eval.baselines import MostPopular, TextNeighbours

    found = encode_items(b_item_table(cat), ci.TEXT_COLUMNS, text_model=args.text_model,
                         progress=False)  # fmt: skip
    b_log = read_events(str(cat.b_log), EventSchema.from_dict(ci.WARM_SCHEMA))
    return {
        "text_nn": ci.ranks_of(TextNeighbours(found.ids, found.vectors), {"test": b_test})["test"],
        "most_popular": ci.ranks_of(MostPopular().fit(b_log, split="test"), {"test": b_test})[
            "test"
        ],
    }


# ---- report ------------------------------------------------------------------------------------
def ndcg_of(runs: list[dict[str, np.ndarray]], row: str) -> float:
    """NDCG@10 of ``row`` over B's test users, pooled over seeds."""
    return float(np.concatenate([ci.gains(r[row], "ndcg") for r in runs]).mean())


def report(runs: list[dict[str, np.ndarray]], users: int, args) -> dict[str, Any]:
    """``runs``: per seed, row name (``transfer@0.1``, ``zero_shot``, ...) -> ranks."""
    print(f"\n== A new catalogue: MovieLens-100K halves, B's test users ({len(runs)} seed(s), "
          f"{users} B users in seed {args.seeds[0]}; {pq.machine_description()}) ==")  # fmt: skip
    fixed = {r: ndcg_of(runs, r) for r in ("zero_shot", "text_nn", "most_popular")
             if all(r in x for x in runs)}  # fmt: skip
    print("no B training: " + ", ".join(f"{r} {v:.4f}" for r, v in fixed.items()))
    curve, ratios = {}, {}
    print(f"{'B users':>10}" + "".join(f"{r:>14}" for r in TRAINED)
          + "".join(f"{f'{a} / {b}':>34}" for a, b in RATIOS))  # fmt: skip
    for f in args.fractions:
        names = {r: f"{r}@{f:g}" for r in TRAINED}
        have = {r: n for r, n in names.items() if all(n in x for x in runs)}
        curve[f"{f:g}"] = {r: ndcg_of(runs, n) for r, n in have.items()}
        line = f"{round(f * users):>10}" + "".join(
            f"{curve[f'{f:g}'][r]:>14.4f}" if r in have else f"{'-':>14}" for r in TRAINED
        )
        for a, b in RATIOS:
            if {a, b} <= set(have):
                c = _paired(runs, names[a], names[b])
                ratios.setdefault(f"{a}_vs_{b}", {})[f"{f:g}"] = c
                text = f"{c['ratio']:.2f}x [{c['ratio_lo']:.2f}, {c['ratio_hi']:.2f}]"
                line += f"{text:>34}"
            else:
                line += f"{'-':>34}"
        print(line)
    zero = {}
    for other in ("text_nn", "most_popular"):
        if {"zero_shot", other} <= set(fixed):
            zero[other] = _paired(runs, "zero_shot", other)
            c = zero[other]
            print(f"zero_shot / {other}: {c['ratio']:.2f}x [{c['ratio_lo']:.2f}, "
                  f"{c['ratio_hi']:.2f}]; difference {c['diff']:+.4f} [{c['diff_lo']:+.4f}, "
                  f"{c['diff_hi']:+.4f}]")  # fmt: skip
    print("protocol: leave-one-out on catalogue B (its last event the target, full ranking "
          "over B's movies, the user's own items filtered); models fine-tuned or trained on "
          "the training part of the first share of B's users (seeded order), scored on every "
          "B user; NDCG@10 pooled over seeds; 95% paired bootstrap over users")  # fmt: skip
    return {"no_b_training": fixed, "curve": curve, "ratios": ratios,
            "zero_shot_vs": zero}  # fmt: skip


def _paired(runs: list[dict[str, np.ndarray]], a: str, b: str) -> dict[str, float]:
    ga = [ci.gains(r[a], "ndcg") for r in runs]
    gb = [ci.gains(r[b], "ndcg") for r in runs]
    return ci.paired_interval(ga, gb)


def plot(summary: dict[str, Any], users: int, path: Path, seeds: int) -> None:
    """NDCG@10 against B training users: one line per trained row, the others flat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    fractions = sorted(summary["curve"], key=float)
    x = [round(float(f) * users) for f in fractions]
    for row in TRAINED:
        y = [summary["curve"][f].get(row) for f in fractions]
        if all(v is not None for v in y):
            ax.plot(x, y, marker="o", label=row)
    for i, (row, value) in enumerate(summary["no_b_training"].items()):
        what = "all of B's training counts" if row == "most_popular" else "no B training"
        ax.axhline(value, ls=("--", ":", "-.")[i % 3], color="grey", label=f"{row} ({what})")
    ax.set_xscale("log")
    ax.set_xticks(x, [str(v) for v in x], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_xlabel("B training users")
    ax.set_ylabel("NDCG@10 on B's test users")
    ax.set_title(f"A new catalogue (MovieLens-100K halves, {seeds} seed(s))")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pq.quiet()
    from userfm.data.readers import read_events
    from userfm.data.schema import EventSchema
    from userfm.eval.retrieval import leave_one_out_split

    t0 = time.perf_counter()
    loaded = ci.load_ml100k(args.data)
    if loaded is None:
        return 0
    log, items = loaded
    records, runs, users = ci.saved(args.results), [], 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seed in args.seeds:
            cat = split_catalogues(log, items, seed, folder)
            users = users or len(cat.b_users)
            b_test = leave_one_out_split(
                read_events(str(cat.b_log), EventSchema.from_dict(ci.WARM_SCHEMA)), "test"
            )
            ranks = untrained(args, cat, b_test)
            a_model = None
            wanted = [("zero_shot", None)] + [(r, f) for r in args.rows for f in args.fractions]
            for row, fraction in wanted:
                record = ci.find(records, row, seed, config(args, row, fraction), fraction)
                if record is None and not args.report:
                    if a_model is None and row in ("zero_shot", *FROM_A):
                        a_model = pretrain_a(args, cat, seed, folder)
                    record = fit_record(args, row, fraction, seed, cat, b_test, folder, a_model)
                    records.append(record)
                    if args.results is not None:
                        with args.results.open("a") as f:
                            f.write(json.dumps(record) + "\n")
                if record is not None:
                    name = row if fraction is None else f"{row}@{fraction:g}"
                    ranks[name] = record["ranks"]
            runs.append({k: np.asarray(v) for k, v in ranks.items()})
    summary = report(runs, users, args)
    if args.plot is not None:
        plot(summary, users, args.plot, len(args.seeds))
    summary["seconds"] = round(time.perf_counter() - t0)
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
