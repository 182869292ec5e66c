"""Recipe diagnostics: ours with one change at a time, beside ours, chosen on validation.

The judged recipe ("ours" of `pretrain_quality.py`: full softmax, side information, future
window 2, seen items masked, hidden 50, 3 blocks (``--layers``), 1 head, dropout 0.2, 100
epochs, AdamW lr 5e-3, batch 128, max_len 200, on MovieLens-100K) is trained once per seed,
and so is each ``--variant``: the same recipe with the settings it names changed. Every model is scored on
the validation split (where a change is chosen) and the test split (where it is reported),
full ranking with seen items filtered (NDCG@10, HR@10), and on the test split given another
user's history (`userfm.eval.OtherUsersInput`: what the model scores when it cannot read its
user). Most popular is scored on both splits. A variant's "x ours" is the ratio of its mean to
ours' mean over the seeds both have, with the standard error of that ratio from the two
seed spreads (`pretrain_quality.ratio_of_means_se`).

A variant is ``--variant NAME KEY=VALUE [KEY=VALUE ...]``; VALUE is JSON (``0.4``, ``true``,
``"mean"``) or else a string. KEY is ``encoder.FIELD`` (a `UserEncoderConfig` field, e.g.
``encoder.dropout``), ``data.FIELD`` (an `EventDataModule` argument, e.g.
``data.all_windows``), ``epochs``, ``batch_size``, or a `PretrainModule` argument (``lr``,
``weight_decay``, ``future_window``...). Every variant is checked before any training.

    python benchmarks/recipe_variants.py --quick     # 2 epochs, one seed: the script works
    python benchmarks/recipe_variants.py --seeds 3 \\
        --variant dropout_0.4 encoder.dropout=0.4 --variant hidden_100 encoder.hidden_size=100

``--results runs.jsonl`` keeps every finished fit (its configuration and scores) and reads
back the fits it already holds: processes given other ``--train`` models (or ``--seed``) can
share the file, a stopped run resumes, and ``--report`` reads them all and reports, training
nothing. A variant is compared with ours on the seeds the variant has.
Without ``--variant`` the variants of README's "Recipe diagnostics" run, less the one that
would be ours itself (said): README's table is ``--layers 2`` (ours before 3 blocks were
chosen there), the depth variant of today's recipe is ``layers_2``.

The last line is one JSON object: per model the mean validation / test NDCG@10 and the ratios
to ours, the variant best on validation, most popular, "quick" and "machine". Exits 0 with
"skipped": true when MovieLens-100K is absent.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_quality as pq  # noqa: E402
from saved_rows import save_run, saved_run  # noqa: E402

#: README's "Recipe diagnostics": regularisation and capacity levers not tried before (the
#: depth variant that equals ours' --layers is left out of a run)
DEFAULT_VARIANTS = [
    ["dropout_0.4", "encoder.dropout=0.4"],
    ["hidden_100", "encoder.hidden_size=100"],
    ["layers_2", "encoder.num_layers=2"],
    ["layers_3", "encoder.num_layers=3"],
    ["batch_64", "batch_size=64"],
    ["ffn_50", "encoder.intermediate_size=50"],  # the SASRec paper's feed-forward width
]
OURS = "ours"


@dataclass
class Variant:
    """Ours with ``changes`` applied: the spec and the settings a fit reads."""

    name: str
    changes: dict[str, Any]
    spec: pq.Spec
    epochs: int
    batch_size: int


@dataclass
class Scores:
    """Every seed's scores of one model (in seed order)."""

    seeds: list[int] = field(default_factory=list)
    valid: list[float] = field(default_factory=list)
    test: list[float] = field(default_factory=list)
    test_hr: list[float] = field(default_factory=list)
    another_user: list[float] = field(default_factory=list)


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, null, quoted strings), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 epochs, one seed, one variant")
    p.add_argument("--data", type=Path, default=pq.DEFAULT_DATA, help="MovieLens-100K folder")
    p.add_argument("--variant", nargs="+", action="append", default=None,
                   metavar=("NAME", "KEY=VALUE"),
                   help="a variant of ours: its name, then the settings it changes")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=None, help="seeds per model (default 2; 1 quick)")
    p.add_argument("--epochs", type=int, default=None, help="ours' epochs (100; 2 with --quick)")
    p.add_argument("--layers", type=int, default=None,
                   help="ours' blocks (default pretrain_quality.py's: 3; README's table: 2)")  # fmt: skip
    p.add_argument("--results", type=Path, default=None,
                   help="JSON lines, one per finished fit: a fit already there with the same "
                   "configuration is read, not retrained; new fits are appended")  # fmt: skip
    p.add_argument("--train", type=lambda text: [n for n in text.split(",") if n], default=None,
                   help="train only these models (comma-separated: ours and variant names); "
                   "the others are read from --results, or left out")  # fmt: skip
    p.add_argument("--report", action="store_true",
                   help="train nothing: report the fits --results holds")  # fmt: skip
    args = p.parse_args(argv)
    if args.report:
        if args.train is not None:
            p.error("--report trains nothing: leave out --train")
        if args.results is None:
            p.error("--report reads --results FILE: name it")
        args.train = []
    args.seeds = args.seeds or (1 if args.quick else 2)
    if args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    args.default_variants = args.variant is None
    if args.variant is None:
        args.variant = DEFAULT_VARIANTS[:1] if args.quick else DEFAULT_VARIANTS
    for words in args.variant:
        if len(words) < 2 or any("=" not in w for w in words[1:]):
            p.error(f"--variant {' '.join(words)}: expected NAME KEY=VALUE [KEY=VALUE ...]")
    names = [w[0] for w in args.variant]
    if len(set(names)) < len(names) or OURS in names:
        p.error(f"--variant names must be distinct and not {OURS!r}, got {names}")
    unknown = sorted(set(args.train or []) - {OURS, *names})
    if unknown:
        p.error(f"--train: no model named {unknown}; the models are {[OURS, *names]}")
    if args.train and args.results is None:
        p.error("--train trains a part: add --results FILE to keep it")
    return args


