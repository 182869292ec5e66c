"""Does the frozen behaviour encoder carry the UQA answers? Its linear probe and its own
next-item scores, no LLM.

Reads what ``benchmarks/uqa_ml100k.py`` wrote (the ML-100K encoder and question set) and
answers every test question with `userfm.eval.uqa.encoder_answers`: a linear probe per
sub-task on the frozen encoder's mean-pooled states (the ceiling of what an adapter could
extract from the same states with this much training data), and the encoder's next-item
scores over the options of the action-prediction questions. ``userfm eval uqa --encoder DIR``
puts the same two rows in every UQA report; this script is the quick look without an LLM.

Run: python benchmarks/uqa_encoder_probe.py [--run runs/uqa_ml100k] [--data PATH] [--quick]
``--quick``: 100 optimiser steps instead of 500. Ends by printing one JSON line
(``"benchmark": "uqa_encoder_probe"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--run",
        type=Path,
        default=ROOT / "runs" / "uqa_ml100k",
        help="what benchmarks/uqa_ml100k.py wrote: reads its encoder/ and qa/ (default %(default)s)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="MovieLens-100K folder (default %(default)s)",
    )
    p.add_argument("--quick", action="store_true", help="100 probe steps instead of 500")
    args = p.parse_args(argv)
    if not (args.data / "u.data").is_file() or not (args.run / "encoder").is_dir():
        why = f"needs {args.data} and {args.run}/encoder (python benchmarks/uqa_ml100k.py)"
        print(f"skipped: {why}")
        print(json.dumps({"benchmark": "uqa_encoder_probe", "skipped": why}))
        return 0
    from userfm.data.sources import load_source
    from userfm.encoder import UserEncoder
    from userfm.eval.uqa import TASKS, load_question_config, load_questions
    from userfm.eval.uqa import encoder_answers as enc

    log = load_source(str(args.data), format="movielens-100k")
    encoder = UserEncoder.from_pretrained(args.run / "encoder").eval()
    questions = load_questions(args.run / "qa")
    steps = 100 if args.quick else 500
    train, test = list(questions["train"]), list(questions["test"])
    results = enc.probe_answers(enc.mean_state_features(encoder), log, train, test, steps=steps)
    results += enc.next_item_answers(encoder, log, test, load_question_config(args.run / "qa"))
    summary: dict[str, dict[str, float]] = {}
    print(f"test questions, 4 options; probe: {steps} steps on mean encoder states")
    for method in (enc.PROBE, enc.NEXT_ITEM):
        for task in TASKS:
            hits = [r["correct"] for r in results if r["method"] == method and r["task"] == task]
            if hits:
                summary.setdefault(method, {})[task] = round(float(np.mean(hits)), 3)
                print(f"  {method:26s} {task:15s} n {len(hits):4,}  accuracy {np.mean(hits):.3f}")
    print(json.dumps({"benchmark": "uqa_encoder_probe", "steps": steps, "accuracy": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
