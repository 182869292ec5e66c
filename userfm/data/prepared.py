"""Prepared shards: a log grouped per user once, read shard by shard (issue 34).

`userfm.data.prepare.prepare_log` (``userfm prepare LOG --out DIR``) writes a folder::

    DIR/prepared.json                       the manifest (below)
    DIR/vocab.json                          the vocabularies (`VocabSet`), counts included
    DIR/items.parquet                       one row per item: events, training events, the
                                            attributes of its last event
    DIR/shards/shard-00000-of-00064.parquet one row per user, users sorted by id,
                                            row groups of 4,096 users

Each shard row is one user: ``user`` (string) and one list column per canonical event column,
in time order (ties in input order): ``item`` (list<string>), ``timestamp``
(list<int64>, unix seconds, or the input row when the log has no time) and, when the log has
them, ``action`` / ``category`` (``|``-joined) / ``title`` / extra attributes (list<string>,
null elements where the input had none). A user's events are all in one shard. The format is
plain parquet so that any engine can write it (Spark for logs beyond one machine,
`userfm.data.prepare_spark`).

``items.parquet`` has one row per item of the log, sorted by id: ``item``, ``events`` (its
events), ``train_events`` (those outside each user's last two: the leave-one-out training
part, which the DRO prior and the sampled softmax's logQ correction count) and the item
attribute columns (category, title, extras) as its last event in (user, time) order has
them, the value `EventLog.item_attributes` keeps.

The manifest (JSON) records ``format`` (``userfm-prepared``) and ``format_version``, the
resolved `EventSchema`, ``has_time``, the reader's statistics (`ReadStats`), the vocabulary
options and the SHA-256 of ``vocab.json`` and ``items.parquet``, and per shard its file, users, events, bytes and the
histogram of its users' history lengths (so that a training stream knows its number of
examples without reading the shards). `PreparedLog.open` checks all of it before any training:
a folder that is incomplete, of another format version, or edited by hand is refused with one
line naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from userfm._version import __version__
from userfm.data.log import ReadStats, UserHistory
from userfm.data.schema import ACTION, CATEGORY, ITEM, TIMESTAMP, TITLE, USER, EventSchema
from userfm.data.vocab import VocabSet
from userfm.errors import DataError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "PreparedLog",
    "PreparedDataError",
    "ShardInfo",
    "is_prepared",
    "shard_name",
    "shard_schema",
]

FORMAT = "userfm-prepared"
FORMAT_VERSION = 1
MANIFEST = "prepared.json"
#: users per row group of a shard: a reader decodes one row group at a time, so its memory
#: does not grow with the shard (one row group per shard grew embedding's peak 1.28x from
#: 10^6 to 10^8 events)
SHARD_ROW_GROUP = 4096
VOCAB = "vocab.json"
ITEMS = "items.parquet"
SHARDS = "shards"


class PreparedDataError(DataError):
    """A prepared folder that cannot be read as one: missing, incomplete, of another format
    version, or changed since it was written (the message names the file and what differs)."""


def is_prepared(source: object) -> bool:
    """Whether ``source`` names a prepared folder (one holding ``prepared.json``)."""
    if not isinstance(source, (str, Path)) or source == "synthetic":
        return False
    return (Path(source).expanduser() / MANIFEST).is_file()


def shard_name(index: int, num_shards: int) -> str:
    """``shards/shard-00003-of-00064.parquet``: the file of shard ``index``."""
    return f"{SHARDS}/shard-{index:05d}-of-{num_shards:05d}.parquet"


def shard_schema(columns: list[str]) -> pa.Schema:
    """The Arrow schema of a shard whose events have canonical ``columns`` (``user``,
    ``item``, ``timestamp``, then attributes)."""
    fields = [pa.field(USER, pa.string())]
    for c in columns:
        if c == USER:
            continue
        value = pa.int64() if c == TIMESTAMP else pa.string()
        fields.append(pa.field(c, pa.list_(value)))
    return pa.schema(fields)


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the manifest records it.

    Attributes:
        file: path relative to the prepared folder.
        users: rows (one per user).
        events: events of all its users.
        bytes: the file's size.
        lengths: history length -> users with that many events.
    """

    file: str
    users: int
    events: int
    bytes: int
    lengths: dict[int, int] = field(default_factory=dict)

    @classmethod
    def written(cls, root: Path, file: str, lengths: dict[int, int]) -> ShardInfo:
        """The record of shard ``file`` just written under ``root``, whose users have the
        history ``lengths`` (length -> users): its users, events and bytes follow."""
        lengths = {int(n): int(c) for n, c in lengths.items()}
        events = sum(n * c for n, c in lengths.items())
        return cls(file, sum(lengths.values()), events, (root / file).stat().st_size, lengths)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lengths"] = {str(k): v for k, v in sorted(self.lengths.items())}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardInfo:
        return cls(
            file=str(d["file"]),
            users=int(d["users"]),
            events=int(d["events"]),
            bytes=int(d["bytes"]),
            lengths={int(k): int(v) for k, v in d.get("lengths", {}).items()},
        )


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def write_manifest(
    root: Path,
    *,
    schema: EventSchema,
    has_time: bool,
    columns: list[str],
    stats: ReadStats,
    vocab_options: dict[str, Any],
    shards: list[ShardInfo],
    engine: str,
) -> dict[str, Any]:
    """Write ``prepared.json`` for the shards and ``vocab.json`` already in ``root``."""
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "userfm_version": __version__,
        "engine": engine,
        "schema": schema.to_dict(),
        "has_time": has_time,
        "columns": columns,
        "stats": stats.to_dict(),
        "vocab": {"file": VOCAB, "sha256": sha256_file(root / VOCAB), **vocab_options},
        "items": {"file": ITEMS, "sha256": sha256_file(root / ITEMS)},
        "shards": [s.to_dict() for s in shards],
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


