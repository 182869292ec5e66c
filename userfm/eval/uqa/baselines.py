"""Non-learned answerers for UQA questions: answer priors and answers read off the history.

* `prior_only_accuracy` / `majority_answer_accuracy`: what a model that ignores the user can
  score. They must stay near chance (``1 / num_options`` for multiple choice) on balanced
  questions, or the benchmark measures priors, not user understanding.
* `direct_answer` / `DirectAnswerBaseline`: the answer computed from the visible history. For
  sequence understanding and interest perception this is exact (the reference a user
  representation should approach); for action prediction it is a heuristic (see
  `direct_answer`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import pandas as pd

from userfm.data.log import EventLog
from userfm.errors import ConfigError
from userfm.eval.uqa.config import QuestionConfig, resolve_config
from userfm.eval.uqa.events import UserEvents, VisibleEvent, dominant_trajectory, ranked_values
from userfm.eval.uqa.schema import LETTERS, TASKS
from userfm.eval.uqa.scoring import normalise
from userfm.eval.uqa.wording import LONG_TERM_SEP, TRAJECTORY_SEP

__all__ = [
    "AnswerPrior",
    "DirectAnswerBaseline",
    "ItemPrior",
    "direct_answer",
    "majority_answer_accuracy",
    "prior_only_accuracy",
]

Records = Iterable[Mapping[str, Any]] | datasets.Dataset | datasets.DatasetDict


# ---------------------------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------------------------
def _fit_and_apply(records: Records, train_records: Records | None) -> tuple[list, list]:
    if isinstance(records, datasets.DatasetDict):
        if train_records is not None:
            raise ConfigError("pass train_records only with a list / Dataset of test records")
        if "train" not in records or "test" not in records:
            raise ConfigError("a DatasetDict passed alone needs 'train' and 'test' splits")
        return list(records["train"]), list(records["test"])
    test = list(records)
    return (list(train_records) if train_records is not None else test), test


def _once(records: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """Each question once (the mc and free copies of a question share its question_id)."""
    seen: set[str] = set()
    for r in records:
        if r["question_id"] not in seen:
            seen.add(r["question_id"])
            yield r


@dataclass(frozen=True)
class AnswerPrior:
    """How often each (normalised) answer is right per sub-task in training: what a model
    that ignores the user can know.

    Attributes:
        counts: sub-task -> answer -> questions it answers (a question asked in both formats
            counts once).
    """

    counts: Mapping[str, Counter[str]]

    @classmethod
    def fit(cls, train: Iterable[Mapping[str, Any]]) -> AnswerPrior:
        counts: dict[str, Counter[str]] = {}
        for r in _once(train):
            counts.setdefault(r["task"], Counter())[normalise(r["answer"])] += 1
        return cls(counts)

    def choose(self, record: Mapping[str, Any]) -> str:
        """The letter of the option most often right for the record's sub-task (ties: the
        first listed; options are shuffled, so that is a random one)."""
        c = self.counts.get(record["task"], Counter())
        return LETTERS[int(np.argmax([c[normalise(o)] for o in record["options"]]))]

    def majority(self, task: str) -> str | None:
        """The sub-task's most common answer, normalised (ties: alphabetically first)."""
        c = self.counts.get(task)
        return min(c, key=lambda k: (-c[k], k)) if c else None


def _in_task_order(hits: Mapping[str, list[bool]]) -> dict[str, float]:
    order = sorted(hits, key=lambda t: (TASKS.index(t) if t in TASKS else len(TASKS), t))
    return {t: float(np.mean(hits[t])) for t in order}


def prior_only_accuracy(records: Records, train_records: Records | None = None) -> dict[str, float]:
    """Accuracy, per sub-task, of always picking the option that is most often right.

    "Most often right" = the option whose text is most often a gold answer of that sub-task
    in ``train_records`` (ties: the first tied option; options are shuffled, so that is a
    random one). This is what a model that ignores the user reaches on multiple choice; the
    builder's balancing and distractor design keep it at ``1 / num_options`` in expectation.

    Args:
        records: multiple-choice records to score (free-form ones are ignored), or a
            ``DatasetDict`` (counted on its ``train`` split, scored on its ``test`` split).
        train_records: records to count gold answers on (default: ``records`` themselves,
            an in-sample, optimistic number).

    Returns:
        ``{sub-task: accuracy}`` for every sub-task with multiple-choice records.
    """
    train, test = _fit_and_apply(records, train_records)
    prior = AnswerPrior.fit(train)
    hits: dict[str, list[bool]] = {}
    for r in test:
        if r.get("format") == "mc" and r.get("options"):
            hits.setdefault(r["task"], []).append(prior.choose(r) == r["answer_letter"])
    return _in_task_order(hits)


