"""userfm.eval: evaluation that scores any model through a duck-typed interface.

Retrieval (`evaluate_retrieval`) scores anything with ``recommend(histories, k=None,
exclude_seen=True)`` (`Recommender`) under the leave-one-out protocol, with the protocol
printed beside every number; `OtherUsersInput` is the control that gives a trained model
another user's history (what it scores without reading this user). Imports no training stage.
"""

from userfm.eval.baselines import MostPopular
from userfm.eval.controls import OtherUsersInput
from userfm.eval.retrieval import (
    LeaveOneOutSplit,
    Recommender,
    RetrievalReport,
    bucket_recall,
    evaluate_retrieval,
    frequency_buckets,
    hit_rate,
    leave_one_out_split,
    macro_recall,
    mrr,
    ndcg,
    sampled_ranks,
    weighted_recall,
)

__all__ = [
    "LeaveOneOutSplit",
    "MostPopular",
    "OtherUsersInput",
    "Recommender",
    "RetrievalReport",
    "bucket_recall",
    "evaluate_retrieval",
    "frequency_buckets",
    "hit_rate",
    "leave_one_out_split",
    "macro_recall",
    "mrr",
    "ndcg",
    "sampled_ranks",
    "weighted_recall",
]
