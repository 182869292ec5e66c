"""What the behaviour encoder itself answers, without an LLM: the references an adapter is
measured against.

* `probe_answers`: a linear probe (softmax classifier over a sub-task's training answers) on
  the frozen encoder's mean-pooled states. It is the ceiling of what the encoder's states hold
  for that sub-task at this size of training set: an adapter that reads the same states
  through a frozen LLM should approach it.
* `next_item_answers`: the action-prediction questions answered with the encoder's own
  next-item scores (`UserEncoder.recommend`'s scoring): the option title whose item scores
  highest (next_item), or the option attribute with the largest probability mass over unseen
  items (next_attribute).

Both take plain callables / duck-typed models (this package's evaluation imports no training
stage and no encoder class); `userfm eval uqa --encoder DIR` and the benchmarks wire the
encoder in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from userfm.data.log import EventLog, UserHistory
from userfm.eval.uqa.config import QuestionConfig, resolve_config
from userfm.eval.uqa.evaluate import option_letter, result_record, visible_history
from userfm.eval.uqa.events import UserEvents
from userfm.eval.uqa.schema import LETTERS, TASKS
from userfm.eval.uqa.scoring import normalise

__all__ = ["NEXT_ITEM", "PROBE", "mean_state_features", "next_item_answers", "probe_answers"]

Record = Mapping[str, Any]
#: names of the methods, as they appear in reports
PROBE, NEXT_ITEM = "encoder probe (linear)", "encoder next-item scores"
#: (N histories) -> (N, D) features, e.g. the encoder's mean-pooled states
Features = Callable[[Sequence[UserHistory]], np.ndarray]


class Recommender(Protocol):
    """Anything with `UserEncoder.recommend`'s signature."""

    def recommend(self, histories: Any, *, k: int | None, exclude_seen: bool, progress: bool): ...


def mean_state_features(encoder: Any, *, batch_size: int = 64) -> Features:
    """`Features` of a `UserEncoder`-like model: its states mean-pooled over each history's
    events, (N, D), no gradients."""

    def features(histories: Sequence[UserHistory]) -> np.ndarray:
        from userfm.data.collate import collate

        featurizer = encoder.featurizer()
        out = []
        for lo in range(0, len(histories), batch_size):
            batch = collate([featurizer(h) for h in histories[lo : lo + batch_size]])
            with torch.no_grad():
                states = encoder(batch.to(encoder.device)).states.float()  # (B, T, D)
            mask = batch.mask.to(states.device).unsqueeze(-1).float()  # (B, T, 1)
            out.append(((states * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    return features


def probe_answers(
    features: Features,
    log: EventLog,
    train_records: Sequence[Record],
    records: Sequence[Record],
    *,
    steps: int = 500,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Answer the multiple-choice ``records`` with a linear probe per sub-task.

    Per sub-task: features of each training question's visible history, standardised on the
    training questions, -> a softmax over the sub-task's training answers (full-batch AdamW,
    lr 0.05, weight decay 0.01, ``steps`` steps). A question is answered with the option of
    highest probability; options never seen as a training answer rank last.

    Args:
        features: (N histories) -> (N, D) array.
        log: the event log the questions were built from.
        train_records: the training questions (only multiple choice is used).
        records: the questions to answer (free-form ones are skipped).
        steps: optimiser steps per sub-task.
        seed: initialisation seed.

    Returns:
        One result per multiple-choice record whose sub-task has training questions.
    """
    out = []
    for task in TASKS:
        train = [r for r in train_records if r["task"] == task and r["format"] == "mc"]
        test = [r for r in records if r["task"] == task and r["format"] == "mc"]
        if not train or not test:
            continue
        x_train = np.asarray(features([visible_history(log, r) for r in train]), dtype=np.float32)
        x_test = np.asarray(features([visible_history(log, r) for r in test]), dtype=np.float32)
        classes = sorted({normalise(r["answer"]) for r in train})
        prob = _fit_probe(x_train, [classes.index(normalise(r["answer"])) for r in train],
                          x_test, len(classes), steps, seed)  # fmt: skip
        index = {c: i for i, c in enumerate(classes)}
        for r, p in zip(test, prob, strict=True):
            keys = [normalise(o) for o in r["options"]]
            scores = [float(p[index[k]]) if k in index else -1.0 for k in keys]
            out.append(result_record(PROBE, r, LETTERS[int(np.argmax(scores))]))
    return out


def _fit_probe(
    x_train: np.ndarray, y: list[int], x_test: np.ndarray, classes: int, steps: int, seed: int
) -> np.ndarray:
    """(N_test, classes) probabilities of a softmax classifier fitted on (x_train, y)."""
    a, b = torch.from_numpy(x_train), torch.from_numpy(x_test)
    mean, std = a.mean(0), a.std(0).clamp(min=1e-6)
    a, b = (a - mean) / std, (b - mean) / std
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(a.shape[1], classes)
    with torch.no_grad():  # seeded init, independent of the global RNG
        head.weight.normal_(0, 1 / np.sqrt(a.shape[1]), generator=gen)
        head.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=0.05, weight_decay=0.01)
    target = torch.tensor(y)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(a), target).backward()
            opt.step()
    with torch.no_grad():
        return head(b).softmax(-1).numpy()


def next_item_answers(
    model: Recommender,
    log: EventLog,
    records: Sequence[Record],
    config: QuestionConfig | None = None,
) -> list[dict[str, Any]]:
    """Answer the multiple-choice next_item / next_attribute ``records`` with the model's
    next-item scores over every item the user has not seen.

    next_item: the option whose title's item scores highest (a title shared by several items
    takes their best score). next_attribute: the option attribute whose unseen items hold the
    largest softmax probability mass (the attribute as the questions define it, from
    ``config``).

    Args:
        model: anything with `UserEncoder.recommend`'s signature.
        log: the event log the questions were built from.
        records: questions; other sub-tasks and free-form ones are skipped.
        config: the `QuestionConfig` the questions were built with.
    """
    wanted = [
        r for r in records if r["task"] in ("next_item", "next_attribute") and r["format"] == "mc"
    ]
    if not wanted:
        return []
    ev = UserEvents(log, resolve_config(config, {}))
    title_of = {str(i): t for i, t in zip(ev.items, ev.titles, strict=True)}
    attr_of = {str(i): a for i, a in zip(ev.items, ev.attrs, strict=True)}
    ranking = model.recommend(
        [visible_history(log, r) for r in wanted], k=None, exclude_seen=True, progress=False
    )
    out = []
    for row, r in enumerate(wanted):
        items, scores = ranking.item_ids[row], ranking.scores[row].astype(np.float64)
        ok = np.isfinite(scores)
        items, scores = items[ok], scores[ok]
        prob = np.exp(scores - scores.max())
        prob /= prob.sum()
        best: dict[str, float] = {}
        for item, s, p in zip(items, scores, prob, strict=True):
            key = title_of.get(str(item)) if r["task"] == "next_item" else attr_of.get(str(item))
            if key is None:
                continue
            key = normalise(key)
            # a title keeps its best item's score; an attribute sums its items' probability
            best[key] = max(best.get(key, -np.inf), s) if r["task"] == "next_item" else (
                best.get(key, 0.0) + p)  # fmt: skip
        values = [best.get(normalise(o), -np.inf) for o in r["options"]]
        out.append(
            result_record(NEXT_ITEM, r, option_letter(r, r["options"][int(np.argmax(values))]))
        )
    return out
