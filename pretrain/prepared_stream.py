"""Pretraining examples streamed from prepared shards (issue 34 §2): constant memory at any
log size, whole shards per rank, exact mid-epoch resume on every rank.

`PreparedExamples` reads the shards of a `PreparedLog` (`userfm.data.prepared`) user by user
and yields the leave-one-out examples of one split (`userfm.pretrain.data`):

* **ranks and workers.** Shard ``i`` belongs to rank ``i % world_size``; a rank's shards are
  dealt to its DataLoader workers the same way. Nothing is read twice, and no process holds
  more than one batch of users plus the shuffle buffer.
* **a fixed number of batches per rank.** The manifest's per-shard histograms of history
  lengths give every worker's number of examples before any shard is read. Training: every
  worker of every rank yields the same number of full batches, the smallest any worker can
  fill (the rest of its examples wait for another epoch's shuffle), so no rank ends an epoch
  early and hangs the others in DDP. Validation / test (one stream per rank, DataLoader
  workers not used): with several ranks each rank yields the same number of full batches,
  the smaller ranks repeating their first examples (as `DistributedSampler` pads), so a few
  users count twice in a multi-process validation; in one process every user counts once.
* **shuffling.** Each iteration is one pass over the worker's shards; pass ``k`` reads the
  shards, and each shard's row groups, in an order drawn from ``(seed, k, rank, worker)`` and
  sends the windows through a seeded shuffle buffer of ``buffer_size`` windows. The stream
  counts its own passes (in shared memory, so DataLoader workers keep the count across
  epochs) rather than taking Lightning's epoch number: a run resumed from a checkpoint
  written on an epoch's last batch comes back with another epoch number than an
  uninterrupted run reaches there, but with the same pass.
* **resume.** The state is ``(pass, examples yielded)`` per worker. It holds nothing
  specific to a rank: every rank's worker ``w`` has yielded the same number of examples after
  the same number of batches, so the state Lightning saves from rank 0 restores every rank
  exactly. On resume the stream replays the pass up to that point, reading and shuffling but
  not featurising, so the shuffle buffer is rebuilt as it was and the remaining batches are
  the uninterrupted run's (the cost: reading that part of the pass again).

Why not `datasets.IterableDataset`: its ``split_dataset_by_node`` and worker sharding are the
same whole-shard assignment as here, but its state restarts the shuffle buffer empty on
resume, so a resumed run sees other batches than an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from userfm.data.features import Featurizer
from userfm.data.log import UserHistory
from userfm.data.prepared import PreparedLog, histories_of
from userfm.errors import ConfigError
from userfm.pretrain.data import Example, make_example, split_history, training_windows

__all__ = ["PreparedExamples", "examples_per_user"]

#: users decoded per parquet batch
_READ_USERS = 1024


def examples_per_user(length: int, split: str, *, max_len: int, all_windows: bool) -> int:
    """Examples a user with ``length`` events gives in ``split`` (`training_windows` for
    train; one for valid / test when the split's part has a target)."""
    if split == "train":
        part = length - 2
        if part < 2:
            return 0
        return math.ceil((part - 1) / max_len) if all_windows else 1
    part = length - 1 if split == "valid" else length
    return int(part >= 2)


@dataclass(frozen=True)
class _Layout:
    """Who reads what: the shards of each worker of this rank, and how many examples each
    yields per epoch (`PreparedExamples.__len__` is their sum)."""

    shards: list[list[int]]  # per worker of this rank
    quota: list[int]  # examples per worker per epoch
    cycle: bool  # repeat a worker's stream to fill its quota (validation padding)


class PreparedExamples(IterableDataset):
    """The examples of one split, streamed from prepared shards (see the module docstring).

    Args:
        prepared: the prepared log.
        featurizer: encodes a history of ``max_len + 1`` events.
        split: ``train``, ``valid`` or ``test``.
        batch_size: examples per batch (the quotas are whole batches).
        rank, world_size: this process's place among the training processes.
        num_workers: DataLoader workers per rank (train only; valid / test read in the main
            process).
        seed: shuffling seed (the same on every rank).
        buffer_size: windows in the training shuffle buffer.
        all_windows: train on every window of a long history (`training_windows`).

    Raises:
        ConfigError: fewer shards than processes; a training worker with too few examples
            for one batch is refused when the stream is read (`__len__`, `__iter__`), so that
            evaluating alone does not need it.
    """

    def __init__(
        self,
        prepared: PreparedLog,
        featurizer: Featurizer,
        split: str,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        buffer_size: int = 1024,
        all_windows: bool = False,
    ):
        if split not in ("train", "valid", "test"):
            raise ConfigError(f"`split` must be train, valid or test, got {split!r}")
        self.prepared, self.featurizer, self.split = prepared, featurizer, split
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.seed, self.buffer_size, self.all_windows = seed, buffer_size, all_windows
        self.max_len = featurizer.max_len - 1
        workers = max(num_workers, 1) if split == "train" else 1
        self._empty: ConfigError | None = None
        self.layout = self._layout(workers)
        # each worker's next pass, in shared memory: DataLoader workers, persistent or not,
        # count their passes where the next epoch's workers read them
        self._passes = torch.zeros(workers, dtype=torch.int64).share_memory_()
        self._pass, self._yielded = -1, 0  # this iterator's pass and its examples so far
        self._resume: dict[str, int] | None = None

    # ---- the plan ------------------------------------------------------------------------
    def _capacity(self, shard: int) -> int:
        lengths = self.prepared.shards[shard].lengths
        return sum(
            n * examples_per_user(k, self.split, max_len=self.max_len, all_windows=self.all_windows)
            for k, n in lengths.items()
        )

    def _layout(self, workers: int) -> _Layout:
        num_shards, W, B = len(self.prepared.shards), self.world_size, self.batch_size
        if num_shards < W:
            raise ConfigError(
                f"{self.prepared.root} has {num_shards} shards for {W} processes: every process "
                f"reads whole shards; prepare it with --num_shards a multiple of {W}"
            )
        per_rank = [[i for i in range(num_shards) if i % W == r] for r in range(W)]
        dealt = [[shards[w::workers] for w in range(workers)] for shards in per_rank]
        capacity = [[sum(self._capacity(i) for i in ws) for ws in rank] for rank in dealt]
        mine = dealt[self.rank]
        if self.split == "train":
            batches = min(c // B for rank in capacity for c in rank)
            if batches == 0:  # refused when training starts, not when only evaluating
                self._empty = ConfigError(
                    f"a DataLoader worker of {W} process(es) x {workers} worker(s) has fewer "
                    f"than batch_size={B} training examples in its shards: use fewer workers or "
                    "processes, a smaller batch, or more shards"
                )
            return _Layout(mine, [batches * B] * workers, cycle=False)
        totals = [sum(rank) for rank in capacity]
        if W == 1:
            return _Layout(mine, totals, cycle=False)
        if min(totals) == 0:
            raise ConfigError(
                f"a process has no {self.split} examples in its shards: prepare the log with "
                "more users per shard (fewer shards)"
            )
        return _Layout(mine, [math.ceil(max(totals) / B) * B], cycle=True)

    def __len__(self) -> int:
        """Examples this rank yields per epoch.

        Raises:
            ConfigError: a training worker cannot fill one batch.
        """
        if self._empty is not None:
            raise self._empty
        return sum(self.layout.quota)

    # ---- passes and state --------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """``{"pass", "yielded"}``: this worker's pass over its shards and the examples it
        yielded in it (the same on every rank)."""
        return {"pass": self._pass, "yielded": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after ``state["yielded"]`` examples of pass ``state["pass"]``."""
        self._resume = {"pass": int(state["pass"]), "yielded": int(state["yielded"])}

    # ---- reading -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Example]:
        """One pass of this worker: the next one, or the saved one continued after its
        examples already yielded (replayed without featurising)."""
        if self._empty is not None:
            raise self._empty
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if worker >= len(self.layout.shards):  # more DataLoader workers than planned
            return
        quota = self.layout.quota[worker]
        index, skip = int(self._passes[worker]), 0
        if self._resume is not None:
            index, skip = self._resume["pass"], self._resume["yielded"]
            if skip >= quota:  # that pass was complete: the next one
                index, skip = index + 1, 0
            if index < 0:  # saved before its first pass began
                index, skip = 0, 0
            self._resume = None
        self._passes[worker] = index + 1
        self._pass, self._yielded = index, 0
        for window in self._windows(worker, index):
            if self._yielded >= quota:
                break
            self._yielded += 1
            if self._yielded <= skip:
                continue
            yield make_example(self.featurizer(window), last_only=self.split != "train")

    def _windows(self, worker: int, index: int) -> Iterator[UserHistory]:
        """The worker's histories (eval) or shuffled training windows, endlessly repeated
        when the layout cycles."""
        while True:
            if self.split == "train":
                rng = np.random.default_rng([self.seed, index, self.rank, worker])
                yield from _shuffled(self._train_windows(worker, rng), rng, self.buffer_size)
            else:
                for history in self._histories(worker, None):
                    part = split_history(history, self.split)
                    if len(part) >= 2:
                        yield part
            if not self.layout.cycle:
                return

    def _train_windows(self, worker: int, rng: np.random.Generator) -> Iterator[UserHistory]:
        for history in self._histories(worker, rng):
            part = split_history(history, "train")
            yield from training_windows(part, self.max_len, all_windows=self.all_windows)

    def _histories(self, worker: int, rng: np.random.Generator | None) -> Iterator[UserHistory]:
        """The worker's users, shard by shard; with ``rng`` the shards and each shard's row
        groups in a random order."""
        shards = list(self.layout.shards[worker])
        if rng is not None:
            shards = [shards[i] for i in rng.permutation(len(shards))]
        for index in shards:
            with pq.ParquetFile(self.prepared.shard_path(index)) as f:
                groups = list(range(f.num_row_groups))
                if rng is not None:
                    groups = [groups[i] for i in rng.permutation(len(groups))]
                for batch in f.iter_batches(batch_size=_READ_USERS, row_groups=groups):
                    yield from histories_of(batch, has_time=self.prepared.has_time)


def _shuffled(items: Iterator, rng: np.random.Generator, size: int) -> Iterator:
    """``items`` through a shuffle buffer of ``size``: each new item takes the place of a
    random one, which is yielded; the buffer's rest comes out shuffled at the end."""
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        buffer[j], item = item, buffer[j]
        yield item
    for j in rng.permutation(len(buffer)):
        yield buffer[j]
