"""Answer UQA questions with any model and with the non-learned baselines: one result per
question and method, ready for `accuracy_table` and `write_report`.

A model is anything with ``option_logprobs(histories, questions, options)`` (multiple
choice by likelihood, "cloze": each option's text scored as the answer to the question
without its option list; returns per question the summed log-probability and token count of
each option) and ``generate(histories, prompts, max_new_tokens=...)`` (free form);
``choose_letter(histories, prompts, letters)`` (the letter diagnostic),
``events_read(history)`` and ``prompt_lengths(histories, prompts)`` (the efficiency columns)
and ``prompt_text(history, prompt)`` (what the LLM is shown, e.g. with the history as text)
are optional.
`userfm.adapters.UserConditionedLM` is one; this module imports no training stage (the CLI and
the benchmarks wire models in).

Multiple choice is never scored by the option letter: a small instruct LLM picks "A" whatever
the question (issue 17: 100 of 100), which hides whether it read anything. The letter is kept
as a diagnostic method (``letters=True``) whose position bias the report shows.

Each method can also be run with another user's context (`swapped_users`): every question
is answered with the history of a different user of the same question set. What a method
loses then is the user-specific part of its accuracy.

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
from userfm.progress import resolve_progress

Record = Mapping[str, Any]

#: names of the non-learned methods, as they appear in reports
RANDOM, PRIOR, DIRECT = "random", "prior-only", "direct (from history)"
#: the frozen LLM with no user context (`userfm eval uqa --zero_shot`)
ZERO_SHOT_NONE = "none (zero-shot)"


class OptionScored(Protocol):
    """One question's option scores (`userfm.adapters.model.OptionScores` is one)."""

    logprob: list[float]
    tokens: list[int]

    def best(self, per_token: bool = False) -> int: ...


class Answerer(Protocol):
    """What `answer_questions` needs from a model."""

    def option_logprobs(
        self,
        histories: Sequence[UserHistory],
        prompts: Sequence[str],
        options: Sequence[Sequence[str]],
    ) -> list[OptionScored]: ...

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


def result_record(method: str, r: Record, prediction: str | None, **extra: Any) -> dict[str, Any]:
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


#: suffixes of the extra methods `answer_questions` derives from one model
PER_TOKEN, LETTER, SWAPPED = " [per token]", " [letter]", " [swapped user]"


def swapped_users(records: Sequence[Record], *, seed: int = 0) -> dict[str, str]:
    """A random derangement of the users of ``records``: user -> another user, whose context
    answers the first one's questions in the swapped-user control. Empty with fewer than 2
    users."""
    users = sorted({str(r["user_id"]) for r in records})
    if len(users) < 2:
        return {}
    order = [users[i] for i in np.random.default_rng([seed, 0x5A7]).permutation(len(users))]
    return {u: order[(i + 1) % len(order)] for i, u in enumerate(order)}


def _contexts(
    chunk: Sequence[Record],
    log: EventLog,
    swap: Mapping[str, str] | None,
    own: Mapping[str, Record],
) -> list[UserHistory]:
    """Each record's visible history, or (with ``swap``) the visible history of the user it
    is swapped with, as that user's own question ``own[user]`` sees it."""
    if swap is None:
        return [visible_history(log, r) for r in chunk]
    return [visible_history(log, own[swap[str(r["user_id"])]]) for r in chunk]


