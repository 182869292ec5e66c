"""userfm.data: event logs in, padded `Batch` tensors out.

Data flow: `EventSchema` -> `read_events` (or a format loader) -> `EventLog` ->
`build_vocabs` -> `Featurizer` -> `collate` -> `Batch`; beside it, item text: `read_items`
(or `items_from_log`) -> `ItemTable`. This package imports no model code.
Its public names load on first use (PEP 562): the CLI's parser reads `EventSchema` without
torch or datasets.
"""

from typing import TYPE_CHECKING

from userfm._lazy import lazy_exports

if TYPE_CHECKING:
    from userfm.data.batch import Batch
    from userfm.data.collate import collate
    from userfm.data.features import EncodedHistory, Featurizer
    from userfm.data.formats import (
        load_amazon_reviews,
        load_movielens_1m,
        load_movielens_100k,
        load_sasrec_txt,
        movielens_100k_items,
    )
    from userfm.data.items import ItemTable, item_text, items_from_log, read_items
    from userfm.data.log import EventLog, ReadStats, UserHistory
    from userfm.data.readers import read_events
    from userfm.data.schema import EventSchema
    from userfm.data.splits import LeaveOneOut, leave_one_out, time_split
    from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log, write_synthetic_log
    from userfm.data.vocab import Vocab, VocabSet, build_vocabs

# public name -> the module that defines it
_LAZY = {
    "Batch": "userfm.data.batch",
    "EncodedHistory": "userfm.data.features",
    "EventLog": "userfm.data.log",
    "EventSchema": "userfm.data.schema",
    "Featurizer": "userfm.data.features",
    "ItemTable": "userfm.data.items",
    "LeaveOneOut": "userfm.data.splits",
    "ReadStats": "userfm.data.log",
    "SyntheticConfig": "userfm.data.synthetic",
    "UserHistory": "userfm.data.log",
    "Vocab": "userfm.data.vocab",
    "VocabSet": "userfm.data.vocab",
    "build_vocabs": "userfm.data.vocab",
    "collate": "userfm.data.collate",
    "generate_synthetic_log": "userfm.data.synthetic",
    "item_text": "userfm.data.items",
    "items_from_log": "userfm.data.items",
    "leave_one_out": "userfm.data.splits",
    "load_amazon_reviews": "userfm.data.formats",
    "load_movielens_100k": "userfm.data.formats",
    "load_movielens_1m": "userfm.data.formats",
    "load_sasrec_txt": "userfm.data.formats",
    "movielens_100k_items": "userfm.data.formats",
    "read_events": "userfm.data.readers",
    "read_items": "userfm.data.items",
    "time_split": "userfm.data.splits",
    "write_synthetic_log": "userfm.data.synthetic",
}

__all__ = [
    "Batch",
    "EncodedHistory",
    "EventLog",
    "EventSchema",
    "Featurizer",
    "ItemTable",
    "LeaveOneOut",
    "ReadStats",
    "SyntheticConfig",
    "UserHistory",
    "Vocab",
    "VocabSet",
    "build_vocabs",
    "collate",
    "generate_synthetic_log",
    "item_text",
    "items_from_log",
    "leave_one_out",
    "load_amazon_reviews",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_sasrec_txt",
    "movielens_100k_items",
    "read_events",
    "read_items",
    "time_split",
    "write_synthetic_log",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