def quality_args(args: argparse.Namespace) -> argparse.Namespace:
    """`pretrain_quality`'s settings (its defaults: the judged recipe), on ``--data``."""
    layers = [] if args.layers is None else ["--layers", str(args.layers)]
    qa = pq.parse_args(["--data", str(args.data)] + (["--quick"] if args.quick else []) + layers)
    if qa.layers < 1:
        raise SystemExit(f"--layers must be >= 1, got {qa.layers}")
    qa.epochs = args.epochs or (2 if args.quick else None)
    return qa


def ours_variant(qa: argparse.Namespace) -> Variant:
    """The judged recipe, as `pretrain_quality.build_specs` builds it."""
    spec = next(s for s in pq.build_specs(qa) if s.name == OURS)
    return Variant(OURS, {}, spec, pq.epochs_of(qa), qa.batch_size)


def make_variant(base: Variant, name: str, settings: list[str]) -> Variant:
    """``base`` with each ``KEY=VALUE`` of ``settings`` applied (see the module docstring).

    Raises:
        SystemExit: a KEY that names nothing, or a value the module or data refuse.
    """
    module, data = copy.deepcopy(base.spec.module), dict(base.spec.data)
    epochs, batch_size, changes = base.epochs, base.batch_size, {}
    for setting in settings:
        key, _, text = setting.partition("=")
        value = changes[key] = parse_value(text)
        if key.startswith("encoder."):
            module["encoder"][key.removeprefix("encoder.")] = value
        elif key.startswith("data."):
            data[key.removeprefix("data.")] = value
        elif key == "epochs":
            epochs = value
        elif key == "batch_size":
            batch_size = value
        else:
            module[key] = value
    variant = Variant(name, changes, replace(base.spec, module=module, data=data), epochs,
                      batch_size)  # fmt: skip
    check(variant)
    return variant


def same_fit(a: Variant, b: Variant, qa: argparse.Namespace) -> bool:
    """Whether two variants train the same model (the same run for every seed)."""
    return run_key(a, 0, qa) == run_key(b, 0, qa)


