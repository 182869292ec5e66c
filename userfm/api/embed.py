"""Batched, no-grad embedding of user histories with bounded memory.

`iter_embed` reads histories in chunks, sorts each chunk by length (less padding), runs the
encoder batch by batch and yields one `UserEmbeddings` per chunk, so memory stays constant
over a streamed input of any size. `embed` concatenates the chunks.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import datasets
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from userfm.api.embeddings import UserEmbeddings
from userfm.data.collate import collate
from userfm.data.log import EventLog, UserHistory
from userfm.data.schema import EventSchema
from userfm.errors import ConfigError, DataError
from userfm.progress import resolve_progress

if TYPE_CHECKING:
    from userfm.encoder.model import UserEncoder

T = TypeVar("T")

HistoriesLike = (
    EventLog
    | pd.DataFrame
    | datasets.Dataset
    | str
    | Path
    | Mapping[str, Sequence[str]]
    | Iterable[UserHistory]
    | Iterable[Mapping[str, Any]]
)


def as_histories(
    source: HistoriesLike, schema: EventSchema | None = None
) -> tuple[Iterable[UserHistory], int | None]:
    """Normalise any accepted input to (an iterable of `UserHistory`, number of users or None).

    Accepted: an `EventLog`; a pandas DataFrame, `datasets.Dataset` or file path (read with
    `read_events` and ``schema``); a mapping ``user id -> item ids`` (chronological, no
    timestamps); an iterable of `UserHistory` (streamed, read once); a list of event dicts
    (``{"user", "item", "timestamp", ...}``, read like a DataFrame).
    """
    from userfm.data.readers import read_events

    if isinstance(source, EventLog):
        return source.iter_histories(), source.num_users
    if isinstance(source, (str, Path, pd.DataFrame, datasets.Dataset)):
        log = read_events(source, schema)
        return log.iter_histories(), log.num_users
    if isinstance(source, Mapping):
        return (_from_items(u, items) for u, items in source.items()), len(source)
    if isinstance(source, Sequence) and source and isinstance(source[0], Mapping):
        log = read_events(pd.DataFrame(list(source)), schema)
        return log.iter_histories(), log.num_users
    if isinstance(source, Iterable):
        n = len(source) if isinstance(source, Sequence) else None
        return source, n
    raise TypeError(
        "histories must be an EventLog, DataFrame, datasets.Dataset, file path, "
        f"mapping user -> item ids, or iterable of UserHistory; got {type(source).__name__}"
    )


def _from_items(user: Any, items: Sequence[Any]) -> UserHistory:
    if isinstance(items, UserHistory):
        return items
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise DataError(
            f"history of user {user!r} must be a sequence of item ids, got {type(items).__name__}"
        )
    arr = np.asarray([str(i) for i in items], dtype=object)
    return UserHistory(str(user), arr)


# Batches are padded to a multiple of this length: a few distinct shapes keep the allocator
# from fragmenting over a long run (measured: RSS flat instead of creeping up, see
# benchmarks/embed_throughput.py), for at most 31 padded positions per batch.
PAD_MULTIPLE = 32


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on (None: `default_device`), checked before any model moves there.

    Raises:
        ConfigError: not a device string, CUDA asked for where there is none (or an index
            past the GPUs present), or ``meta`` (it holds no data: moving a model there
            destroys its weights).
    """
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(
            f"`device` {device!r} is not a device (cpu, cuda, cuda:1, mps): {e}"
        ) from e
    if dev.type == "meta":
        raise ConfigError("`device` 'meta' holds no data: the model's weights would be lost")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"`device` {device!r}: CUDA is not available here (torch {torch.__version__}); "
                "use cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"`device` {device!r}: only {torch.cuda.device_count()} GPU(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"`device` {device!r}: MPS is not available here; use cpu")
    return dev


@dataclass
class EncodedChunk(Generic[T]):
    """One chunk of users run through the encoder by `run_chunks`.

    Attributes:
        histories: the chunk's raw histories, in input order (full length, not truncated).
        outputs: ``(positions, head output)`` per batch; ``positions`` (B,) int64 index
            ``histories`` (batches are length-sorted, so positions are not contiguous).
        stats: users, events, unknown items (``oov_items``), histories cut to ``max_len``
            (``truncated_users``) and histories lacking the actions / categories the model was
            trained with (``users_without_side_features``; embedded with those features unset).
    """

    histories: list[UserHistory]
    outputs: list[tuple[np.ndarray, T]]
    stats: dict


