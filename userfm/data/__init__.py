"""userfm.data: event logs in, padded `Batch` tensors out.

Data flow: `EventSchema` -> `read_events` (or a format loader) -> `EventLog` ->
`build_vocabs` -> `Featurizer` -> `collate` -> `Batch`. This package imports no model code.
"""

from userfm.data.batch import Batch
from userfm.data.collate import collate
from userfm.data.features import EncodedHistory, Featurizer
from userfm.data.formats import (
    load_amazon_reviews,
    load_movielens_1m,
    load_movielens_100k,
    load_sasrec_txt,
)
from userfm.data.log import EventLog, ReadStats, UserHistory
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.splits import LeaveOneOut, leave_one_out, time_split
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log, write_synthetic_log
from userfm.data.vocab import Vocab, VocabSet, build_vocabs

__all__ = [
    "Batch",
    "EncodedHistory",
    "EventLog",
    "EventSchema",
    "Featurizer",
    "LeaveOneOut",
    "ReadStats",
    "SyntheticConfig",
    "UserHistory",
    "Vocab",
    "VocabSet",
    "build_vocabs",
    "collate",
    "generate_synthetic_log",
    "leave_one_out",
    "load_amazon_reviews",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_sasrec_txt",
    "read_events",
    "time_split",
    "write_synthetic_log",
]