def check(variant: Variant) -> None:
    """Build the variant's module and data module without data: a bad setting fails now."""
    from userfm.errors import ConfigError
    from userfm.pretrain.data import EventDataModule
    from userfm.pretrain.module import PretrainModule

    where = f"--variant {variant.name}"
    for name in ("epochs", "batch_size"):
        value = getattr(variant, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SystemExit(f"{where}: {name} must be an integer >= 1, got {value!r}")
    try:
        PretrainModule(**variant.spec.module)
        EventDataModule(source="synthetic", max_len=8, batch_size=variant.batch_size,
                        **variant.spec.data)  # fmt: skip
    except (ConfigError, TypeError, ValueError) as e:
        raise SystemExit(f"{where}: {e}") from e


def run_key(variant: Variant, seed: int, qa: argparse.Namespace) -> dict:
    """What decides a fit's numbers (a ``--results`` line is reused only if it matches)."""
    return json.loads(json.dumps(dict(
        module=variant.spec.module, data=variant.spec.data, epochs=variant.epochs,
        batch_size=variant.batch_size, max_len=qa.max_len, seed=seed,
    ), default=str))  # fmt: skip


def fit_and_score(variant: Variant, seed: int, qa: argparse.Namespace) -> dict[str, float]:
    """Train ``variant`` once with ``seed`` and score it (validation, test, another user)."""
    from userfm.eval import OtherUsersInput
    from userfm.eval.retrieval import evaluate_retrieval

    fit_args = copy.copy(qa)
    fit_args.batch_size = variant.batch_size
    module, dm = pq.fit(fit_args, variant.spec, variant.epochs, seed=seed)[:2]

    def ndcg_hr(model: Any, split: str) -> tuple[float, float]:
        report = evaluate_retrieval(model, dm.log_, split=split, sampled_negatives=None)
        return round(report.metrics["NDCG@10"], 4), round(report.metrics["HR@10"], 4)

    valid, (test, test_hr) = ndcg_hr(module.encoder, "valid")[0], ndcg_hr(module.encoder, "test")
    another = ndcg_hr(OtherUsersInput(module.encoder), "test")[0]
    return dict(valid=valid, test=test, test_hr=test_hr, another_user=another)


def scores_of(variant: Variant, args: argparse.Namespace, qa: argparse.Namespace) -> Scores:
    """Every seed of ``variant``, read from ``--results`` where it holds the fit; a model
    left out of ``--train`` has only the seeds read."""
    out = Scores()
    trains = args.train is None or variant.name in args.train
    for seed in range(args.seed, args.seed + args.seeds):
        t0, key = time.perf_counter(), run_key(variant, seed, qa)
        fit = saved_run(args.results, key)
        if fit is not None:
            source = f"read from {args.results}"
        elif not trains:
            print(f"{variant.name} seed {seed}: not in --results, not trained (--train)")
            continue
        else:
            fit = dict(key=key, **fit_and_score(variant, seed, qa))
            source = f"{time.perf_counter() - t0:.0f} s"
            save_run(args.results, fit)
        out.seeds.append(seed)
        for name in ("valid", "test", "test_hr", "another_user"):
            getattr(out, name).append(fit[name])
        print(f"{variant.name} seed {seed}: valid NDCG@10 {fit['valid']:.4f}, test "
              f"{fit['test']:.4f} ({source})", flush=True)  # fmt: skip
    return out


def mean_sd(values: list[float]) -> str:
    sd = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.4f}{sd}"


def ratio_to_ours(scores: Scores, ours: Scores, split: str) -> tuple[float, float]:
    """Mean of ``scores`` / mean of ours on ``split`` over the seeds ``scores`` has (ours
    has them all, `main` checks), and its standard error (NaN with one seed)."""
    a = getattr(scores, split)
    b = [getattr(ours, split)[ours.seeds.index(seed)] for seed in scores.seeds]
    return statistics.fmean(a) / statistics.fmean(b), pq.ratio_of_means_se(a, b)


def most_popular(qa: argparse.Namespace) -> dict[str, float]:
    """NDCG@10 of training counts on the validation and test splits, each counted without its
    own split's targets (`pretrain_quality.most_popular`)."""
    return {split: round(pq.most_popular(qa, split).m("NDCG@10"), 4) for split in ("valid", "test")}