def length_sorted_batches(
    lengths: np.ndarray, max_len: int, batch_size: int
) -> Iterator[np.ndarray]:
    """Positions of a chunk's histories, longest first (lengths cut at ``max_len``; ties in
    input order), ``batch_size`` at a time: a batch holds similar lengths, so little padding.

    Args:
        lengths: (N,) int64 history lengths.
        max_len: the model's position limit (longer histories are truncated to it).
        batch_size: positions per batch.

    Yields:
        (<= batch_size,) int64 positions into the chunk.
    """
    order = np.argsort(-np.minimum(lengths, max_len), kind="stable")
    for lo in range(0, len(order), batch_size):
        yield order[lo : lo + batch_size]


def chunk_stats(lengths: np.ndarray, encoded: Sequence[Any], max_len: int) -> dict:
    """What embedding a chunk read: users, events, unknown items (``oov_items``) and
    histories cut to ``max_len`` (``truncated_users``); ``encoded`` are its featurised
    histories (`userfm.data.features.EncodedHistory`)."""
    return {
        "users": len(lengths),
        "events": int(lengths.sum()),
        "oov_items": sum(e.oov for e in encoded),
        "truncated_users": int((lengths > max_len).sum()),
    }


def run_chunks(
    model: UserEncoder,
    histories: HistoriesLike,
    head: Callable[[torch.Tensor, list[UserHistory]], T],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    chunk_size: int | None = None,
    schema: EventSchema | None = None,
    desc: str = "embedding",
) -> Iterator[EncodedChunk[T]]:
    """The batching loop shared by the embedding and recommendation APIs.

    Reads ``chunk_size`` users at a time, sorts them by length (less padding), embeds them
    ``batch_size`` at a time (eval mode, inference mode) and applies ``head`` to each batch.

    Args:
        model: a `UserEncoder` with vocabularies (``model.vocabs``).
        histories: see `as_histories`.
        head: ``head(embedding (B, D) on ``device``, raw histories of those B users)`` -> any
            per-batch result (e.g. a numpy copy of the embeddings, or top-k items).
        batch_size, device, progress, chunk_size, schema: as in `iter_embed`.
        desc: progress bar label.

    Yields:
        One `EncodedChunk` per chunk.
    """
    if batch_size < 1:
        raise ConfigError(f"`batch_size` must be >= 1, got {batch_size}")
    featurizer = model.featurizer()  # ConfigError when the model has no vocabularies
    chunk_size = chunk_size or batch_size * 32
    device = resolve_device(device)
    # the columns that trained the model (actions, categories) are read again by default
    stream, total = as_histories(
        histories, schema if schema is not None else model.training_schema()
    )
    cfg = model.config
    was_training = model.training
    model.eval().to(device)
    bar = tqdm(total=total, unit="user", desc=desc, disable=not resolve_progress(progress))
    missing_at_start, users = featurizer.missing_side_features, 0
    try:
        it = iter(stream)
        while chunk := list(itertools.islice(it, chunk_size)):
            missing_before = featurizer.missing_side_features
            encoded = [featurizer(h) for h in chunk]
            lengths = np.fromiter((len(h) for h in chunk), dtype=np.int64, count=len(chunk))
            outputs = []
            with torch.inference_mode():
                for idx in length_sorted_batches(lengths, cfg.max_len, batch_size):
                    batch = collate(
                        [encoded[i] for i in idx],
                        pad_to_multiple_of=PAD_MULTIPLE,
                        max_len=cfg.max_len,
                    ).to(device)
                    emb = model(batch, return_states=False).embedding  # (B, D)
                    outputs.append((idx, head(emb, [chunk[i] for i in idx])))
                    bar.update(len(idx))
            stats = chunk_stats(lengths, encoded, cfg.max_len)
            stats["users_without_side_features"] = featurizer.missing_side_features - missing_before
            yield EncodedChunk(chunk, outputs, stats)
            users += len(chunk)
        _warn_missing_side_features(
            model, featurizer.missing_side_features - missing_at_start, users
        )
    finally:
        bar.close()
        model.train(was_training)


