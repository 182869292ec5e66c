"""The end-to-end UQA recipe on MovieLens-100K: pretrain -> questions -> adapters -> report.

1. Pretrain the behaviour encoder on ML-100K (configs/pretrain/ml100k.yaml, ``--epochs``,
   ``--encoder-layers`` blocks: 2, the encoder README's UQA numbers were measured with; the
   config has 3 since issue 20, not yet measured here), or reuse one (``--encoder DIR``).
2. Build the question set (``userfm eval questions``, 4-option multiple choice, seven
   sub-tasks; users split 80/10/10, test users unseen in adapter training) and the alignment
   data (``userfm eval descriptions``: the same users' histories described).
3. Alignment stage, only when ``--methods`` names "aligned soft prompt" (configs/adapters/
   align.yaml, ``--align-steps`` steps): the soft prompt learns to make the frozen LLM describe
   the visible history; that method starts its QA fit from it.
4. Fine-tune each trained method with SmolLM2-135M-Instruct (configs/adapters/uqa_ml100k.yaml,
   ``--steps`` steps of batch 8 each; loss on the answer text): the trained no-user baseline
   (none + LoRA), the soft prompt (frozen LLM, no LoRA), cross-attention, and the 256-token
   text prompt + LoRA; with ``--methods`` also the soft prompt whose 10 recent-event vectors
   each carry their movie's text vector (issue 33 §4; the encoder pretrained with
   ``--item-text``).
5. ``userfm eval uqa`` on *every* test question (``--split valid``: validation question, to
   choose a recipe): those methods, each encoder method again
   with another test user's context (swapped user), the frozen LLM with no user and with a
   256-token text prompt (and 1024 with ``--long-text``), random, prior-only, the direct
   computation from the history, the encoder's linear probe and its next-item scores.
   Multiple choice by option likelihood; 95% Wilson intervals; the letter diagnostic of the
   frozen LLM and the predicted-position shares of every method beside.
6. Check the issue's targets (`check_targets`) and print them, with the time per method.

A method trained and scored in an earlier run joins the report with ``--include DIR`` (that
run's report folder, same questions); ``--check DIR`` only checks the targets of a report;
``--compare A B --reports DIR [DIR ...]`` only prints the paired difference of method A's
accuracy minus B's over the same questions, pooled over the reports (one per seed), with a
95% bootstrap interval over questions (`paired_difference`).

Run: python benchmarks/uqa_ml100k.py [--quick] [--encoder DIR] [--long-text] [--item-text]
[--split test|valid] [--seed N] [--data PATH] [--out DIR]. ``--quick``: 3 pretraining
epochs, 6 steps per method, 3 questions per sub-task: the plumbing in about 5 minutes, no
meaningful accuracy. Ends by printing one JSON line (``"benchmark": "uqa_ml100k"``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

from userfm.eval.uqa import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"
NO_USER, SOFT, ALIGNED, XATTN = "none + LoRA", "soft prompt", "aligned soft prompt", "cross-attn"
SOFT_TEXT = "soft prompt + item text"
# (name, mode, lora, starts from the alignment stage): the trained methods, each at the same
# steps x batch; the aligned soft prompt only when ``--methods`` names it (no better than the
# plain one when measured, and its alignment stage costs a fit of its own)
TRAINED = [
    (NO_USER, "none", True, False),
    (SOFT, "soft_prompt", False, False),
    (ALIGNED, "soft_prompt", False, True),
    (XATTN, "cross_attn", False, False),
    ("text-{budget} + LoRA", "text", True, False),
    (SOFT_TEXT, "soft_prompt", False, False),
]
#: methods trained only when ``--methods`` names them: the aligned soft prompt, and the soft
#: prompt whose recent-event vectors carry their item's text vector (issue 33 §4; its encoder
#: must hold item text: ``--item-text``)
OPT_IN = {ALIGNED, SOFT_TEXT}
#: a method's `adapters fit` flags beyond its mode and LoRA
EXTRA_FLAGS = {SOFT_TEXT: ["--model.adapter.recent_text", "true"]}
#: ``--item-text``: the encoder reads each movie's title and genres (MiniLM vectors, the items
#: table of the MovieLens loader) with cold_items.py's ID dropout, as pretrain_quality.py's
#: "ours + text" row
ITEM_TEXT_FLAGS = ["--data.items", "auto", "--data.item_text", "[title, genres]",
                   "--model.encoder.item_id_dropout", "0.5"]  # fmt: skip
SWAPPED = " [swapped user]"
PROBE = "encoder probe (linear)"


#: the encoder depth README's and the model card's UQA numbers were measured with: the ml100k
#: config's before issue 20 chose 3 blocks on retrieval (a 3-block encoder is not measured on
#: UQA yet, so the recipe that produced the published numbers stays the default here)
UQA_ENCODER_LAYERS = 2


def cli(argv: list[str]) -> None:
    from userfm.cli import main

    print("$ userfm " + " ".join(argv), flush=True)
    rc = main(argv)
    if rc:
        raise SystemExit(f"userfm {argv[0]} failed with status {rc}")


def slug(name: str) -> str:
    for a, b in ((" + ", "_"), (", ", "_"), (" ", "_"), ("-", "_")):
        name = name.replace(a, b)
    return name.lower()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="the plumbing in about 5 minutes")
    p.add_argument("--encoder", type=Path, default=None, help="reuse this encoder, no pretraining")
    p.add_argument(
        "--long-text",
        action="store_true",
        help="also the 1024-token text prompt, zero-shot and + LoRA (slow on CPU: a GPU item)",
    )
    p.add_argument(
        "--item-text",
        action="store_true",
        help="pretrain the encoder with each movie's text (title, genres; MiniLM), which "
        f"{SOFT_TEXT!r} reads",
    )
    p.add_argument(
        "--split",
        choices=("test", "valid"),
        default="test",
        help="the questions scored: test (the report) or valid (choosing a recipe)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="every adapter fit's seed (default: the config's, 0); the questions do not change",
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the ml-100k folder")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "runs" / "uqa_ml100k",
        help="the run's folder (a rerun replaces what an earlier run wrote there)",
    )
    p.add_argument("--epochs", type=int, default=None, help="pretraining (default 100, quick 3)")
    p.add_argument("--steps", type=int, default=None, help="per method (default 300, quick 6)")
    p.add_argument(
        "--encoder-layers",
        type=int,
        default=UQA_ENCODER_LAYERS,
        help=f"the pretrained encoder's blocks (default {UQA_ENCODER_LAYERS}: README's UQA "
        "numbers; configs/pretrain/ml100k.yaml has 3)",
    )
    p.add_argument(
        "--align-steps", type=int, default=None, help="alignment stage (default --steps / 2)"
    )
    p.add_argument("--max-per-task", type=int, default=None, help="(default all, quick 3)")
    p.add_argument(
        "--tasks", default=None, help="train and evaluate these sub-tasks only (comma-separated)"
    )
    p.add_argument(
        "--methods",
        default=None,
        help="train only these methods (comma-separated names, e.g. 'soft prompt'; default "
        f"all but {sorted(OPT_IN)})",
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        type=Path,
        metavar="RESULTS",
        help="an earlier run's report folder or results.jsonl on the same questions: its "
        "methods join this report (`userfm eval uqa --include`; repeat)",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        default=None,
        help="only print method A's accuracy minus B's, paired by question, pooled over --reports",
    )
    p.add_argument(
        "--reports",
        nargs="+",
        type=Path,
        default=[],
        metavar="REPORT",
        help="report folders (one per seed, same questions) for --compare",
    )
    p.add_argument(
        "--check",
        type=Path,
        default=None,
        metavar="REPORT",
        help="only check the targets on this report folder and print them",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare is not None:
        if not args.reports:
            raise SystemExit("--compare needs --reports REPORT [REPORT ...]")
        a, b = args.compare
        results = [pd.read_json(r / "results.jsonl", lines=True) for r in args.reports]
        diff = paired_difference(results, a, b)
        print(f"{a} minus {b}, paired over the same questions, {len(results)} report(s):")
        for level, d in diff.items():
            print(f"  {level:<24} {d['a']:.3f} - {d['b']:.3f} = {d['diff']:+.3f} "
                  f"[{d['lo']:+.3f}, {d['hi']:+.3f}] (n={d['n']})")  # fmt: skip
        print(json.dumps({"benchmark": "uqa_ml100k", "compare": [a, b], "paired": diff}))
        return 0
    if args.check is not None:
        verdict = check_targets(args.check, 64 if args.quick else 256)
        print("\n".join(verdict.pop("lines")))
        print(json.dumps({"benchmark": "uqa_ml100k", "checked": str(args.check), **verdict}))
        return 0
    quick = args.quick
    # paths as given, before the working directory moves to the repository
    args.data, args.out = args.data.resolve(), args.out.resolve()
    args.include = [p.resolve() for p in args.include]
    if args.encoder is not None:
        args.encoder = args.encoder.resolve()
    epochs = args.epochs or (3 if quick else 100)
    steps = args.steps or (6 if quick else 300)
    # descriptions are longer answers: half the steps cost about one QA run
    align_steps = args.align_steps or max(steps // 2, 1)
    per_task = args.max_per_task or (3 if quick else None)
    budgets = (64, 128) if quick else (256, 1024)
    if not (args.data / "u.data").is_file():
        print(f"skipped: no MovieLens-100K at {args.data}")
        print(json.dumps({"benchmark": "uqa_ml100k", "skipped": f"no data at {args.data}"}))
        return 0
    os.chdir(ROOT)
    out = args.out.resolve()
    data = str(args.data.resolve())
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if args.encoder is None:
        encoder = pretrain(out, data, epochs, args.encoder_layers, timings, args.item_text)
    else:
        encoder = args.encoder
    encoder = str(Path(encoder).resolve())
    ml = ["--log", data, "--log_format", "movielens-100k"]
    nouns = ["--item_noun", "movie", "--attribute_noun", "genre"]
    cli(["eval", "questions", *ml, *nouns, "--out", str(out / "qa"), "--overwrite"])
    cli(["eval", "descriptions", *ml, *nouns, "--out", str(out / "describe"), "--overwrite"])
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    runs = select_runs(args, budgets)
    common = fit_flags(out, data, encoder, steps, quick)
    if args.seed is not None:
        common += ["--seed_everything", str(args.seed)]
    if any(aligned for _, _, _, aligned, _, _ in runs):
        t = time.perf_counter()
        cli(["adapters", "fit", "--config", "configs/adapters/align.yaml", *common,
             "--data.questions", str(out / "describe"),
             "--model.export_dir", str(out / "adapters" / "align" / "adapter"),
             "--trainer.logger.init_args.name", "align",
             "--trainer.max_steps", str(align_steps),
             "--trainer.val_check_interval", str(max(align_steps // 2, 1))])  # fmt: skip
        timings["fit align (stage 2a) s"] = time.perf_counter() - t
    only = ["--data.tasks", json.dumps(tasks)] if tasks else []  # QA fits; descriptions: all
    adapters = []
    from userfm.adapters.config import ENCODER_MODES

    for name, mode, lora, aligned, budget, extra in runs:
        folder = out / "adapters" / slug(name)
        init = ["--model.init_from", str(out / "adapters" / "align" / "adapter")] if aligned else []
        t = time.perf_counter()
        cli(["adapters", "fit", "--config", "configs/adapters/uqa_ml100k.yaml", *common, *only,
             "--data.questions", str(out / "qa"),
             "--model.adapter.mode", mode, "--model.adapter.lora", str(lora).lower(),
             *([] if mode in ENCODER_MODES else ["--model.adapter.recent_events", "0"]),
             "--model.adapter.text_tokens", str(budget), "--model.max_length", str(budget + 128),
             "--model.export_dir", str(folder / "adapter"),
             "--trainer.logger.init_args.name", slug(name), *init, *extra])  # fmt: skip
        timings[f"fit {name} s"] = time.perf_counter() - t
        adapters += ["--adapter", f"{name}={folder / 'adapter'}"]
    t = time.perf_counter()
    report = out / "report"
    cli(["eval", "uqa", "--questions", str(out / "qa"), *ml, "--out", str(report), "--overwrite", *adapters,
         "--zero_shot", "--text_tokens", *map(str, budgets[: 2 if args.long_text else 1]),
         "--encoder", encoder,
         "--swapped", "--letters", *(f"--include={p}" for p in args.include),
         *(["--max_per_task", str(per_task)] if per_task else []),
         *(["--tasks", args.tasks] if tasks else []), "--split", args.split])  # fmt: skip
    timings["evaluate s"] = time.perf_counter() - t
    timings["total s"] = time.perf_counter() - start
    verdict = check_targets(report, budgets[0])
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch threads {__import__('torch').get_num_threads()}; {'--quick' if quick else 'full'}"
        f" run: {epochs} pretraining epochs, {steps} steps x batch 8 per method, "
        f"{'all' if per_task is None else per_task} {args.split} questions per sub-task"
    )
    print("\n".join(f"{k}: {v:,.0f}" for k, v in timings.items()))
    print("\n".join(verdict.pop("lines")))
    summary = {"benchmark": "uqa_ml100k", "quick": quick, **verdict}
    summary["seconds"] = {k: round(v) for k, v in timings.items()}
    print(json.dumps(summary))
    return 0


def select_runs(args: argparse.Namespace, budgets: tuple[int, int]) -> list[tuple]:
    """(name, mode, lora, starts from alignment, text budget, extra flags) of each method to
    train: `TRAINED` but `OPT_IN` (or the ``--methods`` named), plus the long text prompt with
    ``--long-text``."""
    runs = [
        (n.format(budget=budgets[0]), m, lora, a, budgets[0], EXTRA_FLAGS.get(n, []))
        for n, m, lora, a in TRAINED
    ]
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",")]
        unknown = sorted(set(wanted) - {r[0] for r in runs})
        if unknown:
            raise SystemExit(f"--methods: unknown {unknown}; known: {[r[0] for r in runs]}")
        runs = [r for r in runs if r[0] in wanted]
    else:
        runs = [r for r in runs if r[0] not in OPT_IN]
    if args.long_text:  # the same 8 questions per step, in micro-batches that fit
        small = ["--data.batch_size", "2", "--trainer.accumulate_grad_batches", "4"]
        runs.append((f"text-{budgets[1]} + LoRA", "text", True, False, budgets[1], small))
    return runs


def pretrain(
    out: Path,
    data: str,
    epochs: int,
    layers: int,
    timings: dict[str, float],
    item_text: bool = False,
) -> Path:
    t = time.perf_counter()
    cli(["pretrain", "fit", "--config", "configs/pretrain/ml100k.yaml",
         "--data.source", data, "--trainer.max_epochs", str(epochs),
         "--model.encoder.num_layers", str(layers), *(ITEM_TEXT_FLAGS if item_text else []),
         "--trainer.check_val_every_n_epoch", str(max(epochs // 2, 1)),
         "--trainer.logger.init_args.save_dir", str(out / "pretrain"),
         "--trainer.default_root_dir", str(out / "pretrain")])  # fmt: skip
    encoder = out / "encoder"
    # the run folder the fit wrote (its checkpoints/last.ckpt): --trainer.default_root_dir
    cli(["pretrain", "export", str(out / "pretrain"), str(encoder), "--overwrite"])
    timings["pretrain s"] = time.perf_counter() - t
    return encoder


def fit_flags(out: Path, data: str, encoder: str, steps: int, quick: bool) -> list[str]:
    """The flags every `adapters fit` of the run shares."""
    return ["--model.adapter.encoder", encoder, "--data.log", data,
            "--trainer.max_steps", str(steps),
            "--trainer.val_check_interval", str(max(steps // 2, 1)),
            "--trainer.default_root_dir", str(out / "adapters"),
            "--trainer.logger.init_args.save_dir", str(out / "adapters"),
            "--data.max_eval", str(16 if quick else 64)]  # fmt: skip


def paired_difference(
    results: list[pd.DataFrame], a: str, b: str, *, draws: int = 2000, seed: int = 0
) -> dict[str, dict]:
    """Accuracy of method ``a`` minus ``b`` on the same questions, per dimension and overall.

    Each of ``results`` (a report's results.jsonl: one seed's fits, the same questions) must
    hold both methods on the same question ids. A question's difference is averaged over the
    seeds; the 95% interval resamples questions (a percentile bootstrap of ``draws`` draws),
    so seeds and the question sample both count.

    Returns:
        ``{level: {"a", "b", "diff", "lo", "hi", "n"}}`` for ``overall`` and each dimension.

    Raises:
        SystemExit: a method missing from a report, or the two not on the same questions.
    """
    import numpy as np

    per_seed = []
    for i, r in enumerate(results):
        got = {}
        for m in (a, b):
            rows = r[r["method"] == m].set_index("question_id")
            if rows.empty:
                raise SystemExit(f"report {i}: no method {m!r}; it has {sorted(set(r['method']))}")
            got[m] = rows
        if set(got[a].index) != set(got[b].index):
            raise SystemExit(f"report {i}: {a!r} and {b!r} did not answer the same questions")
        per_seed.append(
            pd.DataFrame(
                {
                    "dimension": got[a]["dimension"],
                    "a": got[a]["correct"].astype(float),
                    "b": got[b]["correct"].reindex(got[a].index).astype(float),
                }
            )
        )
    joined = (
        pd.concat(per_seed).groupby(level=0).agg({"dimension": "first", "a": "mean", "b": "mean"})
    )
    if len(per_seed) > 1 and len(joined) != len(per_seed[0]):
        raise SystemExit("the reports did not answer the same questions")
    rng = np.random.default_rng(seed)
    out = {}
    for level, rows in [("overall", joined), *joined.groupby("dimension")]:
        d = (rows["a"] - rows["b"]).to_numpy()
        boot = d[rng.integers(0, len(d), size=(draws, len(d)))].mean(axis=1)
        out[level] = {"a": round(float(rows["a"].mean()), 4), "b": round(float(rows["b"].mean()), 4),
                      "diff": round(float(d.mean()), 4), "lo": round(float(np.quantile(boot, 0.025)), 4),
                      "hi": round(float(np.quantile(boot, 0.975)), 4), "n": int(len(d))}  # fmt: skip
    return out


def _interval(acc: pd.DataFrame, method: str, level: str, name: str) -> tuple[float, float, float]:
    row = acc[(acc["method"] == method) & (acc["level"] == level) & (acc["name"] == name)]
    if row.empty:
        return (float("nan"),) * 3
    r = row.iloc[0]
    return float(r["accuracy"]), float(r["ci_low"]), float(r["ci_high"])


def _above(acc: pd.DataFrame, method: str, others: list[str], dim: str) -> bool:
    """``method``'s interval on ``dim`` lies above every other method's (non-overlapping)."""
    low = _interval(acc, method, "dimension", dim)[1]
    return all(low > _interval(acc, o, "dimension", dim)[2] for o in others)


def check_targets(report: Path, budget: int) -> dict:
    """The issue's targets, read from the report's accuracy.csv, positions.csv and
    results.jsonl (the soft prompt judged: the better of the two soft-prompt rows overall)."""
    acc = pd.read_csv(report / "accuracy.csv")
    positions = pd.read_csv(report / "positions.csv").set_index("method")
    results = pd.read_json(report / "results.jsonl", lines=True)
    tokens = results.groupby("method")["prompt_tokens"].mean()
    text = f"text-{budget} + LoRA"
    out: dict = {"accuracy": {}}
    for m in acc["method"].unique():
        rows = acc[(acc["method"] == m) & (acc["level"] != "task")]
        out["accuracy"][m] = {r.name: round(float(r.accuracy), 3) for r in rows.itertuples()}
    present = [m for m in (SOFT, ALIGNED) if m in set(acc["method"])] or [SOFT]
    soft = max(present, key=lambda m: _interval(acc, m, "overall", "overall")[0])
    checks = {}
    for dim in ("interest_perception", "sequence_understanding"):
        checks[f"soft prompt above no-user and swapped on {dim}"] = _above(
            acc, soft, [NO_USER, soft + SWAPPED], dim
        )
    checks["soft prompt overall >= 0.40"] = _interval(acc, soft, "overall", "overall")[0] >= 0.40
    checks["cross-attn above no-user and swapped on interest_perception"] = _above(
        acc, XATTN, [NO_USER, XATTN + SWAPPED], "interest_perception"
    )
    probe = _interval(acc, PROBE, "task", "long_term")[0]
    long_term = _interval(acc, soft, "task", "long_term")[0]
    checks["soft prompt >= 75% of the encoder probe on long_term"] = long_term >= 0.75 * probe
    # the user context's tokens: the prompt beyond the same question with no user (the chat
    # template and the question, which every method reads, are not what the user costs)
    base = tokens.get(ev.ZERO_SHOT_NONE, float("nan"))
    ratio = float((tokens.get(text, float("nan")) - base) / (tokens.get(soft, float("nan")) - base))
    total = float(tokens.get(text, float("nan")) / tokens.get(soft, float("nan")))
    checks[f"soft prompt >= {text} on interest_perception with >= 10x fewer user tokens"] = (
        _interval(acc, soft, "dimension", "interest_perception")[0]
        >= _interval(acc, text, "dimension", "interest_perception")[0]
        and ratio >= 10
    )
    scored = [m for m in positions.index if m != "gold" and not m.endswith(" [letter]")]
    flagged = [m for m in scored if bool(positions.loc[m, "flagged"])]
    checks["no scored method flagged for position bias"] = not flagged
    lines = [f"soft prompt judged: {soft}; user-context tokens {text} / soft prompt: "
             f"{ratio:.1f}x (whole prompts {total:.1f}x); long_term {long_term:.3f} vs probe "
             f"{probe:.3f}", "targets:"]  # fmt: skip
    lines += [f"  {'MET' if ok else 'not met'}: {k}" for k, ok in checks.items()]
    if flagged:
        lines.append(f"  flagged for position bias: {flagged}")
    out.update(soft_prompt_judged=soft, flagged=flagged,
               token_ratio=None if math.isnan(ratio) else round(ratio, 1),
               prompt_token_ratio=None if math.isnan(total) else round(total, 1),
               targets={k: bool(v) for k, v in checks.items()}, lines=lines)  # fmt: skip
    return out


if __name__ == "__main__":
    sys.exit(main())