def table(variants: list[Variant], scores: dict[str, Scores], popular: dict) -> list[str]:
    """The report: one row per model, then most popular."""

    def x(r: tuple[float, float]) -> str:
        return f"{r[0]:.3f}" + ("" if math.isnan(r[1]) else f" ± {r[1]:.3f}")

    ours = scores[OURS]
    lines = [
        "| model | change | seeds | valid NDCG@10 | x ours | test NDCG@10 | x ours | test HR@10 "
        "| test NDCG@10, another user's input |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in variants:
        s = scores[v.name]
        change = ", ".join(f"{k}={json.dumps(val)}" for k, val in v.changes.items()) or "-"
        cells = ["1.000", "1.000"] if v.name == OURS else [
            x(ratio_to_ours(s, ours, "valid")), x(ratio_to_ours(s, ours, "test"))]  # fmt: skip
        lines.append(
            f"| {v.name} | {change} | {len(s.seeds)} | {mean_sd(s.valid)} | {cells[0]} | "
            f"{mean_sd(s.test)} | {cells[1]} | {statistics.fmean(s.test_hr):.4f} | "
            f"{mean_sd(s.another_user)} |"
        )
    lines.append(f"| most popular (no model) | - | - | {popular['valid']:.4f} | | "
                 f"{popular['test']:.4f} | | | |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data / "u.data").is_file():
        print(f"SKIP: MovieLens-100K not found at {args.data}")
        print(json.dumps({"benchmark": "recipe_variants", "skipped": True}))
        return 0
    pq.quiet()
    qa = quality_args(args)
    ours = ours_variant(qa)
    variants = [ours]
    for words in args.variant:
        variant = make_variant(ours, words[0], words[1:])
        if not same_fit(variant, ours, qa):
            variants.append(variant)
        elif args.default_variants:
            print(f"{variant.name}: left out, ours already has {' '.join(words[1:])}")
        else:
            raise SystemExit(f"--variant {variant.name} changes nothing: ours already has "
                             f"{' '.join(words[1:])}")  # fmt: skip
    print(f"machine: {pq.machine_description()}; ours: {ours.epochs} epochs, seeds "
          f"{args.seed}..{args.seed + args.seeds - 1}; quick={args.quick}")  # fmt: skip
    scores = {v.name: scores_of(v, args, qa) for v in variants}
    # a variant is compared with ours on the seeds it has; ours needs every one of them
    missing = sorted({seed for s in scores.values() for seed in s.seeds} - set(scores[OURS].seeds))
    if missing or not scores[OURS].seeds:
        print(f"not reported: ours lacks seeds {missing or 'all'} that the comparison needs; "
              "train it (--train ours) or read it (--results)")  # fmt: skip
        print(json.dumps({"benchmark": "recipe_variants", "incomplete": [OURS]}))
        return 0
    scores = {n: s for n, s in scores.items() if s.seeds}  # a model with no fit is left out
    variants = [v for v in variants if v.name in scores]
    popular = most_popular(qa)
    print("\n".join(table(variants, scores, popular)))
    # ours is a candidate too: a variant is chosen only if it beats ours on validation
    best = max(
        scores,
        key=lambda n: 1.0 if n == OURS else ratio_to_ours(scores[n], scores[OURS], "valid")[0],
    )
    print(f"best on validation: {best}")
    summary = {
        name: {
            "valid": round(statistics.fmean(s.valid), 4),
            "test": round(statistics.fmean(s.test), 4),
            "another_user": round(statistics.fmean(s.another_user), 4),
            **({} if name == OURS else {
                f"{split}_x_ours": round(ratio_to_ours(s, scores[OURS], split)[0], 3)
                for split in ("valid", "test")}),
        }
        for name, s in scores.items()
    }  # fmt: skip
    print(json.dumps({"benchmark": "recipe_variants", "models": summary,
                      "best_on_valid": best, "most_popular": popular, "seeds": args.seeds,
                      "quick": args.quick, "machine": pq.machine_description()}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
