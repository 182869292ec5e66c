"""Does the frozen behaviour encoder carry the UQA answers? A linear probe, no LLM.

Reads what ``benchmarks/uqa_ml100k.py`` wrote (the ML-100K encoder and question set). Per
sub-task: each question's visible history -> the frozen encoder's states, mean-pooled over
the events (D = hidden size) -> a softmax classifier over the sub-task's training answers
(full-batch AdamW, features standardised on the training questions). A test question is
answered with the option the classifier gives the highest probability; options it never saw
as an answer score lowest. This is a reference for what an adapter could extract from the
same states: above chance means the user signal is in the encoder, and an LLM adapter at
chance has not learnt to read it.

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
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"


def features(encoder, log, records, batch_size: int = 64) -> torch.Tensor:
    """(N, D) mean of the encoder states over each question's visible events."""
    from userfm.data.collate import collate
    from userfm.eval.uqa.evaluate import visible_history

    featurizer = encoder.featurizer()
    out = []
    for lo in range(0, len(records), batch_size):
        batch = collate(
            [featurizer(visible_history(log, r)) for r in records[lo : lo + batch_size]]
        )
        with torch.no_grad():
            states = encoder(batch).states  # (B, T, D)
        mask = batch.mask.unsqueeze(-1).float()  # (B, T, 1)
        out.append((states * mask).sum(1) / mask.sum(1).clamp(min=1))
    return torch.cat(out)


def probe_accuracy(train, test, x_train, x_test, steps: int, seed: int = 0) -> float:
    """Multiple-choice accuracy of a softmax classifier over the training answers."""
    classes = sorted({r["answer"] for r in train})
    index = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([index[r["answer"]] for r in train])
    mean, std = x_train.mean(0), x_train.std(0).clamp(min=1e-6)
    a, b = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(seed)
    head = torch.nn.Linear(a.shape[1], len(classes))
    opt = torch.optim.AdamW(head.parameters(), lr=0.05, weight_decay=0.01)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(a), y).backward()
        opt.step()
    with torch.no_grad():
        prob = head(b).softmax(-1)
    hits = []
    for r, p in zip(test, prob, strict=True):
        scores = [float(p[index[o]]) if o in index else -1.0 for o in r["options"]]
        hits.append(r["options"][int(np.argmax(scores))] == r["answer"])
    return float(np.mean(hits))


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "uqa_ml100k")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if not (args.data / "u.data").is_file() or not (args.run / "encoder").is_dir():
        why = f"needs {args.data} and {args.run}/encoder (python benchmarks/uqa_ml100k.py)"
        print(f"skipped: {why}")
        print(json.dumps({"benchmark": "uqa_encoder_probe", "skipped": why}))
        return 0
    from userfm.data.sources import load_source
    from userfm.encoder import UserEncoder
    from userfm.eval.uqa import TASKS, load_questions

    torch.set_grad_enabled(True)
    log = load_source(str(args.data), format="movielens-100k")
    encoder = UserEncoder.from_pretrained(args.run / "encoder").eval()
    questions = load_questions(args.run / "qa")
    steps = 100 if args.quick else 500
    result = {}
    print(f"linear probe on mean encoder states, {steps} steps; test questions, 4 options")
    for task in TASKS:
        train = [r for r in questions["train"] if r["task"] == task and r["format"] == "mc"]
        test = [r for r in questions["test"] if r["task"] == task and r["format"] == "mc"]
        if not train or not test:
            continue
        x_train, x_test = features(encoder, log, train), features(encoder, log, test)
        acc = probe_accuracy(train, test, x_train, x_test, steps)
        result[task] = round(acc, 3)
        print(f"  {task:15s} train {len(train):5,}  test {len(test):4,}  accuracy {acc:.3f}")
    print(json.dumps({"benchmark": "uqa_encoder_probe", "steps": steps, "accuracy": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
