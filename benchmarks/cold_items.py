"""Cold items: what reading items through their text recovers for movies no training event saw.

Issue 33 §2. On MovieLens-100K a random 20% of the movies (``--cold-fraction``, a new draw
per seed) are removed from training entirely: every event on them is dropped from the
training log. The models are then scored with the usual leave-one-out protocol on the
**complete** log: each user's input is their whole history but the last event (cold movies
included), the target is the last event, the ranking is over all 1,682 movies with the
user's own items filtered (`userfm.eval.retrieval.split_ranks`). Models that read text are
first given the cold movies with `UserEncoder.add_items` (the items table: title, genres).
NDCG@10 and HR@10 are reported on cold targets and on warm targets separately.

Rows (each trained with configs/pretrain/ml100k.yaml, the judged recipe, on the same
training log per seed):

- ``id_only``: the recipe as it is (0 on cold targets by construction: it cannot rank them);
- ``text``: + the item table (``data.items``, text ``title, genres``, all-MiniLM-L6-v2) and
  ID dropout (``model.encoder.item_id_dropout``, ``--id-dropout``);
- ``inductive``: + the item table, no id table at all (``item_ids: false``);
- ``warm_reference``: the ID-only recipe trained on the full training log (the cold movies'
  events kept), scored on the same users: what the cold path would reach had the movies been
  known.

Each text row is also scored before `add_items` (``text/known_catalogue``): over the
training catalogue only, the candidates and the readable input ``id_only`` has. On warm
targets that is the like-for-like comparison with ``id_only``: after `add_items` a text row
ranks every warm target against the cold movies too, which ``id_only`` never sees.

Beside them, untrained: ``text_nn`` (the user = mean MiniLM vector of their history, items by
cosine, `userfm.eval.baselines.TextNeighbours`), ``most_popular`` (training counts of the
training log), and each text model given another user's history (``another_user``,
`userfm.eval.OtherUsersInput`). Ratios carry 95% intervals from a paired bootstrap over test
users (resampled within each seed's split).

    python benchmarks/cold_items.py --quick                 # 2 epochs, 1 seed: minutes
    python benchmarks/cold_items.py --seeds 0 1 2 --rows text inductive --results R.jsonl
    python benchmarks/cold_items.py --seeds 0 1 2 --results R.jsonl --report

``--results`` keeps each finished fit (row, seed, configuration, per-user ranks) and reads
back those it already holds, so rows can be trained by several processes and the report made
from the file alone (``--report`` trains nothing). The last line is one JSON object of the
headline figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_quality as pq  # noqa: E402

RECIPE = pq.REPO / "configs" / "pretrain" / "ml100k.yaml"
TRAINED = ("id_only", "text", "inductive", "warm_reference")
TEXT_ROWS = ("text", "inductive")
TEXT_COLUMNS = pq.TEXT_COLUMNS
K = 10
#: suffix of a text row scored before `add_items`: over the training catalogue only, as
#: id_only ranks (it cannot rank cold movies, so after add_items a text row's warm targets
#: compete with about 340 more candidates than id_only's do)
KNOWN = "/known_catalogue"
BOOTSTRAP = 2000
#: the training log's columns, named as `load_movielens_100k` reads them: a model then
#: finds its category column (genres) in the items table when new items are added
ML_COLUMNS = {"action": "rating", "category": "genres"}
WARM_SCHEMA = dict(action="rating", category="genres", title="title", extra=["year"],
                   timestamp_unit="s")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=pq.DEFAULT_DATA, help="MovieLens-100K folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=list(TRAINED), choices=TRAINED)
    p.add_argument("--cold-fraction", type=float, default=0.2)
    p.add_argument("--id-dropout", type=float, default=pq.TEXT_ID_DROPOUT,
                   help="the text row's ID dropout")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's (100)")
    p.add_argument("--text-model", default="all-MiniLM-L6-v2", help="alias or folder")
    p.add_argument("--results", type=Path, default=None, help="JSONL of finished fits")
    p.add_argument("--report", action="store_true", help="train nothing: report --results")
    p.add_argument("--quick", action="store_true", help="2 epochs, seed 0")
    p.add_argument("--plot", type=Path, default=None, help="PNG of NDCG@10, cold vs warm")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = args.epochs or 2, args.seeds[:1]
    if not 0 < args.cold_fraction < 1:
        p.error("--cold-fraction must be in (0, 1)")
    return args


# ---- data --------------------------------------------------------------------------------------
@dataclass
class Split:
    """One seed's cold split of MovieLens-100K (files a run reads, as a user would)."""

    cold: set[str]
    warm_log: Path  # parquet: the training log without the cold movies' events
    items: Path  # parquet: every movie's id, title, year, genres


