"""Descriptions of users' visible histories: the data of the adapters' alignment stage.

Before an adapter learns to answer questions, it can learn to make the frozen LLM *describe*
the history it reads from the user context alone (the LLaVA / User-LLM recipe: align the
modality first, then fine-tune on the task). `build_descriptions` writes, for every user of
a log, free-form records whose answers are read off the visible history with the same
attribute definition as the questions (`userfm.eval.uqa.tasks`):

* ``describe_recent``: the ``recent`` most recent items with their attribute, most recent
  first: ``"Heat (1995) [Action]; Fargo (1996) [Crime]; ..."``;
* ``describe_interests``: the ``top_k`` most frequent attributes over the whole context and
  the most frequent of the last ``short_window`` items:
  ``"Overall: Drama, Comedy, Action. Lately: Comedy."``

Users are split exactly as `build_questions` splits them (same seed, same fractions), so a
question set's test users are never described in training.
"""

from __future__ import annotations

import json
from typing import Any

import datasets
import numpy as np

from userfm.data.log import EventLog
from userfm.eval.uqa.config import QuestionConfig, resolve_config
from userfm.eval.uqa.events import UserEvents, ranked_values
from userfm.eval.uqa.io import records_dataset
from userfm.eval.uqa.sampling import split_users
from userfm.eval.uqa.schema import SPLITS
from userfm.eval.uqa.wording import LONG_TERM_SEP, noun_words

__all__ = ["DESCRIBE_TASKS", "build_descriptions"]

#: the alignment sub-tasks and their prompts (placeholders as in the question templates)
DESCRIBE_TASKS: dict[str, str] = {
    "describe_recent": "List this user's {n} most recent {items}, most recent first, with "
    "their {attr}.",
    "describe_interests": "Which {attrs} does this user engage with most, over the whole "
    "history and lately?",
}


def build_descriptions(
    log: EventLog,
    *,
    seed: int = 0,
    config: QuestionConfig | None = None,
    recent: int = 3,
    **overrides: Any,
) -> datasets.DatasetDict:
    """Free-form description records of every user with at least ``recent`` visible events.

    Args:
        log: an event log with the configured attribute column (and titles; without titles,
            item ids stand in).
        seed: the user split's seed (use the question set's).
        config: the `QuestionConfig` of the question set (attribute, nouns, split fractions,
            ``top_k``, ``short_window``).
        recent: items listed by ``describe_recent``.
        **overrides: `QuestionConfig` fields that replace the config's.

    Returns:
        ``DatasetDict`` with ``train`` / ``valid`` / ``test`` splits of question records
        (`userfm.eval.uqa.schema` fields; ``format`` "free", ``dimension`` "alignment").
    """
    cfg = resolve_config(config, overrides)
    ev = UserEvents(log, cfg)
    words = noun_words(cfg)
    split_of = {
        u: s
        for s, us in split_users(ev.user_ids, cfg.split_fractions, seed=seed).items()
        for u in us
    }
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    lengths = np.diff(ev.offsets)
    for u, user in enumerate(ev.user_ids):
        context_end = int(lengths[u]) - 1  # the questions' context: all but the last event
        if context_end < recent:
            continue
        events = ev.visible(u, context_end)
        attrs = [e.attribute for e in events]
        ranked = ranked_values(attrs)
        lately = ranked_values(attrs[-cfg.short_window :])
        answers = {
            "describe_recent": "; ".join(
                f"{e.title}" + (f" [{e.attribute}]" if e.attribute else "")
                for e in reversed(events[-recent:])
            ),
            "describe_interests": f"Overall: {LONG_TERM_SEP.join(ranked[: cfg.top_k])}."
            + (f" Lately: {lately[0]}." if lately else ""),
        }
        for task, template in DESCRIBE_TASKS.items():
            if task == "describe_interests" and not ranked:
                continue  # no attribute in the context: nothing to describe
            question = template.format(**words, n=recent)
            rows[split_of[user]].append(
                {
                    "question_id": f"{task}/{user}/0",
                    "user_id": user,
                    "task": task,
                    "dimension": "alignment",
                    "format": "free",
                    "question": question,
                    "prompt": question,
                    "answer": answers[task],
                    "options": [],
                    "answer_letter": None,
                    "context_end": context_end,
                    "params": json.dumps({"recent": recent}),
                }
            )
    return datasets.DatasetDict({s: records_dataset(rows[s]) for s in SPLITS})