def _warn_missing_side_features(model: UserEncoder, missing: int, users: int) -> None:
    """One loud warning per call when histories lack the side features the model reads: they
    are embedded without them, which silently lowers quality (issue 18: NDCG@10 0.130 -> 0.105
    on MovieLens-100K when a DataFrame's genre and rating columns were not read)."""
    if not missing:
        return
    cfg = model.config
    features = [
        n for n, k in (("actions", cfg.num_actions), ("categories", cfg.num_categories)) if k
    ]
    schema = model.training_schema()
    columns = (
        f"; it was trained with the columns of {schema}"
        if schema is not None
        else "; map the columns with EventSchema(action=..., category=...)"
    )
    warnings.warn(
        f"{missing:,} of {users:,} histories have no {' / '.join(features)}, which this model "
        f"reads; they were embedded without them, and their embeddings are worse{columns}",
        UserWarning,
        stacklevel=4,
    )


def iter_embed(
    model: UserEncoder,
    histories: HistoriesLike,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    chunk_size: int | None = None,
    schema: EventSchema | None = None,
) -> Iterator[UserEmbeddings]:
    """Embed users chunk by chunk (constant memory over a stream).

    Args:
        model: a `UserEncoder` with vocabularies (``model.vocabs``).
        histories: see `as_histories`.
        batch_size: users per forward pass.
        device: where to run (default: CUDA when available, else CPU).
        progress: show a progress bar (users); None: only when stderr is a terminal.
        chunk_size: users read, sorted by length and yielded together (default 32 batches).
        schema: column mapping for DataFrame / file / event-dict inputs (default: the
            model's `UserEncoder.training_schema`, else `EventSchema()`).

    Yields:
        `UserEmbeddings` per chunk, users in input order, with ``stats`` counting users,
        events, unknown items (``oov_items``) and histories cut to ``max_len``
        (``truncated_users``).
    """
    head = model.user_text  # users in words: their vectors in the text space too

    def outputs(emb: torch.Tensor, _: Any) -> np.ndarray:
        if head is not None:
            emb = torch.cat([emb, head(emb)], dim=1)  # (B, D + text_dim)
        return emb.float().cpu().numpy()

    chunks = run_chunks(
        model,
        histories,
        outputs,
        batch_size=batch_size,
        device=device,
        progress=progress,
        chunk_size=chunk_size,
        schema=schema,
    )
    D = model.config.hidden_size
    for chunk in chunks:
        out = np.empty((len(chunk.histories), D + model.config.user_text_dim), dtype=np.float32)
        for idx, vectors in chunk.outputs:
            out[idx] = vectors
        users = [h.user for h in chunk.histories]
        if head is None:
            yield UserEmbeddings(users, out, chunk.stats)
        else:
            yield UserEmbeddings(users, out[:, :D], chunk.stats, out[:, D:],
                                 model.config.user_text_model)  # fmt: skip


def embed(
    model: UserEncoder,
    histories: HistoriesLike,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    chunk_size: int | None = None,
    schema: EventSchema | None = None,
) -> UserEmbeddings:
    """Embed every user and return one `UserEmbeddings` (the chunks of `iter_embed`, joined).

    Args:
        model: a `UserEncoder` with vocabularies (``model.vocabs``).
        histories: see `as_histories`.
        batch_size: users per forward pass.
        device: where to run (default: CUDA when available, else CPU).
        progress: show a progress bar (users); None: only when stderr is a terminal.
        chunk_size: users read and length-sorted together (default 32 batches).
        schema: column mapping for DataFrame / file / event-dict inputs (default: the
            model's `UserEncoder.training_schema`, else `EventSchema()`).

    Returns:
        `UserEmbeddings`: N user ids in input order and a (N, D) float32 matrix, with
        ``stats`` summed over the chunks.

    Raises:
        DataError: ``histories`` holds no user.
    """
    parts = list(
        iter_embed(
            model,
            histories,
            batch_size=batch_size,
            device=device,
            progress=progress,
            chunk_size=chunk_size,
            schema=schema,
        )
    )
    if not parts:
        raise DataError("no user histories to embed")
    return UserEmbeddings.concat(parts)