def recipe() -> dict[str, Any]:
    """The judged ml100k recipe (configs/pretrain/ml100k.yaml) as a dict."""
    import yaml

    return yaml.safe_load(RECIPE.read_text())


def cold_movies(item_ids: list[str], fraction: float, seed: int) -> set[str]:
    rng = np.random.default_rng([seed, 33])
    chosen = rng.choice(len(item_ids), size=round(fraction * len(item_ids)), replace=False)
    return {item_ids[i] for i in chosen}


def make_split(args: argparse.Namespace, log: Any, items: Any, seed: int, folder: Path) -> Split:
    """Draw the cold movies of ``seed`` and write the warm training log and the items table."""
    cold = cold_movies(items.ids, args.cold_fraction, seed)
    events = log.to_pandas().rename(columns=ML_COLUMNS)  # named as load_movielens_100k's
    warm = folder / f"warm_{seed}.parquet"
    events[~events["item"].isin(cold)].to_parquet(warm, index=False)
    table = folder / "items.parquet"
    items.to_pandas().to_parquet(table, index=False)
    return Split(cold, warm, table)


# ---- training and scoring ----------------------------------------------------------------------
def recipe_config(
    kind: str, *, epochs: int | None, text_model: str, id_dropout: float
) -> dict[str, Any]:
    """The recipe's model and data sections for ``kind``: ``id`` (as it is), ``text`` (+ the
    item table and ID dropout) or ``inductive`` (+ the item table, no id table); ``epochs``
    (None: the recipe's)."""
    cfg = recipe()
    model, data = dict(cfg["model"]), dict(cfg["data"])
    model["encoder"] = dict(model["encoder"])
    if kind in TEXT_ROWS:
        data.update(items="<items table>", item_text=TEXT_COLUMNS, text_model=text_model)
        key, value = ("item_id_dropout", id_dropout) if kind == "text" else ("item_ids", False)
        model["encoder"][key] = value
    return {"model": model, "data": data, "epochs": epochs or cfg["trainer"]["max_epochs"]}


def row_config(args: argparse.Namespace, row: str) -> dict[str, Any]:
    """The recipe of ``row`` with this run's epochs and cold share."""
    kind = row if row in TEXT_ROWS else "id"
    cfg = recipe_config(
        kind, epochs=args.epochs, text_model=args.text_model, id_dropout=args.id_dropout
    )
    return {**cfg, "cold_fraction": args.cold_fraction}


def fit_recipe(
    cfg: dict[str, Any],
    source: dict[str, Any],
    seed: int,
    *,
    items: Path | None = None,
    init_from: Path | None = None,
) -> tuple[Any, float]:
    """Train ``cfg`` (`recipe_config`) on ``source`` (`EventDataModule`'s ``source`` and
    ``format`` / ``schema``), as a user would with the CLI; returns (encoder, fit seconds).

    Args:
        items: the items table file, for a recipe that reads item text.
        init_from: a saved encoder to fine-tune (`PretrainModule`'s ``init_from``).
    """
    import lightning as L

    from userfm.pretrain.data import EventDataModule
    from userfm.pretrain.module import PretrainModule

    data = {k: v for k, v in cfg["data"].items() if k not in ("source", "format")}
    if "items" in data:
        data["items"] = str(items)
    dm = EventDataModule(**source, **data, seed=seed)
    L.seed_everything(seed, verbose=False)
    extra = {} if init_from is None else {"init_from": str(init_from)}
    module = PretrainModule(**cfg["model"], **extra)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=cfg["epochs"], enable_checkpointing=False,
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )  # fmt: skip
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return module.encoder.eval(), time.perf_counter() - t0


