"""Answer UQA questions with any model and with the non-learned baselines: one result per
question and method, ready for `accuracy_table` and `write_report`.

A model is anything with ``choose(histories, prompts, options)`` (multiple choice, one
forward pass: the option letter the LLM scores highest) and ``generate(histories, prompts,
max_new_tokens=...)`` (free form); ``prompt_lengths(histories, prompts)`` (the efficiency
column) and ``prompt_text(history, prompt)`` (what the LLM is shown, e.g. with the history as
text) are optional. `userfm.adapters.UserConditionedLM` is one; this module imports
no training stage (the CLI and the benchmarks wire models in).

Each result is a dict: ``question_id``, ``method``, ``user_id``, ``task``, ``dimension``,
``format``, ``prompt`` (as shown to the LLM), ``prediction``, ``gold``, ``correct``, ``prompt_tokens`` (what the
LLM read in front of the answer; None for non-LLM baselines) and ``ms`` (wall time per
question; for multiple choice that is one prefill pass).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from userfm.data.log import EventLog, UserHistory
from userfm.errors import ConfigError, DataError
from userfm.eval.uqa.baselines import AnswerPrior, DirectAnswerBaseline
from userfm.eval.uqa.schema import LETTERS
from userfm.eval.uqa.scoring import score
from userfm.eval.uqa.tasks import QuestionConfig

Record = Mapping[str, Any]

#: names of the non-learned methods, as they appear in reports
RANDOM, PRIOR, DIRECT = "random", "prior-only", "direct (from history)"


class Answerer(Protocol):
    """What `answer_questions` needs from a model."""

    def choose(
        self, histories: Sequence[UserHistory], prompts: Sequence[str], options: Sequence[str]
    ) -> list[str]: ...

    def generate(
        self, histories: Sequence[UserHistory], prompts: Sequence[str], *, max_new_tokens: int
    ) -> list[str]: ...


def check_users(records: Iterable[Record], log: EventLog) -> None:
    """Raise `DataError` naming the first question about a user the log does not have (the
    questions were built from another log)."""
    known = set(log.user_ids)
    for n, r in enumerate(records):
        if str(r["user_id"]) not in known:
            raise DataError(
                f"question {r.get('question_id')!r} is about user {r['user_id']!r}, who is not "
                "in the event log; evaluate with the log the questions were built from",
                column="user_id",
                row=n,
            )


def visible_history(log: EventLog, record: Record) -> UserHistory:
    """The events the question lets the model see: the user's first ``context_end`` ones."""
    try:
        history = log.history(str(record["user_id"]))
    except KeyError:
        qid = record.get("question_id")
        which = "a question" if qid is None else f"question {qid!r}"
        raise DataError(
            f"{which} is about user {record['user_id']!r}, who is not in the event log",
            column="user_id",
        ) from None
    end = record.get("context_end")
    return history if end is None else history[: int(end)]


def _result(method: str, r: Record, prediction: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "question_id": r["question_id"],
        "method": method,
        "user_id": r["user_id"],
        "task": r["task"],
        "dimension": r["dimension"],
        "format": r["format"],
        "prompt": r["prompt"],
        "prediction": prediction,
        "gold": r["answer_letter"] if r["format"] == "mc" else r["answer"],
        "correct": bool(score(prediction, r)),
        "prompt_tokens": None,
        "ms": None,
        **extra,
    }


