"""Users in words: a head that maps user embeddings into a sentence encoder's text space.

Issue 33 §3. A small linear head is trained (the encoder frozen) to map each user's embedding
onto the text vector of what the user did next: the normalised mean of the sentence-encoder
vectors of the items of the ``horizon`` events that follow the input (each item's text made of
the item table's columns, as `userfm.encoder.item_vectors.encode_items` makes it). Aligned with
what comes next, not with the past, the head turns the encoder's forecast into words. Then:

- `UserEmbeddings.search("sci-fi and animation", k=10)`: users ranked by the cosine between
  their aligned vector and the query's text vector;
- `UserEncoder.describe(histories, k=5)`: each user's nearest phrases among the item table's
  attribute values (e.g. the genres), stored with the model.

Two losses: ``"cosine"`` (default: 1 - cosine to the target, a regression onto the expected text
vector of the next events) and ``"infonce"`` (InfoNCE over the batch, both directions, as
InstructUE aligns users with text). On MovieLens-100K's validation split the regression ranks
users for genre queries better (`benchmarks/users_in_words.py`, README "Users in words").
The encoder is frozen: the embeddings are computed once and only the head trains (seconds).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from userfm.data.items import ItemTable
from userfm.data.log import EventLog, UserHistory
from userfm.data.schema import CATEGORY_SEP
from userfm.encoder.item_vectors import encode_items
from userfm.encoder.text_model import DEFAULT_TEXT_MODEL, encode_texts
from userfm.errors import ConfigError, DataError, SchemaError, check_int

if TYPE_CHECKING:
    from userfm.encoder.model import UserEncoder

__all__ = ["UserTextHead", "UserTextFit", "LOSSES", "fit_user_text"]

#: the alignment losses of `fit_user_text`
LOSSES = ("cosine", "infonce")


class UserTextHead(nn.Module):
    """(B, D) user embeddings -> (B, text_dim) vectors in the text model's space, and the
    attribute phrases `UserEncoder.describe` picks from.

    Args:
        dim: D, the user embedding width.
        text_dim: the text model's vector width.
        num_phrases: P, phrases stored (their vectors: the ``phrase_vectors`` buffer).
    """

    def __init__(self, *, dim: int, text_dim: int, num_phrases: int):
        super().__init__()
        self.proj = nn.Linear(dim, text_dim)
        self.register_buffer("phrase_vectors", torch.zeros(num_phrases, text_dim))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(embedding), dim=-1)  # (B, text_dim), unit rows


@dataclass(frozen=True)
class UserTextFit:
    """What `fit_user_text` trained on.

    Attributes:
        users: (input, target) pairs trained on.
        losses: the loss of each step (it should fall).
        phrases: the phrases `describe` picks from.
        text_columns: the item-table columns the item texts were made of.
    """

    users: int
    losses: list[float]
    phrases: list[str]
    text_columns: list[str]


def _pairs(
    log: EventLog, positions: dict[str, int], has_text: np.ndarray, horizon: int
) -> tuple[list[UserHistory], list[list[int]]]:
    """Each user's input (all but their last ``horizon`` events) and the item-table rows of
    those last events that have text; users with fewer than ``horizon + 1`` events, or none
    of whose last events has text, are left out."""
    inputs, rows = [], []
    for history in log.iter_histories():
        if len(history) <= horizon:
            continue
        found = [positions[i] for i in history.items[-horizon:] if i in positions]
        found = [r for r in found if has_text[r]]
        if found:
            inputs.append(history[:-horizon])
            rows.append(found)
    return inputs, rows


def _targets(vectors: np.ndarray, rows: list[list[int]]) -> torch.Tensor:
    """(N, text_dim) unit rows: the normalised mean of each user's described item vectors."""
    means = np.stack([vectors[r].mean(axis=0) for r in rows])  # (N, text_dim)
    return F.normalize(torch.from_numpy(means).float(), dim=-1)


def _phrases(table: ItemTable, column: str | None) -> list[str]:
    """The distinct values of the ``|``-joined attribute column, most frequent first."""
    return [] if column is None else _by_frequency(table.columns[column])