def train(args: argparse.Namespace, row: str, seed: int, split: Split) -> tuple[Any, float]:
    """Fit one row on ``split``'s training log; returns (encoder, fit seconds)."""
    if row == "warm_reference":
        source = dict(source=str(args.data), format="movielens-100k")
    else:
        source = dict(source=str(split.warm_log), schema=WARM_SCHEMA)
    return fit_recipe(row_config(args, row), source, seed, items=split.items)


def ranks_of(model: Any, splits: dict[str, Any]) -> dict[str, list[int]]:
    """Per split, each evaluated user's target rank (0 = not ranked), in split user order."""
    from userfm.eval.retrieval import split_ranks

    out = {}
    for name, data in splits.items():
        r = split_ranks(model, data)
        out[name] = np.where(np.isfinite(r), r, 0).astype(int).tolist()
    return out


def fit_record(args, row: str, seed: int, split: Split, splits: dict, items: Any) -> dict:
    """Train ``row`` on ``seed``'s split and score it (and its another-user control)."""
    from userfm.eval import OtherUsersInput

    model, fit_s = train(args, row, seed, split)
    record = {"row": row, "seed": seed, "config": row_config(args, row), "fit_s": round(fit_s)}
    if row in TEXT_ROWS:
        # before add_items: the training catalogue only, the candidates (and the readable
        # input) id_only has, so that warm targets compare like with like (`KNOWN`)
        record["ranks_known"] = ranks_of(model, splits)
        model.add_items(items, progress=False)
    record["ranks"] = ranks_of(model, splits)
    if row in TEXT_ROWS:
        record["another_user"] = ranks_of(OtherUsersInput(model), {"test": splits["test"]})
    return record


def untrained_ranks(args, log: Any, items: Any, split: Split, splits: dict) -> dict[str, dict]:
    """The text nearest-neighbour and most-popular rows of one seed's split."""
    from userfm.data.readers import read_events
    from userfm.data.schema import EventSchema
    from userfm.encoder.item_vectors import encode_items
    from userfm.eval.baselines import MostPopular, TextNeighbours

    found = encode_items(items, TEXT_COLUMNS, text_model=args.text_model, progress=False)
    warm = read_events(str(split.warm_log), EventSchema.from_dict(WARM_SCHEMA))
    return {
        "text_nn": ranks_of(TextNeighbours(found.ids, found.vectors), splits),
        "most_popular": ranks_of(MostPopular().fit(warm, split="valid"), splits),
    }


# ---- results -----------------------------------------------------------------------------------
def saved(path: Path | None) -> list[dict]:
    if path is None or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def find(
    records: list[dict], row: str, seed: int, config: dict, fraction: float | None = None
) -> dict | None:
    """The saved fit of (row, seed[, fraction]) made with ``config`` (JSON-normalised)."""
    want = json.loads(json.dumps(config))
    for r in records:
        same = r["row"] == row and r["seed"] == seed and r.get("fraction") == fraction
        if same and r["config"] == want:
            return r
    return None


# ---- metrics -----------------------------------------------------------------------------------
def gains(ranks: np.ndarray, metric: str) -> np.ndarray:
    """(N,) per-user NDCG@K or HR@K from ranks (0 = miss)."""
    hit = (ranks > 0) & (ranks <= K)
    if metric == "hr":
        return hit.astype(float)
    return np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)


