"""DRO as a frontier: NDCG@10 against macro recall@10 as λ moves from plain training to robust.

Issue 20 §3. DRO trades head accuracy for tail recall, so one λ is a point on a curve, not a
verdict. For λ in ``--lambdas`` (inf = plain mean, no DRO; then 8, 4, 2, 1: smaller = more
robust) the same model is trained on the same log once per seed and scored on the test split;
the target: some λ gives >= 1.15x the macro recall@10 of λ = inf at no more than 3% lower
NDCG@10 (means over seeds), on a log whose tail bucket holds >= 500 test targets.

Logs:

- ``long-tail``: `SyntheticConfig.long_tail()` (6,000 users over 3,000 items: half draw by a
  steep popularity law, half explore their categories uniformly; ~600 test targets in the
  least popular third of the items). The number of tail-bucket test targets is printed.
- ``ml-100k``: MovieLens-100K (``--data``, research licence, read in place; skipped when
  absent), reported beside it.

Protocol: `PretrainModule` (hidden 64, 2 blocks, 2 heads, dropout 0.2, full softmax, item ids
and time features, AdamW lr 2e-3 with warmup and cosine decay, batch 128, max_len 50 for the
synthetic log and 200 for MovieLens) + the DRO rows' recipe of pretrain_quality.py
(`dro_recipe`: 3 frequency buckets of equal item count, class losses from the validation
split each epoch, applied as a logit adjustment); every run validates each epoch, DRO or not,
so the budgets are equal. Scored by ``evaluate_retrieval(encoder, log, split="test")``: full
ranking, seen items filtered; macro recall@10 = mean of the three buckets' recall@10. Most
popular (training counts, no model) is scored on the same split and printed below each
frontier: what a model that never reads the history gets. Each trained model is also scored
given another user's history (`userfm.eval.OtherUsersInput`, the user's own items still
filtered): what the same model gets when it cannot read this user (runs saved in a
``--results`` file before this control existed have none, and the report says so).

    python benchmarks/dro_frontier.py --quick     # a smaller long-tail log, 2 epochs, 1 seed
    python benchmarks/dro_frontier.py --out frontier.png

``--long-tail-size USERS ITEMS`` draws the long-tail log at another size (the smoke test's
tiny one); such runs are kept in ``--results`` apart from those of the default sizes.

``--results runs.jsonl`` keeps every finished run (its configuration, NDCG@10, macro recall@10)
and reads back the runs it already holds, so the 30 runs can be split: processes given other
``--lambdas`` (each with inf) or ``--logs`` share the file, a stopped run resumes, and a last
call with every λ reads them all and reports.

The last line is one JSON object: per log and λ the mean NDCG@10 and macro recall@10, the
ratios to λ = inf, the tail-bucket test targets, and whether the target is met.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_quality as pq  # noqa: E402
from saved_rows import save_run, saved_run  # noqa: E402

TARGET_MACRO = 1.15  # >= this x the macro recall@10 of λ = inf ...
TARGET_NDCG_DROP = 0.03  # ... at no more than this relative NDCG@10 loss
MIN_TAIL_TARGETS = 500


@dataclass
class Point:
    """One λ on one log: every seed's test metrics."""

    temperature: float
    ndcg: list[float] = field(default_factory=list)
    macro: list[float] = field(default_factory=list)
    # the same models given another user's input (`OtherUsersInput`), for the runs that
    # measured it (runs saved before the control have none)
    control_ndcg: list[float] = field(default_factory=list)
    control_macro: list[float] = field(default_factory=list)

    def mean(self, name: str) -> float:
        return statistics.fmean(getattr(self, name))

    def sd(self, name: str) -> float:
        values = getattr(self, name)
        return statistics.stdev(values) if len(values) > 1 else math.nan

    def show(self, name: str) -> str:
        """``mean ± sd`` (the mean alone for one seed)."""
        sd = self.sd(name)
        return f"{self.mean(name):.4f}" + ("" if math.isnan(sd) else f" ± {sd:.4f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small long-tail log, 2 epochs, 1 seed")
    p.add_argument("--data", type=Path, default=pq.DEFAULT_DATA, help="MovieLens-100K folder")
    p.add_argument("--logs", nargs="+", default=["long-tail", "ml-100k"],
                   choices=["long-tail", "ml-100k"])  # fmt: skip
    p.add_argument("--lambdas", type=float, nargs="+", default=[math.inf, 8, 4, 2, 1])
    p.add_argument("--seeds", type=int, default=None, help="default 3 (1 with --quick)")
    p.add_argument("--epochs", type=int, default=None, help="default 20 (2 with --quick)")
    p.add_argument("--long-tail-size", type=int, nargs=2, default=None,
                   metavar=("USERS", "ITEMS"),
                   help="the long-tail log's users and items (default 6,000 x 3,000; "
                   "1,500 x 1,000 with --quick)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="PNG chart of the frontiers")
    p.add_argument("--results", type=Path, default=None,
                   help="JSON lines, one per finished run: a run already there with the same "
                   "configuration is read, not retrained; new runs are appended")  # fmt: skip
    args = p.parse_args(argv)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.epochs = args.epochs or (2 if args.quick else 20)
    if math.inf not in args.lambdas:
        p.error("--lambdas must include inf (plain training: the point the others are judged on)")
    return args


def datamodule(log: str, args: argparse.Namespace, seed: int):
    """The set-up `EventDataModule` of ``log``: item ids and time only, batch 128."""
    from userfm.data.synthetic import SyntheticConfig
    from userfm.pretrain.data import EventDataModule

    if log == "ml-100k":  # as pretrain_quality.py reads it (max_len 200)
        movielens = argparse.Namespace(data=args.data, max_len=200, batch_size=128, seed=seed)
        return pq.make_datamodule(movielens, pq.NO_SIDE)
    small = dict(num_users=1500, num_items=1000) if args.quick else {}
    if args.long_tail_size is not None:
        small = dict(num_users=args.long_tail_size[0], num_items=args.long_tail_size[1])
    synthetic = SyntheticConfig.long_tail(**small).to_dict()
    dm = EventDataModule(source="synthetic", synthetic=synthetic, max_len=50, batch_size=128,
                         seed=seed, **pq.NO_SIDE)  # fmt: skip
    dm.setup("fit")
    return dm


def module_kwargs(temperature: float) -> dict[str, Any]:
    """`PretrainModule` arguments of a run at λ = ``temperature`` (inf: no DRO)."""
    dro = pq.dro_recipe(temperature) if math.isfinite(temperature) else {}
    return dict(encoder=dict(hidden_size=64, num_heads=2, dropout=0.2), loss="full", lr=2e-3,
                warmup_steps=20, **dro)  # fmt: skip


def run_key(log: str, temperature: float, seed: int, args: argparse.Namespace) -> dict:
    """What decides a run's numbers (a ``--results`` line is reused only if it matches)."""
    key = dict(log=log, lambda_=f"{temperature:g}", seed=seed, epochs=args.epochs,
               quick=args.quick, module=module_kwargs(temperature))  # fmt: skip
    if log == "long-tail" and args.long_tail_size is not None:  # absent for the default sizes
        key["long_tail_size"] = list(args.long_tail_size)
    return json.loads(json.dumps(key, default=str))


def fit_and_score(
    log: str, temperature: float, seed: int, args: argparse.Namespace
) -> tuple[Any, Any]:
    """One run: the test split's `RetrievalReport`, and the same model's given another
    user's input (`OtherUsersInput`: the control of a model that does not read its user)."""
    import lightning as L

    from userfm.eval import OtherUsersInput
    from userfm.eval.retrieval import evaluate_retrieval
    from userfm.pretrain.module import PretrainModule

    dm = datamodule(log, args, seed)
    L.seed_everything(seed, verbose=False)
    module = PretrainModule(**module_kwargs(temperature))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=args.epochs, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return tuple(
        evaluate_retrieval(model, dm.log_, split="test", sampled_negatives=None)
        for model in (module.encoder, OtherUsersInput(module.encoder))
    )


def scores(report: Any) -> dict[str, float]:
    """The two numbers a frontier point is made of, from a `RetrievalReport`."""
    return {
        "ndcg10": report.metrics["NDCG@10"],
        "macro_recall10": report.metrics["macro_recall@10"],
    }


def frontier(log: str, args: argparse.Namespace) -> tuple[list[Point], int]:
    """Every λ x seed on ``log`` (read from ``--results`` where it holds the run): the points
    and the tail bucket's test targets."""
    points, tail = [], 0
    for temperature in args.lambdas:
        point = Point(temperature)
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            key = run_key(log, temperature, seed, args)
            run = saved_run(args.results, key)
            if run is not None:
                source = f"read from {args.results}"
            else:
                report, control = fit_and_score(log, temperature, seed, args)
                run = dict(key=key, **scores(report), tail_targets=report.buckets[-1]["targets"],
                           another_user=scores(control))  # fmt: skip
                source = f"{time.perf_counter() - t0:.0f} s"
                save_run(args.results, run)
            tail = run["tail_targets"]
            point.ndcg.append(run["ndcg10"])
            point.macro.append(run["macro_recall10"])
            if "another_user" in run:
                point.control_ndcg.append(run["another_user"]["ndcg10"])
                point.control_macro.append(run["another_user"]["macro_recall10"])
            print(f"{log}: λ {temperature:g} seed {seed}: NDCG@10 {point.ndcg[-1]:.4f}, macro "
                  f"recall@10 {point.macro[-1]:.4f} ({source})", flush=True)  # fmt: skip
        points.append(point)
    return points, tail


def most_popular(log: str, args: argparse.Namespace) -> dict[str, float]:
    """What a model that never reads the history scores on ``log``'s test split: training
    counts (`MostPopular`), the same metrics as the frontier's points."""
    from userfm.eval.baselines import MostPopular
    from userfm.eval.retrieval import evaluate_retrieval

    data = datamodule(log, args, 0).log_
    report = evaluate_retrieval(MostPopular().fit(data), data, split="test", sampled_negatives=None)
    return {name: round(value, 4) for name, value in scores(report).items()}


def judge(points: list[Point]) -> dict[str, Any]:
    """Ratios to λ = inf, and the λ with the most macro recall within the NDCG budget."""
    plain = next(p for p in points if math.isinf(p.temperature))
    rows = {}
    for p in points:
        rows[f"{p.temperature:g}"] = {
            "ndcg10": round(p.mean("ndcg"), 4),
            "macro_recall10": round(p.mean("macro"), 4),
            "macro_vs_plain": round(p.mean("macro") / plain.mean("macro"), 3),
            "ndcg_drop": round(1 - p.mean("ndcg") / plain.mean("ndcg"), 4),
        }
        if p.control_ndcg:
            rows[f"{p.temperature:g}"]["another_user"] = {
                "ndcg10": round(p.mean("control_ndcg"), 4),
                "macro_recall10": round(p.mean("control_macro"), 4),
                "runs": len(p.control_ndcg),
            }
    within = [(k, r) for k, r in rows.items() if r["ndcg_drop"] <= TARGET_NDCG_DROP]
    best = max(within, key=lambda kv: kv[1]["macro_vs_plain"])
    return {"points": rows, "best_lambda": best[0], "best_macro_vs_plain": best[1]["macro_vs_plain"],
            "met": best[1]["macro_vs_plain"] >= TARGET_MACRO}  # fmt: skip


def table(
    log: str,
    points: list[Point],
    verdict: dict[str, Any],
    tail: int,
    popular: dict[str, float] | None = None,
) -> list[str]:
    lines = [f"\n{log}: {tail:,} test targets in the tail bucket",
             "| λ | NDCG@10 | macro recall@10 | macro x λ=inf | NDCG change |",
             "|---:|---:|---:|---:|---:|"]  # fmt: skip
    for p in points:
        r = verdict["points"][f"{p.temperature:g}"]
        lines.append(
            f"| {p.temperature:g} | {p.show('ndcg')} | {p.show('macro')} | "
            f"{r['macro_vs_plain']:.3f} | {-100 * r['ndcg_drop']:+.1f}% |"
        )
    if popular is not None:
        lines.append(f"| most popular (no model) | {popular['ndcg10']:.4f} | "
                     f"{popular['macro_recall10']:.4f} | | |")  # fmt: skip
    for p in points:
        if p.control_ndcg:
            lines.append(f"| λ = {p.temperature:g}, another user's input ({len(p.control_ndcg)} "
                         f"of {len(p.ndcg)} seeds) | {p.show('control_ndcg')} | "
                         f"{p.show('control_macro')} | | |")  # fmt: skip
    missing = [f"{p.temperature:g}" for p in points if len(p.control_ndcg) < len(p.ndcg)]
    if missing:
        lines.append(f"another user's input not measured for some runs of λ {', '.join(missing)} "
                     "(saved before the control existed)")  # fmt: skip
    lines.append(f"best λ within a {TARGET_NDCG_DROP:.0%} NDCG loss: {verdict['best_lambda']} "
                 f"({verdict['best_macro_vs_plain']:.3f}x macro recall; target >= "
                 f"{TARGET_MACRO}x: {'met' if verdict['met'] else 'NOT met'})")  # fmt: skip
    return lines


def chart(frontiers: dict[str, list[Point]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frontiers), figsize=(5 * len(frontiers), 4), squeeze=False)
    for ax, (log, points) in zip(axes[0], frontiers.items(), strict=True):
        x = [p.mean("macro") for p in points]
        y = [p.mean("ndcg") for p in points]
        xerr = [0 if math.isnan(p.sd("macro")) else p.sd("macro") for p in points]
        yerr = [0 if math.isnan(p.sd("ndcg")) else p.sd("ndcg") for p in points]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, marker="o")
        for p, xi, yi in zip(points, x, y, strict=True):
            ax.annotate(f"λ={p.temperature:g}", (xi, yi), textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel("macro recall@10 (test)")
        ax.set_ylabel("NDCG@10 (test)")
        ax.set_title(log)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pq.quiet()
    print(f"machine: {pq.machine_description()}; λ {args.lambdas}, {args.seeds} seed(s), "
          f"{args.epochs} epochs per run; quick={args.quick}")  # fmt: skip
    summary: dict[str, Any] = {"benchmark": "dro_frontier", "quick": args.quick}
    frontiers = {}
    for log in args.logs:
        if log == "ml-100k" and not (args.data / "u.data").is_file():
            print(f"SKIP ml-100k: not found at {args.data}")
            continue
        points, tail = frontier(log, args)
        verdict, popular = judge(points), most_popular(log, args)
        print("\n".join(table(log, points, verdict, tail, popular)), flush=True)
        frontiers[log] = points
        summary[log] = {**verdict, "tail_test_targets": tail, "most_popular": popular}
    if args.out is not None and frontiers:
        chart(frontiers, args.out)
        print(f"chart: {args.out}")
    if "long-tail" in summary:  # the target is judged on the long-tail log
        lt = summary["long-tail"]
        summary["target_met"] = lt["met"] and lt["tail_test_targets"] >= MIN_TAIL_TARGETS
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