def majority_answer_accuracy(
    records: Records, train_records: Records | None = None
) -> dict[str, float]:
    """Accuracy, per sub-task, of always answering the most common training gold answer.

    A free-form match of normalised answers; ties between answers go to the alphabetically
    first. A question asked in both formats counts once.

    Args:
        records: records to score, or a ``DatasetDict`` (counted on ``train``, scored on
            ``test``).
        train_records: records to count gold answers on (default: ``records`` themselves).

    Returns:
        ``{sub-task: accuracy}``.
    """
    train, test = _fit_and_apply(records, train_records)
    prior = AnswerPrior.fit(train)
    hits: dict[str, list[bool]] = {}
    for r in _once(test):
        hits.setdefault(r["task"], []).append(prior.majority(r["task"]) == normalise(r["answer"]))
    return _in_task_order(hits)


# ---------------------------------------------------------------------------------------------
# Direct answers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemPrior:
    """What the next_item heuristic knows beyond the user's own history.

    Attributes:
        ranked_titles: titles by descending count over every user's visible context (ties by
            title), best first.
        counts: title -> that count.
        repeat_rate: share of visible events whose title the same user had already seen
            earlier (MovieLens: 0, nobody rates a movie twice; the synthetic log: high).
    """

    ranked_titles: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    repeat_rate: float = 0.0

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))


def _params(record: Mapping[str, Any]) -> dict[str, Any]:
    p = record.get("params") or {}
    return json.loads(p) if isinstance(p, str) else dict(p)


def _next_item_scores(
    titles: Sequence[str], events: Sequence[VisibleEvent], prior: ItemPrior
) -> list[float]:
    """Two-part mixture: with probability ``repeat_rate`` the next event repeats one of the
    user's own titles (in proportion to how often they had it), otherwise it is a new title
    (in proportion to its popularity)."""
    own = Counter(normalise(e.title) for e in events if e.title is not None)
    n = max(len(events), 1)
    counts = {normalise(t): c for t, c in prior.counts.items()}
    total = max(prior.total, 1)
    r = prior.repeat_rate
    out = []
    for t in titles:
        k = normalise(t)
        repeat = r * own[k] / n
        new = 0.0 if own[k] else (1 - r) * counts.get(k, 0) / total
        out.append(repeat + new)
    return out