class PreparedLog:
    """A prepared folder, checked; its shards read user by user.

    Open it with `PreparedLog.open`.

    Attributes:
        root: the folder.
        schema: the `EventSchema` the raw log was read with (timestamp unit resolved): what a
            model trained on it records for later inputs.
        has_time: False when the row order of the input was the time.
        columns: the canonical event columns of the shards.
        stats: what reading the raw log did (`ReadStats`).
        vocabs: the vocabularies (``min_item_count`` / ``max_items`` applied).
        shards: one `ShardInfo` per shard, in order.
    """

    def __init__(self, root: Path, manifest: dict[str, Any], vocabs: VocabSet):
        self.root = root
        self.manifest = manifest
        self.schema = EventSchema.from_dict(manifest["schema"])
        self.has_time = bool(manifest["has_time"])
        self.columns: list[str] = list(manifest["columns"])
        self.stats = ReadStats(**manifest["stats"])
        self.vocabs = vocabs
        self.shards = [ShardInfo.from_dict(s) for s in manifest["shards"]]

    # ---- opening and checking ------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> PreparedLog:
        """Open and check a prepared folder (manifest, format version, every shard's file,
        size, columns and rows, the vocabulary's checksum); nothing is read beyond footers.

        Raises:
            PreparedDataError: one line naming what is wrong.
        """
        root = Path(path).expanduser()
        manifest = _read_manifest(root)
        for entry in ("vocab", "items"):
            _check_checksum(root, manifest[entry])
        log = cls(root, manifest, VocabSet.load(root / manifest["vocab"]["file"]))
        expected = shard_schema(log.columns)
        for shard in log.shards:
            _check_shard(root, shard, expected)
        return log

    # ---- sizes ---------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return sum(s.users for s in self.shards)

    @property
    def num_events(self) -> int:
        return sum(s.events for s in self.shards)

    def shard_path(self, index: int) -> Path:
        return self.root / self.shards[index].file

    @property
    def shard_paths(self) -> list[Path]:
        return [self.root / s.file for s in self.shards]

    def length_counts(self) -> dict[int, int]:
        """History length -> users, over every shard."""
        out: dict[int, int] = {}
        for s in self.shards:
            for k, v in s.lengths.items():
                out[k] = out.get(k, 0) + v
        return dict(sorted(out.items()))

    # ---- items ---------------------------------------------------------------------------
    def has(self, column: str) -> bool:
        """Whether the events have canonical column ``column`` (as `EventLog.has`)."""
        return column in self.columns

    def item_table(self, columns: list[str] | None = None) -> pa.Table:
        """``items.parquet``: one row per item, sorted by id (``columns`` only, if given)."""
        return pq.read_table(self.root / ITEMS, columns=columns)

    def item_attributes(
        self, columns: tuple[str, ...] = (CATEGORY, TITLE)
    ) -> dict[str, dict[str, str]]:
        """item id -> {attribute: value} for the given columns, as `EventLog.item_attributes`
        (the item's last event in (user, time) order)."""
        present = [c for c in columns if self.has(c)]
        if not present:
            return {}
        table = self.item_table([ITEM, *present])
        values = {c: table.column(c).to_pylist() for c in present}
        return {
            item: {c: values[c][i] for c in present}
            for i, item in enumerate(table.column(ITEM).to_pylist())
        }

    def train_item_counts(self, vocab) -> np.ndarray:
        """(len(vocab),) int64 events per item index in the leave-one-out training part
        (each user's last two events left out), items outside the vocabulary counted at their
        OOV / hash-bucket index; the specials (0, 1, 2) are 0.

        Args:
            vocab: the item `Vocab` (with the hash buckets training uses).
        """
        table = self.item_table([ITEM, "train_events"])
        index, _ = vocab.encode(table.column(ITEM).to_pylist())
        weights = table.column("train_events").to_numpy()
        counts = np.bincount(index, weights=weights, minlength=len(vocab)).astype(np.int64)
        counts[:3] = 0
        return counts

    # ---- reading -------------------------------------------------------------------------
    def iter_histories(
        self, shards: list[int] | None = None, *, batch_users: int = 4096
    ) -> Iterator[UserHistory]:
        """The users of ``shards`` (default: all) in shard order, ``batch_users`` rows read at
        a time (memory: one batch, not one shard)."""
        for index in range(len(self.shards)) if shards is None else shards:
            with pq.ParquetFile(self.shard_path(index)) as f:
                for batch in f.iter_batches(batch_size=batch_users):
                    yield from histories_of(batch, has_time=self.has_time)


