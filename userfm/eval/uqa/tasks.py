"""UQABench-style personalised questions built from any event log with item attributes.

Seven sub-tasks in three dimensions (UQABench, Liu et al. 2025), each answered from one user's
history. ``attr`` is the configured item attribute (default: the first category of an item).

======================  ==============  =========================================================
dimension               sub-task        question -> gold answer
======================  ==============  =========================================================
sequence_understanding  direct_feature  attr of the n-th most recent item (n in 1..n_recent)
                        match_feature   how many of the last ``window`` items had attr = v
                                        (a number; v is a value present in that window, or,
                                        in one case out of (values present + 1), an absent one)
action_prediction       next_item       title of the held-out next item
                        next_attribute  attr of the held-out next item
interest_perception     long_term       the ``top_k`` most frequent attrs of the whole context,
                                        most frequent first: ``"Drama, Comedy, Action"``
                        short_term      the most frequent attr of the last ``short_window`` items
                        trajectory      the most frequent attr of each of the last
                                        ``trajectory_steps`` windows of ``trajectory_window``
                                        items, oldest first: ``"Drama -> Comedy -> Thriller"``
======================  ==============  =========================================================

**Context.** A user with L events is asked about the event right after ``context_end = L - 1``
(the most recent event is held out): the model may see events ``[0, context_end)`` only. Every
sub-task of a user shares that context, so one user representation answers all of them; the
understanding and interest answers are computed from the context alone.

**Attribute.** ``QuestionConfig.attribute`` names a log column (default ``category``;
MovieLens also has ``year``). An item has several categories (``"Comedy|Drama"``); its
attribute is the first of them by default (``multi_value="first"``; ``"last"`` or
``"joined"`` for the whole string). We take one value so that every question has exactly one
gold answer. Note that MovieLens lists genres in a fixed alphabetical order, so "first" is the
alphabetically first genre of the movie (``Action|Adventure|Drama`` -> ``Action``).
Missing / empty values are missing attributes, never counted as a value. The value is
`userfm.data.attributes.attribute_value`, the definition the history text
(`userfm.data.history_text`) writes in brackets too, so that the answers of the sub-tasks in
`READABLE_TASKS` can be read from the text the model sees.

**Ties** (most frequent attr): the value whose latest occurrence is more recent wins, which is
deterministic (each position holds one value) and reads as "the more current interest".

**Priors must not answer the questions.** On MovieLens, "favourite genre" is Drama for most
users, so a model that always says Drama scored far above chance. Two defences, per sub-task
and split:

1. *Balance*: users are subsampled (seeded) so that no gold answer is more than
   ``max_answer_share`` of the sub-task's questions (default ``1 / num_options``; raised to
   ``1 / distinct answers`` when there are fewer distinct answers than that allows). The cap
   is the largest M with ``M <= share * sum_v min(n_v, M)``; values with more than M
   questions keep a random M. Dropped questions are counted in the stats.
2. *Distractors* are other users' real gold answers of the same sub-task and split (after
   balancing; the whole sub-task's pool when the split has fewer than ``num_options``
   distinct ones), distinct, never equal to the gold (after `normalise`). Each value's
   chance of being an option is proportional to how often it is a gold answer: option sets
   follow a sampling design with inclusion probabilities ``num_options * share_v``,
   conditioned on containing the gold (`AnswerPool.distractors`). Then, given the options, each
   one is equally likely to be right, so no answer prior beats ``1 / num_options`` in
   expectation; this is exact when every share is <= ``1 / num_options``, which is why that
   is the default cap. `prior_only_accuracy` measures it and the tests bound it.

**Splits.** Users (not events) are split by seed into train / valid / test
(``split_fractions``), so test users are unseen when an adapter is trained.

Users whose history is too short for a sub-task (or whose needed attribute is missing) are
skipped for that sub-task and counted by reason in the stats (`question_stats`), never dropped
silently.

**Modules.** This module builds the questions and re-exports the public names of the ones it
is assembled from: `userfm.eval.uqa.config` (`QuestionConfig`), `.events` (`UserEvents`: a
log as the builder reads it), `.generators` (one function per sub-task over a `GenContext`),
`.wording` (phrasings, prompts), `.sampling` (splits, balancing, distractors), `.stats`
(`QuestionStats`) and `.io` (`save_questions` / `load_questions`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from userfm.data.log import EventLog
from userfm.errors import check_int
from userfm.eval.uqa.config import QuestionConfig, resolve_config
from userfm.eval.uqa.events import UserEvents, VisibleEvent
from userfm.eval.uqa.generators import (
    GENERATORS,
    MISSING,
    NO_DISTRACTORS,
    TOO_FEW_DISTINCT,
    TOO_SHORT,
    GenContext,
    GenOutput,
)
from userfm.eval.uqa.io import load_question_config, load_questions, records_dataset, save_questions
from userfm.eval.uqa.sampling import AnswerPool, balance, balance_cap, split_users
from userfm.eval.uqa.schema import DIMENSIONS, LETTERS, SPLITS, TASK_DIMENSION, TASKS
from userfm.eval.uqa.scoring import normalise
from userfm.eval.uqa.stats import QuestionStats, TaskSplitStats, question_stats
from userfm.eval.uqa.wording import (
    FREE_INSTRUCTIONS,
    LONG_TERM_SEP,
    TEMPLATES,
    TRAJECTORY_SEP,
    format_multiple_choice,
    noun_words,
)

__all__ = [
    "DIMENSIONS",
    "FREE_INSTRUCTIONS",
    "LONG_TERM_SEP",
    "MISSING",
    "NO_DISTRACTORS",
    "READABLE_TASKS",
    "TASKS",
    "TEMPLATES",
    "TOO_FEW_DISTINCT",
    "TOO_SHORT",
    "TRAJECTORY_SEP",
    "AnswerPool",
    "GenContext",
    "QuestionConfig",
    "QuestionStats",
    "TaskSplitStats",
    "UserEvents",
    "VisibleEvent",
    "balance_cap",
    "build_questions",
    "format_multiple_choice",
    "load_question_config",
    "load_questions",
    "question_stats",
    "resolve_config",
    "save_questions",
    "split_users",
]

logger = logging.getLogger("userfm.eval")

# Sub-tasks whose gold answer is computed from the visible context alone, so it can be read
# from the history text (`userfm.data.history_text`); tests/eval/uqa/test_readable.py checks
# it. next_item / next_attribute ask about the held-out next event, which no text shows.
READABLE_TASKS = ("direct_feature", "match_feature", "long_term", "short_term", "trajectory")

# records are ordered by (user, sub-task, question of the user, format)
_SortKey = tuple[int, int, int, int]
_Keyed = list[tuple[_SortKey, dict[str, Any]]]


@dataclass
class _Candidate:
    """A generated question of one user before balancing (`Generated` plus where it is from)."""

    user_index: int
    user: str
    split: str
    j: int  # the question's index among the user's questions of the sub-task
    question: str
    answer: str
    params: dict[str, Any]
    context_end: int


def build_questions(
    log: EventLog,
    *,
    seed: int = 0,
    config: QuestionConfig | None = None,
    **overrides: Any,
) -> datasets.DatasetDict:
    """Build UQABench-style questions for every user of ``log``, split by user.

    Args:
        log: an event log with the configured attribute column (and ``title`` for next_item;
            without titles, item ids are the answers).
        seed: everything random (splits, which n / value is asked, phrasings, balancing,
            distractors, option order) is derived from it; equal inputs give equal outputs.
        config: a `QuestionConfig` (default: ``QuestionConfig()``).
        **overrides: `QuestionConfig` fields that replace the config's (``num_options=5``).

    Returns:
        ``DatasetDict`` with ``train``, ``valid`` and ``test`` splits of question records
        (fields: `userfm.eval.uqa.schema`), ordered by user, then sub-task. What was skipped,
        dropped or kept is in `question_stats` of the result (stored in every split's
        ``info.description``; typed: `QuestionStats.of`).

    Raises:
        ConfigError: a bad config field (named), or an attribute column the log lacks.
    """
    cfg = resolve_config(config, overrides)
    check_int("seed", seed, minimum=0)
    ev = UserEvents(log, cfg)
    splits = split_users(ev.user_ids, cfg.split_fractions, seed=seed)
    stats = QuestionStats(seed=seed, config=cfg, users={s: len(splits[s]) for s in SPLITS})
    stats.tasks = {task: {s: TaskSplitStats() for s in SPLITS} for task in cfg.tasks}
    candidates = _candidates(ev, cfg, seed, splits, stats)
    keyed: dict[str, _Keyed] = {s: [] for s in SPLITS}
    for ti, task in enumerate(cfg.tasks):
        kept = _balanced(candidates[task], cfg.answer_share, seed, ti, stats.tasks[task])
        whole = AnswerPool(c.answer for s in SPLITS for c in kept[s])
        for si, split in enumerate(SPLITS):
            pool = AnswerPool(c.answer for c in kept[split])
            rng = np.random.default_rng([seed, ti, si, 2])
            st = stats.tasks[task][split]
            keyed[split] += _split_records(task, ti, kept[split], pool, whole, cfg, rng, st)
    rows_of = {}
    for split in SPLITS:
        rows = [r for _, r in sorted(keyed[split], key=lambda x: x[0])]
        stats.records[split] = len(rows)
        stats.questions[split] = len({r["question_id"] for r in rows})
        rows_of[split] = rows
    description = stats.to_json()
    dd = datasets.DatasetDict({s: records_dataset(rows_of[s], description) for s in SPLITS})
    logger.info("uqa questions: %s", stats.summary())
    return dd


def _candidates(
    ev: UserEvents,
    cfg: QuestionConfig,
    seed: int,
    splits: dict[str, list[str]],
    stats: QuestionStats,
) -> dict[str, dict[str, list[_Candidate]]]:
    """sub-task -> split -> every user's generated questions, in user order; skips counted.

    A user with L events is asked about event L - 1 from the context ``[0, L - 1)``; each
    (sub-task, user) draws from its own stream ``(seed, sub-task index, user index)``.
    """
    words = noun_words(cfg)
    split_of = {u: s for s, us in splits.items() for u in us}
    lengths = np.diff(ev.offsets)
    out: dict[str, dict[str, list[_Candidate]]] = {
        task: {s: [] for s in SPLITS} for task in cfg.tasks
    }
    for u, user in enumerate(ev.user_ids):
        split = split_of[user]
        context_end = int(lengths[u]) - 1
        events = ev.visible(u, context_end + 1) if context_end >= 1 else []
        attrs = [e.attribute for e in events[:-1]]
        for ti, task in enumerate(cfg.tasks):
            generated: GenOutput = TOO_SHORT
            if context_end >= 1:
                rng = np.random.default_rng([seed, ti, u])
                ctx = GenContext(attrs, events[-1], rng, cfg, words, ev.values)
                generated = GENERATORS[task](ctx)
            if isinstance(generated, str):
                stats.tasks[task][split].skip(generated)
                continue
            for j, g in enumerate(generated):
                c = _Candidate(u, user, split, j, g.question, g.answer, g.params, context_end)
                out[task][split].append(c)
    return out


def _balanced(
    candidates: dict[str, list[_Candidate]],
    share: float,
    seed: int,
    ti: int,
    stats: dict[str, TaskSplitStats],
) -> dict[str, list[_Candidate]]:
    """split -> the candidates of one sub-task kept by `balance` (each split on its own, so
    that each split's gold distribution is capped)."""
    kept = {}
    for si, split in enumerate(SPLITS):
        cs = candidates[split]
        keys = [normalise(c.answer) for c in cs]
        mask = balance(keys, share, np.random.default_rng([seed, ti, si, 1]))
        kept[split] = [c for c, k in zip(cs, mask) if k]
        stats[split].candidates = len(cs)
        stats[split].dropped_for_balance = int((~mask).sum())
    return kept


def _split_records(
    task: str,
    ti: int,
    kept: list[_Candidate],
    pool: AnswerPool,
    whole: AnswerPool,
    cfg: QuestionConfig,
    rng: np.random.Generator,
    stats: TaskSplitStats,
) -> _Keyed:
    """The records of one sub-task's kept candidates in one split, with their sort keys.

    Distractors come from the split's ``pool`` (``whole``, the sub-task's pool over all
    splits, when the split has too few distinct answers); a candidate that gets none loses
    its multiple-choice record (counted) and keeps its free-form one, if any.
    """
    words = noun_words(cfg)
    out: _Keyed = []
    n_questions = 0
    for c in kept:
        formats = cfg.formats
        options: list[str] | None = None
        if "mc" in formats:
            options = _options(c.answer, pool, whole, cfg.num_options, rng)
            if options is None:  # counted; with format="both" the free copy stays
                stats.dropped_no_distractors += 1
                formats = tuple(f for f in formats if f != "mc")
        if not formats:
            continue
        n_questions += 1
        for fmt in formats:
            rec = _record(task, c, fmt, options if fmt == "mc" else None, cfg, words)
            out.append(((c.user_index, ti, c.j, cfg.formats.index(fmt)), rec))
    answers = Counter(normalise(c.answer) for c in kept)
    stats.questions = n_questions
    stats.distinct_answers = len(answers)
    stats.top_answer_share = (
        round(max(answers.values()) / sum(answers.values()), 4) if answers else 0.0
    )
    return out


def _options(
    answer: str, pool: AnswerPool, whole: AnswerPool, num_options: int, rng: np.random.Generator
) -> list[str] | None:
    """The gold and its distractors in random order; None when no pool has enough answers."""
    picked = pool.distractors(answer, num_options - 1, rng)
    if picked is None:  # too few distinct answers in this split: the whole pool
        picked = whole.distractors(answer, num_options - 1, rng)
    if picked is None:
        return None
    options = [answer, *picked]
    return [options[i] for i in rng.permutation(len(options))]


def _record(
    task: str,
    c: _Candidate,
    fmt: str,
    options: list[str] | None,
    cfg: QuestionConfig,
    words: dict[str, str],
) -> dict[str, Any]:
    """One question record (`userfm.eval.uqa.schema.RECORD_FIELDS`) in format ``fmt``."""
    if fmt == "mc":
        assert options is not None
        prompt = format_multiple_choice(c.question, options)
        letter: str | None = LETTERS[options.index(c.answer)]
    else:
        prompt = f"{c.question}\n" + FREE_INSTRUCTIONS[task].format(**words, k=cfg.top_k)
        letter, options = None, []
    return {
        "question_id": f"{task}/{c.user}/{c.j}",
        "user_id": c.user,
        "task": task,
        "dimension": TASK_DIMENSION[task],
        "format": fmt,
        "question": c.question,
        "prompt": prompt,
        "answer": c.answer,
        "options": options,
        "answer_letter": letter,
        "context_end": c.context_end,
        "params": json.dumps(c.params, sort_keys=True),
    }