def answer_questions(
    method: str,
    model: Answerer,
    records: Sequence[Record],
    log: EventLog,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 24,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Answer every record with ``model``: multiple choice through ``choose`` (batched by
    number of options), free form through ``generate``.

    Args:
        method: the name the results carry.
        model: see `Answerer`.
        records: question records (`userfm.eval.uqa.schema`).
        log: the event log they were built from.
        batch_size: questions per model call.
        max_new_tokens: answer length limit of free-form questions.
        progress: show a progress bar.

    Returns:
        One result per record, in the order of ``records``.
    """
    if batch_size < 1:
        raise ConfigError(f"`batch_size` must be >= 1, got {batch_size}")
    groups: dict[tuple[str, int], list[int]] = {}
    for i, r in enumerate(records):
        if r["format"] not in ("mc", "free"):
            raise DataError(f"record {i} has format {r['format']!r}; expected 'mc' or 'free'")
        groups.setdefault((r["format"], len(r["options"] or ())), []).append(i)
    out: list[dict[str, Any] | None] = [None] * len(records)
    lengths = getattr(model, "prompt_lengths", None)
    shown = getattr(model, "prompt_text", None)
    bar = tqdm(total=len(records), desc=f"userfm: {method}", disable=not progress, unit="q")
    for (fmt, n_options), idx in groups.items():
        for lo in range(0, len(idx), batch_size):
            chunk = [records[i] for i in idx[lo : lo + batch_size]]
            histories = [visible_history(log, r) for r in chunk]
            prompts = [r["prompt"] for r in chunk]
            start = time.perf_counter()
            if fmt == "mc":
                answers = model.choose(histories, prompts, LETTERS[:n_options])
            else:
                answers = model.generate(histories, prompts, max_new_tokens=max_new_tokens)
            ms = (time.perf_counter() - start) * 1000 / len(chunk)
            tokens = lengths(histories, prompts) if lengths is not None else [None] * len(chunk)
            rows = zip(idx[lo : lo + batch_size], chunk, histories, answers, tokens, strict=True)
            for i, r, h, a, t in rows:
                extra = {"prompt_tokens": t, "ms": ms}
                if shown is not None:
                    extra["prompt"] = shown(h, r["prompt"])
                out[i] = _result(method, r, a, **extra)
            bar.update(len(chunk))
    bar.close()
    return out  # type: ignore[return-value]


def random_answers(records: Iterable[Record], *, seed: int = 0) -> list[dict[str, Any]]:
    """A uniformly random option letter per multiple-choice record (free form is skipped:
    there is no option set to draw from)."""
    rng = np.random.default_rng(seed)
    return [
        _result(RANDOM, r, LETTERS[int(rng.integers(len(r["options"])))])
        for r in records
        if r["format"] == "mc" and r["options"]
    ]


def prior_answers(
    records: Iterable[Record], train_records: Iterable[Record]
) -> list[dict[str, Any]]:
    """Ignore the user (`AnswerPrior` of ``train_records``): for multiple choice the option
    most often right for that sub-task; for free form the sub-task's most common answer."""
    prior = AnswerPrior.fit(train_records)
    return [
        _result(
            PRIOR,
            r,
            prior.choose(r) if r["format"] == "mc" else (prior.majority(r["task"]) or ""),
        )
        for r in records
    ]


def direct_answers(
    records: Iterable[Record], log: EventLog, config: QuestionConfig | None = None
) -> list[dict[str, Any]]:
    """The answer computed from the visible history (`DirectAnswerBaseline`): exact for
    sequence understanding and interest perception, a popularity / last-attribute heuristic
    for action prediction."""
    base = DirectAnswerBaseline(log, config)
    return [_result(DIRECT, r, base.answer(r)) for r in records]


def sample_per_task(
    records: Sequence[Record], max_per_task: int | None, *, seed: int = 0
) -> list[Record]:
    """At most ``max_per_task`` records of each sub-task, drawn at random (fixed by ``seed``),
    in their original order; None keeps all."""
    if max_per_task is None:
        return list(records)
    if max_per_task < 1:
        raise ConfigError(f"`max_per_task` must be >= 1 or None, got {max_per_task}")
    rng = np.random.default_rng(seed)
    by_task: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_task.setdefault(r["task"], []).append(i)
    keep: set[int] = set()
    for idx in by_task.values():
        n = min(max_per_task, len(idx))
        keep.update(int(i) for i in rng.choice(idx, size=n, replace=False))
    return [r for i, r in enumerate(records) if i in keep]