def paired_interval(a: list[np.ndarray], b: list[np.ndarray], seed: int = 0) -> dict[str, float]:
    """Ratio mean(a) / mean(b) and difference mean(a) - mean(b) of per-user gains pooled over
    seeds, each with a 95% percentile interval from resampling users within each seed."""
    rng = np.random.default_rng(seed)
    ratios, diffs = [], []
    for _ in range(BOOTSTRAP):
        picks = [rng.integers(0, len(x), len(x)) for x in a]
        ma = np.concatenate([x[p] for x, p in zip(a, picks)]).mean()
        mb = np.concatenate([y[p] for y, p in zip(b, picks)]).mean()
        ratios.append(ma / mb if mb > 0 else math.nan)  # undefined: left out below
        diffs.append(ma - mb)
    ma, mb = np.concatenate(a).mean(), np.concatenate(b).mean()
    lo_r, hi_r = (
        np.nanpercentile(ratios, [2.5, 97.5]) if np.isfinite(ratios).any() else (math.nan, math.nan)
    )
    lo_d, hi_d = np.percentile(diffs, [2.5, 97.5])
    return {"ratio": ma / mb if mb > 0 else math.inf, "ratio_lo": lo_r, "ratio_hi": hi_r,
            "diff": ma - mb, "diff_lo": lo_d, "diff_hi": hi_d}  # fmt: skip


# ---- report ------------------------------------------------------------------------------------
@dataclass
class SeedData:
    """What the report needs of one seed: each row's per-user ranks and the cold targets."""

    ranks: dict[str, dict[str, np.ndarray]]  # row -> split -> (N,) ranks
    cold: dict[str, np.ndarray]  # split -> (N,) bool: the target is a cold movie


def rows_table(seeds: list[SeedData], rows: list[str], split: str = "test") -> dict[str, dict]:
    """Per row: NDCG@10 / HR@10 on cold, warm and all targets (users pooled over seeds)."""
    table = {}
    for row in rows:
        if not all(row in s.ranks for s in seeds):
            continue
        entry = {}
        for part in ("cold", "warm", "all"):
            for metric in ("ndcg", "hr"):
                values = [gains(s.ranks[row][split], metric)[_mask(s, split, part)] for s in seeds]
                entry[f"{metric}@{K}_{part}"] = float(np.concatenate(values).mean())
        table[row] = entry
    return table


def _mask(s: SeedData, split: str, part: str) -> np.ndarray:
    cold = s.cold[split]
    return cold if part == "cold" else ~cold if part == "warm" else np.ones_like(cold)


def compare(seeds: list[SeedData], a: str, b: str, part: str) -> dict[str, float] | None:
    """`paired_interval` of rows a and b on the test users whose target is ``part``."""
    if not all(a in s.ranks and b in s.ranks for s in seeds):
        return None
    ga = [gains(s.ranks[a]["test"], "ndcg")[_mask(s, "test", part)] for s in seeds]
    gb = [gains(s.ranks[b]["test"], "ndcg")[_mask(s, "test", part)] for s in seeds]
    return paired_interval(ga, gb)


