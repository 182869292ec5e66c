"""UQABench-style question answering about users: question builder, scorer, non-learned baselines.

`build_questions` turns any event log with item attributes into multiple-choice / free-form
questions in seven sub-tasks (sequence understanding, action prediction, interest
perception), balanced so that answer priors stay at chance; `answer_questions` asks any model
with ``choose`` / ``generate`` (and `random_answers`, `prior_answers`, `direct_answers` give
the non-learned baselines); `score` / `accuracy_table` grade the answers and `write_report`
writes report.md, results.jsonl and charts. Imports no training stage.
"""

from userfm.eval.uqa.baselines import (
    AnswerPrior,
    DirectAnswerBaseline,
    ItemPrior,
    direct_answer,
    majority_answer_accuracy,
    prior_only_accuracy,
)
from userfm.eval.uqa.evaluate import (
    answer_questions,
    direct_answers,
    prior_answers,
    random_answers,
    sample_per_task,
    swapped_users,
)
from userfm.eval.uqa.report import write_report
from userfm.eval.uqa.schema import (
    DIMENSIONS,
    LETTERS,
    RECORD_FEATURES,
    RECORD_FIELDS,
    SPLITS,
    TASK_DIMENSION,
    TASKS,
)
from userfm.eval.uqa.scoring import (
    POSITION_BIAS_SHARE,
    accuracy_table,
    normalise,
    parse_letter,
    position_table,
    score,
    score_free,
    score_mc,
    wilson_interval,
)
from userfm.eval.uqa.tasks import (
    READABLE_TASKS,
    QuestionConfig,
    QuestionStats,
    UserEvents,
    VisibleEvent,
    balance_cap,
    build_questions,
    format_multiple_choice,
    load_question_config,
    load_questions,
    question_stats,
    save_questions,
    split_users,
)

__all__ = [
    "write_report",
    "sample_per_task",
    "random_answers",
    "prior_answers",
    "direct_answers",
    "answer_questions",
    "swapped_users",
    "POSITION_BIAS_SHARE",
    "position_table",
    "wilson_interval",
    "AnswerPrior",
    "DIMENSIONS",
    "LETTERS",
    "RECORD_FEATURES",
    "RECORD_FIELDS",
    "SPLITS",
    "READABLE_TASKS",
    "TASKS",
    "TASK_DIMENSION",
    "DirectAnswerBaseline",
    "ItemPrior",
    "QuestionConfig",
    "QuestionStats",
    "UserEvents",
    "VisibleEvent",
    "accuracy_table",
    "balance_cap",
    "build_questions",
    "direct_answer",
    "format_multiple_choice",
    "load_question_config",
    "load_questions",
    "majority_answer_accuracy",
    "normalise",
    "parse_letter",
    "prior_only_accuracy",
    "question_stats",
    "save_questions",
    "score",
    "score_free",
    "score_mc",
    "split_users",
]