def direct_answer(
    events: Sequence[VisibleEvent],
    record: Mapping[str, Any],
    *,
    item_prior: ItemPrior | None = None,
) -> str:
    """The answer computed directly from the visible history: a non-learned reference.

    Sequence understanding and interest perception: the exact answer (the builder computes the
    gold the same way), i.e. the upper bound for a user representation. Action prediction is
    a heuristic:

    * next_attribute: the attribute of the most recent event (sessions continue; a
      first-order Markov guess). Multiple choice: that option, else the option most frequent
      in the history (latest wins ties), else the first option.
    * next_item: a two-part mixture. With probability ``item_prior.repeat_rate`` the user
      repeats one of their own titles (in proportion to how often they had it), otherwise
      they pick a title they have not seen, in proportion to its popularity over every user's
      visible context. The answer is the most probable title under it; on MovieLens
      (``repeat_rate`` 0) that is "the most popular unseen movie".

    Args:
        events: the user's visible events, oldest first (``record["context_end"]`` of them).
        record: a question record (``task``, ``params``, and for mc ``options``).
        item_prior: popularity and repeat rate for next_item (default: none, so only the
            user's own titles can be proposed).

    Returns:
        The answer text: an option's text for multiple choice; "" when the history cannot
        answer (e.g. no known attribute).

    Raises:
        ConfigError: an unknown task.
    """
    task, p = record["task"], _params(record)
    attrs = [e.attribute for e in events]
    options = list(record.get("options") or []) if record.get("format") == "mc" else []
    keys = [normalise(o) for o in options]
    prior = item_prior if item_prior is not None else ItemPrior()
    if task == "direct_feature":
        n = int(p["n"])
        answer = (attrs[-n] or "") if 0 < n <= len(attrs) else ""
    elif task == "match_feature":
        answer = str(sum(v == p["value"] for v in attrs[-int(p["window"]) :]))
    elif task == "next_item":
        if options:
            scores = _next_item_scores(options, events, prior)
            return options[int(np.argmax(scores))]
        own = ranked_values(e.title for e in events)  # most frequent own title, latest wins ties
        seen = {normalise(t) for t in own}
        new = next((t for t in prior.ranked_titles if normalise(t) not in seen), None)
        cands = ([own[0]] if own else []) + ([new] if new is not None else [])
        if not cands:
            return ""
        answer = cands[int(np.argmax(_next_item_scores(cands, events, prior)))]
    elif task == "next_attribute":
        answer = next((a for a in reversed(attrs) if a is not None), "")
        if options and normalise(answer) not in keys:
            for k in (normalise(a) for a in ranked_values(attrs)):
                if k in keys:
                    return options[keys.index(k)]
    elif task == "long_term":
        answer = LONG_TERM_SEP.join(ranked_values(attrs)[: int(p["top_k"])])
    elif task == "short_term":
        answer = next(iter(ranked_values(attrs[-int(p["window"]) :])), "")
    elif task == "trajectory":
        path = dominant_trajectory(attrs, int(p["window"]), int(p["steps"]))
        answer = TRAJECTORY_SEP.join(path) if path else ""
    else:
        raise ConfigError(f"unknown task {task!r}; known: {list(TASKS)}")
    if options:
        k = normalise(answer)
        return options[keys.index(k)] if k in keys else options[0]
    return answer


class DirectAnswerBaseline:
    """`direct_answer` for question records of a log: reads each user's visible events.

    Popularity and the repeat rate (`ItemPrior`) are counted over every user's visible context
    (all events but the held-out last one), so no held-out answer leaks into them.

    Example:
        >>> dd = build_questions(log, seed=0)
        >>> base = DirectAnswerBaseline(log)
        >>> accuracy = np.mean([score(base.answer(r), r) for r in dd["test"]])

    Args:
        log: the log the questions were built from.
        config: the `QuestionConfig` they were built with (its ``attribute`` and
            ``multi_value`` matter); default ``QuestionConfig()``.
        **overrides: `QuestionConfig` fields replacing the config's.
    """

    def __init__(self, log: EventLog, config: QuestionConfig | None = None, **overrides: Any):
        self.config = resolve_config(config, overrides)
        self._events = UserEvents(log, self.config)
        self.item_prior = _item_prior(self._events)

    def events(self, user_id: str, context_end: int) -> list[VisibleEvent]:
        """The first ``context_end`` events of ``user_id`` (KeyError naming an unknown user)."""
        try:
            u = self._events.index[str(user_id)]
        except KeyError:
            raise KeyError(f"user {user_id!r} is not in this event log") from None
        return self._events.visible(u, int(context_end))

    def answer(self, record: Mapping[str, Any]) -> str:
        """The direct answer to one record (see `direct_answer`)."""
        events = self.events(record["user_id"], record["context_end"])
        return direct_answer(events, record, item_prior=self.item_prior)

    def answers(self, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """`answer` for every record, in order."""
        return [self.answer(r) for r in records]


def _item_prior(ev: UserEvents) -> ItemPrior:
    owner = np.repeat(np.arange(len(ev.offsets) - 1), np.diff(ev.offsets))
    visible = np.ones(len(owner), dtype=bool)
    visible[ev.offsets[1:] - 1] = False  # each user's last event is held out
    df = pd.DataFrame({"user": owner[visible], "title": ev.titles[visible]}).dropna()
    counts = df["title"].astype(str).value_counts()
    ranked = sorted(counts.index, key=lambda t: (-int(counts[t]), t))
    repeat = float(df.duplicated(["user", "title"]).mean()) if len(df) else 0.0
    return ItemPrior(
        ranked_titles=tuple(ranked),
        counts={t: int(c) for t, c in counts.items()},
        repeat_rate=repeat,
    )