def report(seeds: list[SeedData], machine: str, args: argparse.Namespace) -> dict[str, Any]:
    rows = [*TRAINED, "text_nn", "most_popular", *(f"{r}/another_user" for r in TEXT_ROWS)]
    rows += [f"{r}{KNOWN}" for r in TEXT_ROWS]
    n_cold = sum(int(s.cold["test"].sum()) for s in seeds)
    print(f"\n== Cold items, MovieLens-100K, test split ({len(seeds)} seed(s), {n_cold} cold "
          f"targets in all; {machine}) ==")  # fmt: skip
    print(f"{'row':<26}" + "".join(f"{c:>12}" for c in ("NDCG cold", "HR cold", "NDCG warm",
                                                         "HR warm", "NDCG all")))  # fmt: skip
    table = rows_table(seeds, rows)
    for row, m in table.items():
        cols = ("ndcg@10_cold", "hr@10_cold", "ndcg@10_warm", "hr@10_warm", "ndcg@10_all")
        print(f"{row:<26}" + "".join(f"{m[c]:>12.4f}" for c in cols))
    valid = rows_table(seeds, [*TEXT_ROWS, *(f"{r}{KNOWN}" for r in TEXT_ROWS), "text_nn"], "valid")
    print(
        "validation split, NDCG@10 cold / warm: "
        + "; ".join(
            f"{r} {m['ndcg@10_cold']:.4f} / {m['ndcg@10_warm']:.4f}" for r, m in valid.items()
        )
    )
    comparisons = {}
    for ours in TEXT_ROWS:
        pairs = [(ours, "text_nn", "cold"), (ours, "warm_reference", "cold"),
                 (ours, "id_only", "warm"), (f"{ours}{KNOWN}", "id_only", "warm")]  # fmt: skip
        for name, other, part in pairs:
            c = compare(seeds, name, other, part)
            if c is None:
                continue
            comparisons[f"{name.replace('/', '_')}_vs_{other}_{part}"] = c
            print(f"{name} / {other}, NDCG@10 on {part} targets: {c['ratio']:.3f}x "
                  f"[{c['ratio_lo']:.3f}, {c['ratio_hi']:.3f}]; difference {c['diff']:+.4f} "
                  f"[{c['diff_lo']:+.4f}, {c['diff_hi']:+.4f}] (95%, paired bootstrap)")  # fmt: skip
    print("protocol: leave-one-out on the complete log (input = every event but the last, cold "
          "movies included), full ranking of all movies after add_items, the user's items "
          f"filtered; {args.cold_fraction:.0%} of the movies cold (no training event), drawn "
          f"per seed; seeds {args.seeds}")  # fmt: skip
    return {"rows": table, "valid": valid, "comparisons": comparisons, "cold_targets": n_cold}


def plot(rows: dict[str, dict], path: Path, seeds: int) -> None:
    """Bars of NDCG@10 on cold and on warm test targets, one pair per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for shift, part in ((-0.2, "cold"), (0.2, "warm")):
        ax.bar(
            x + shift, [rows[n][f"ndcg@{K}_{part}"] for n in names], 0.4, label=f"{part} targets"
        )
    ax.set_xticks(x, [n.replace("/", "\n") for n in names], fontsize=8)
    ax.set_ylabel(f"NDCG@{K}")
    ax.set_title(f"Cold items, MovieLens-100K test split ({seeds} seed(s))")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_ml100k(folder: Path) -> tuple[Any, Any] | None:
    """MovieLens-100K's log and items table; None (the run's JSON line says it was skipped)
    when the folder has no u.data."""
    from userfm.data.formats import load_movielens_100k, movielens_100k_items

    if not (folder / "u.data").is_file():
        print(json.dumps({"skipped": f"MovieLens-100K not found at {folder}"}))
        return None
    return load_movielens_100k(folder), movielens_100k_items(folder)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pq.quiet()
    from userfm.eval.retrieval import leave_one_out_split

    t0 = time.perf_counter()
    loaded = load_ml100k(args.data)
    if loaded is None:
        return 0
    log, items = loaded
    splits = {s: leave_one_out_split(log, s) for s in ("test", "valid")}
    records = saved(args.results)
    seeds = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            split = make_split(args, log, items, seed, Path(tmp))
            ranks = untrained_ranks(args, log, items, split, splits)
            for row in args.rows:
                record = find(records, row, seed, row_config(args, row))
                if record is None and not args.report:
                    record = fit_record(args, row, seed, split, splits, items)
                    records.append(record)
                    if args.results is not None:
                        with args.results.open("a") as f:
                            f.write(json.dumps(record) + "\n")
                if record is not None:
                    ranks[row] = record["ranks"]
                    if "ranks_known" in record:  # fits made before it was recorded lack it
                        ranks[f"{row}{KNOWN}"] = record["ranks_known"]
                    if "another_user" in record:
                        ranks[f"{row}/another_user"] = record["another_user"]
            cold = {s: np.isin(d.targets, list(split.cold)) for s, d in splits.items()}
            seeds.append(SeedData({r: {k: np.asarray(v) for k, v in x.items()}
                                   for r, x in ranks.items()}, cold))  # fmt: skip
    summary = report(seeds, pq.machine_description(), args)
    if args.plot is not None:
        plot(summary["rows"], args.plot, len(args.seeds))
    summary["seconds"] = round(time.perf_counter() - t0)
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