def _by_frequency(values: Iterable[str | None]) -> list[str]:
    """The distinct parts of ``|``-joined values, most frequent first (ties by name)."""
    counts = Counter(c.strip() for v in values for c in (v or "").split(CATEGORY_SEP) if c.strip())
    return [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def fit_user_text(
    model: UserEncoder,
    log: EventLog,
    items: ItemTable,
    *,
    text_columns: Sequence[str] | None = None,
    category_column: str | None = None,
    horizon: int = 10,
    loss: str = "cosine",
    steps: int = 300,
    batch_size: int = 256,
    lr: float = 1e-2,
    temperature: float = 0.05,
    text_model: str | os.PathLike = DEFAULT_TEXT_MODEL,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> UserTextFit:
    """Train the model's user-text head (created here; the encoder stays frozen).

    Args:
        model: a trained encoder with vocabularies.
        log: the users to align: each one's input is their history but its last ``horizon``
            events, whose items' text is the target (keep evaluation events out of it).
        items: the item table the item texts and the phrases come from.
        text_columns: the table's columns an item's text is made of, in order (default: the
            model's own ``text_columns`` when it reads item text, else the training log's
            title and category columns the table has, else all of the table's columns).
        category_column: the attribute column (``|``-joined values) whose values are the
            phrases of `UserEncoder.describe` (default: the column of the training log's
            category name, e.g. ``genres``; None when the table has none).
        horizon: events described per user.
        loss: ``"cosine"`` (1 - cosine to the target) or ``"infonce"`` (symmetric InfoNCE
            over the batch at ``temperature``).
        steps, batch_size, lr: the training (Adam).
        text_model: the sentence encoder of item texts, phrases and queries.
        cache_dir, progress: `encode_texts` options.
        seed: batch order and head initialisation.

    Returns:
        `UserTextFit`.

    Raises:
        SchemaError: a column the table lacks. ConfigError: an unknown ``loss``.
        DataError: fewer than 2 users to align.
    """
    check_int("horizon", horizon, minimum=1)
    check_int("steps", steps, minimum=1)
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {LOSSES}, got {loss!r}")
    schema = model.training_schema()
    if category_column is None and schema is not None and schema.category in items.columns:
        category_column = schema.category
    columns = _text_columns(model, items, text_columns)
    for column in (*columns, category_column):
        if column is not None and column not in items.columns:
            raise SchemaError(f"the item table has no column {column!r}: {list(items.columns)}")
    found = encode_items(items, columns, text_model=text_model, cache_dir=cache_dir,
                         progress=progress)  # fmt: skip
    positions = {item: i for i, item in enumerate(found.ids)}
    inputs, rows = _pairs(log, positions, found.has_text, horizon)
    if len(inputs) < 2:
        raise DataError(f"{len(inputs)} user(s) have more than {horizon} events with item text: "
                        "at least 2 are needed to align users with text")  # fmt: skip
    targets = _targets(found.vectors, rows)  # (N, text_dim)
    users = torch.from_numpy(model.embed(inputs, progress=progress).vectors)  # (N, D)
    phrases = _phrases(items, category_column)
    torch.manual_seed(seed)
    head = UserTextHead(dim=users.shape[1], text_dim=found.model.dim, num_phrases=len(phrases))
    if phrases:
        head.phrase_vectors.copy_(torch.from_numpy(
            encode_texts(phrases, model=text_model, cache_dir=cache_dir, progress=False)))  # fmt: skip
    losses = _train(head, users, targets, loss, steps, batch_size, lr, temperature, seed)
    model.set_user_text_head(head.eval(), text_model=found.model, phrases=phrases)
    return UserTextFit(len(inputs), losses, phrases, columns)


def _text_columns(model: UserEncoder, items: ItemTable, columns: Sequence[str] | None) -> list[str]:
    """`fit_user_text`'s ``text_columns``, defaults resolved."""
    if columns is not None:
        return list(columns)
    if model.config.text_columns:
        return list(model.config.text_columns)
    schema = model.training_schema()
    named = [] if schema is None else [c for c in (schema.title, schema.category) if c]
    return [c for c in named if c in items.columns] or list(items.columns)


def _train(
    head: UserTextHead,
    users: torch.Tensor,
    targets: torch.Tensor,
    loss: str,
    steps: int,
    batch_size: int,
    lr: float,
    temperature: float,
    seed: int,
) -> list[float]:
    """Fit head(users) to their target vectors over random batches; each step's loss."""
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    head.train()
    for _ in range(steps):
        batch = torch.randperm(len(users), generator=g)[:batch_size]
        u, t = head(users[batch]), targets[batch]  # (B, text_dim) each, unit rows
        if loss == "cosine":
            value = (1 - (u * t).sum(dim=-1)).mean()
        else:  # infonce: the diagonal of the (B, B) logits holds the true pairs
            logits = u @ t.T / temperature
            labels = torch.arange(len(batch))
            value = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    return losses


def check_head(model: UserEncoder) -> UserTextHead:
    """The model's user-text head; ConfigError when it has none."""
    if model.user_text is None:
        raise ConfigError(
            "this encoder has no user-text head: train one with "
            "userfm.encoder.user_text.fit_user_text(model, log, items)"
        )
    return model.user_text