def histories_of(batch: pa.RecordBatch | pa.Table, *, has_time: bool) -> Iterator[UserHistory]:
    """The `UserHistory` of each row of a shard batch (one user per row)."""
    users = batch.column(USER).to_pylist()
    lists = {
        c: batch.column(c)
        for c in (ITEM, TIMESTAMP, ACTION, CATEGORY, TITLE)
        if c in batch.schema.names
    }
    offsets = _offsets(lists[ITEM])
    flat = {c: _values(a) for c, a in lists.items()}
    for u, user in enumerate(users):
        s, e = offsets[u], offsets[u + 1]
        yield UserHistory(
            user=user,
            items=flat[ITEM][s:e],
            timestamps=flat[TIMESTAMP][s:e] if has_time else None,
            actions=flat[ACTION][s:e] if ACTION in flat else None,
            categories=flat[CATEGORY][s:e] if CATEGORY in flat else None,
            titles=flat[TITLE][s:e] if TITLE in flat else None,
        )


def _offsets(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """(rows + 1,) where each row's list starts in the flattened values (from 0)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offsets = arr.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0]


def _values(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The flattened list values as a NumPy array (objects for strings, None at nulls)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return arr.flatten().to_numpy(zero_copy_only=False)


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise PreparedDataError(f"{root} is not a folder of prepared shards (userfm prepare)")
    if not path.is_file():
        raise PreparedDataError(
            f"{root} has no {MANIFEST}: not a prepared log, or its preparation did not finish; "
            f"make one with `userfm prepare LOG --out {root}`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PreparedDataError(f"{path} is not valid JSON ({e}); prepare the log again") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PreparedDataError(f"{path} is not a userfm prepared-log manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise PreparedDataError(
            f"{root} was prepared in format version {version} (by userfm "
            f"{manifest.get('userfm_version', '?')}); this userfm {__version__} reads version "
            f"{FORMAT_VERSION}: prepare the log again"
        )
    missing = [
        k
        for k in ("schema", "has_time", "columns", "stats", "vocab", "items", "shards")
        if k not in manifest
    ]
    if missing:
        raise PreparedDataError(f"{path} lacks {missing}; prepare the log again")
    return manifest


def _check_checksum(root: Path, entry: dict[str, Any]) -> None:
    """Refuse a file of the folder that is missing or whose SHA-256 is not the manifest's."""
    path = root / entry["file"]
    if not path.is_file():
        raise PreparedDataError(f"{root}: {entry['file']} is missing")
    if sha256_file(path) != entry["sha256"]:
        raise PreparedDataError(
            f"{path} does not match the manifest (its SHA-256 differs): it was changed after "
            "the log was prepared; prepare the log again"
        )


def _check_shard(root: Path, shard: ShardInfo, expected: pa.Schema) -> None:
    """Refuse a shard that is missing or differs from what the manifest says."""
    path = root / shard.file
    if not path.is_file():
        raise PreparedDataError(f"{root}: shard {shard.file} is missing")
    size = path.stat().st_size
    if size != shard.bytes:
        raise PreparedDataError(
            f"{path} has {size:,} bytes but the manifest says {shard.bytes:,}: it was changed "
            "or truncated after the log was prepared; prepare the log again"
        )
    try:
        meta = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise PreparedDataError(f"{path} is not a readable parquet file ({e})") from e
    with meta:
        got = meta.schema_arrow
        rows = meta.metadata.num_rows
    if [(f.name, f.type) for f in got] != [(f.name, f.type) for f in expected]:
        raise PreparedDataError(
            f"{path} has columns {_describe(got)} but a shard of this log has {_describe(expected)}"
        )
    if rows != shard.users:
        raise PreparedDataError(
            f"{path} holds {rows:,} users but the manifest says {shard.users:,}"
        )


def _describe(schema: pa.Schema) -> str:
    return "[" + ", ".join(f"{f.name}: {f.type}" for f in schema) + "]"
