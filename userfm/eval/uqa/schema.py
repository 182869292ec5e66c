"""The names shared by the UQA question builder and scorer: sub-tasks, dimensions, record fields.

A question record (one row of the `datasets.Dataset` that `build_questions` returns) has:

=================  ==============  ==============================================================
field              type            meaning
=================  ==============  ==============================================================
question_id        string          ``"{task}/{user}/{j}"``; shared by the mc and free versions
user_id            string          the user the question is about
task               string          sub-task, one of `TASKS`
dimension          string          its dimension, one of `DIMENSIONS`
format             string          ``"mc"`` (multiple choice) or ``"free"``
question           string          the question alone (one of several phrasings)
prompt             string          what to show the model: the question + options + instruction
answer             string          gold answer (for mc: the text of the correct option)
options            list[string]    mc options (empty for free)
answer_letter      string | None   mc letter of the correct option (None for free)
context_end        int64           how many of the user's events (oldest first) the model may see
params             string          JSON of what the question depends on (``{"n": 3}``, ...)
=================  ==============  ==============================================================
"""

from __future__ import annotations

import string

import datasets

#: the seven sub-tasks, in report order
TASKS: tuple[str, ...] = (
    "direct_feature",
    "match_feature",
    "next_item",
    "next_attribute",
    "long_term",
    "short_term",
    "trajectory",
)
#: the three dimensions of UQABench, in report order
DIMENSIONS: tuple[str, ...] = (
    "sequence_understanding",
    "action_prediction",
    "interest_perception",
)
TASK_DIMENSION: dict[str, str] = {
    "direct_feature": "sequence_understanding",
    "match_feature": "sequence_understanding",
    "next_item": "action_prediction",
    "next_attribute": "action_prediction",
    "long_term": "interest_perception",
    "short_term": "interest_perception",
    "trajectory": "interest_perception",
}
FORMATS: tuple[str, ...] = ("mc", "free")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
LETTERS: str = string.ascii_uppercase

RECORD_FEATURES = datasets.Features(
    {
        "question_id": datasets.Value("string"),
        "user_id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "dimension": datasets.Value("string"),
        "format": datasets.Value("string"),
        "question": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")),
        "answer_letter": datasets.Value("string"),
        "context_end": datasets.Value("int64"),
        "params": datasets.Value("string"),
    }
)
RECORD_FIELDS: tuple[str, ...] = tuple(RECORD_FEATURES)