def answer_questions(
    method: str,
    model: Answerer,
    records: Sequence[Record],
    log: EventLog,
    *,
    batch_size: int = 16,
    max_new_tokens: int = 24,
    per_token: bool = True,
    letters: bool = False,
    swap: Mapping[str, str] | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Answer every record with ``model``: multiple choice by option likelihood, free form
    through ``generate``.

    Args:
        method: the name the results carry.
        model: see `Answerer`.
        records: question records (`userfm.eval.uqa.schema`).
        log: the event log they were built from.
        batch_size: questions per model call.
        max_new_tokens: answer length limit of free-form questions.
        per_token: also report the length-normalised choice (mean log-probability per
            token) as the method ``method + PER_TOKEN``, from the same forward pass.
        letters: also run the letter diagnostic (``choose_letter`` on the prompt with its
            lettered options) as ``method + LETTER``.
        swap: user -> user whose context answers their questions (`swapped_users`).
        progress: show a progress bar (None: when stderr is a terminal).

    Returns:
        One result per record (and per derived method), records in order.
    """
    if batch_size < 1:
        raise ConfigError(f"`batch_size` must be >= 1, got {batch_size}")
    for i, r in enumerate(records):
        if r["format"] not in ("mc", "free"):
            raise DataError(f"record {i} has format {r['format']!r}; expected 'mc' or 'free'")
    lengths = getattr(model, "prompt_lengths", None)
    shown = getattr(model, "prompt_text", None)
    events_read = getattr(model, "events_read", None)
    out: dict[str, list[dict[str, Any]]] = {method: []}
    if per_token:
        out[method + PER_TOKEN] = []
    if letters:
        out[method + LETTER] = []
    own = {str(r["user_id"]): r for r in records}
    if swap is not None and not set(own) <= set(swap):
        raise ConfigError("`swap` must map every user of the records to another user")
    bar = tqdm(
        total=len(records),
        desc=f"userfm: {method}",
        disable=not resolve_progress(progress),
        unit="q",
    )
    for lo in range(0, len(records), batch_size):
        chunk = list(records[lo : lo + batch_size])
        histories = _contexts(chunk, log, swap, own)
        prompts = [cloze_prompt(r) for r in chunk]
        start = time.perf_counter()
        answers = _answer_chunk(model, chunk, histories, prompts, max_new_tokens)
        ms = (time.perf_counter() - start) * 1000 / len(chunk)
        tokens = lengths(histories, prompts) if lengths is not None else [None] * len(chunk)
        for r, h, t, (best, best_norm) in zip(chunk, histories, tokens, answers, strict=True):
            extra = {"prompt_tokens": t, "ms": ms}
            if events_read is not None:
                extra["events_read"] = events_read(h)
            if shown is not None:
                extra["prompt"] = shown(h, cloze_prompt(r))
            out[method].append(result_record(method, r, best, **extra))
            if per_token:
                out[method + PER_TOKEN].append(
                    result_record(method + PER_TOKEN, r, best_norm, **extra)
                )
        if letters:
            for r, picked in zip(*_letters(model, chunk, histories), strict=True):
                out[method + LETTER].append(result_record(method + LETTER, r, picked))
        bar.update(len(chunk))
    bar.close()
    return [row for rows in out.values() for row in rows]


def _letters(
    model: Answerer, chunk: Sequence[Record], histories: Sequence[UserHistory]
) -> tuple[list[Record], list[str]]:
    """The letter diagnostic of the chunk's multiple-choice records (one call per number of
    options): (records, letters)."""
    by_n: dict[int, list[int]] = {}
    for i, r in enumerate(chunk):
        if r["format"] == "mc":
            by_n.setdefault(len(r["options"]), []).append(i)
    records, picked = [], []
    for n, idx in by_n.items():
        records += [chunk[i] for i in idx]
        picked += model.choose_letter(
            [histories[i] for i in idx], [chunk[i]["prompt"] for i in idx], LETTERS[:n]
        )
    return records, picked


def cloze_prompt(record: Record) -> str:
    """The user message a model is asked for ``record``, in training and evaluation alike: a
    multiple-choice question without its option list (cloze: the options are scored as
    answers), otherwise the record's ``prompt`` (or ``question``)."""
    if record.get("format") == "mc" and record.get("question"):
        return str(record["question"])
    return str(record.get("prompt") or record["question"])


def _answer_chunk(
    model: Answerer,
    chunk: Sequence[Record],
    histories: Sequence[UserHistory],
    prompts: Sequence[str],
    max_new_tokens: int,
) -> list[tuple[str, str]]:
    """(answer, length-normalised answer) per record: option letters for multiple choice,
    generated text (twice) for free form."""
    out: list[tuple[str, str] | None] = [None] * len(chunk)
    mc = [i for i, r in enumerate(chunk) if r["format"] == "mc"]
    free = [i for i, r in enumerate(chunk) if r["format"] == "free"]
    if mc:
        scores = model.option_logprobs(
            [histories[i] for i in mc], [prompts[i] for i in mc], [chunk[i]["options"] for i in mc]
        )
        for i, s in zip(mc, scores, strict=True):
            out[i] = (LETTERS[s.best()], LETTERS[s.best(per_token=True)])
    if free:
        texts = model.generate(
            [histories[i] for i in free], [prompts[i] for i in free], max_new_tokens=max_new_tokens
        )
        for i, t in zip(free, texts, strict=True):
            out[i] = (t, t)
    return out  # type: ignore[return-value]


def random_answers(records: Iterable[Record], *, seed: int = 0) -> list[dict[str, Any]]:
    """A uniformly random option letter per multiple-choice record (free form is skipped:
    there is no option set to draw from)."""
    rng = np.random.default_rng(seed)
    return [
        result_record(RANDOM, r, LETTERS[int(rng.integers(len(r["options"])))])
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
        result_record(
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
    return [result_record(DIRECT, r, option_letter(r, base.answer(r))) for r in records]


def option_letter(record: Record, answer: str) -> str:
    """A multiple-choice answer given as option text -> its letter (so that reports count
    the positions a method picks); free-form answers pass through."""
    if record["format"] != "mc" or answer not in record["options"]:
        return answer
    return LETTERS[list(record["options"]).index(answer)]


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
