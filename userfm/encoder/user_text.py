"""Users in words: a head that maps user embeddings into a sentence encoder's text space.

Issue 33 §3. A small linear head is trained contrastively (InfoNCE over the batch, both
directions, as InstructUE aligns users with text) between each user's embedding and the
sentence-encoder vector of a text describing what the user did next: the top categories and
titles of the ``horizon`` events that follow the input. Aligned with what comes next, not with
the past, the head turns the encoder's forecast into words. Then:

- `UserEmbeddings.search("sci-fi and animation", k=10)`: users ranked by the cosine between
  their aligned vector and the query's text vector;
- `UserEncoder.describe(histories, k=5)`: each user's nearest phrases among the item table's
  attribute values (e.g. the genres), stored with the model.

The encoder is frozen: the embeddings are computed once and only the head trains (seconds).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from userfm.data.items import ItemTable
from userfm.data.log import EventLog, UserHistory
from userfm.data.schema import CATEGORY_SEP
from userfm.encoder.text_model import DEFAULT_TEXT_MODEL, encode_texts, text_model_info
from userfm.errors import ConfigError, DataError, SchemaError, check_int

if TYPE_CHECKING:
    from userfm.encoder.model import UserEncoder

__all__ = ["UserTextHead", "UserTextFit", "describe_events", "fit_user_text"]


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


def describe_events(
    items: Sequence[str],
    table: ItemTable,
    *,
    category_column: str | None,
    title_column: str | None,
    top: int = 3,
) -> str | None:
    """A text of what a run of events holds: its ``top`` most frequent categories, then its
    last ``top`` distinct titles, e.g. ``"genres: Drama, Comedy. titles: Heat (1995); ..."``.

    Args:
        items: the events' item ids, oldest first.
        table: the item table the categories and titles come from.
        category_column, title_column: its columns (None: left out).
        top: categories and titles named.

    Returns:
        The text, or None when none of the items has a category or title in the table.
    """
    position = {item: i for i, item in enumerate(table.ids)}
    rows = [position[i] for i in items if i in position]
    parts = []
    if category_column is not None:
        values = table.columns[category_column]
        named = _by_frequency(values[r] for r in rows)[:top]
        if named:
            parts.append(f"{category_column}: {', '.join(named)}")
    if title_column is not None:
        titles = table.columns[title_column]
        recent = list(dict.fromkeys(titles[r] for r in reversed(rows) if titles[r]))[:top]
        if recent:
            parts.append(f"{title_column}: {'; '.join(recent)}")
    return ". ".join(parts) or None


@dataclass(frozen=True)
class UserTextFit:
    """What `fit_user_text` trained on.

    Attributes:
        users: (input, description) pairs trained on.
        losses: the InfoNCE loss of each step (it should fall).
        phrases: the phrases `describe` picks from.
    """

    users: int
    losses: list[float]
    phrases: list[str]


def _pairs(
    log: EventLog, table: ItemTable, horizon: int, category: str | None, title: str | None
) -> tuple[list[UserHistory], list[str]]:
    """Each user's input (all but their last ``horizon`` events) and the description of
    those last events; users with fewer than ``horizon + 1`` events or no description are
    left out."""
    inputs, texts = [], []
    for history in log.iter_histories():
        if len(history) <= horizon:
            continue
        text = describe_events(
            list(history.items[-horizon:]), table, category_column=category, title_column=title
        )
        if text is not None:
            inputs.append(history[:-horizon])
            texts.append(text)
    return inputs, texts


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
    category_column: str | None = None,
    title_column: str | None = "title",
    horizon: int = 10,
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
            events, described by `describe_events` (keep evaluation events out of it).
        items: the item table the descriptions and phrases come from.
        category_column: its attribute column (``|``-joined values): named in descriptions,
            and its values are the phrases of `UserEncoder.describe` (default: the column of
            the training log's category name, e.g. ``genres``).
        title_column: its title column (None: titles are not named).
        horizon: events described per user.
        steps, batch_size, lr, temperature: the InfoNCE training (Adam, cosine / temperature).
        text_model: the sentence encoder of descriptions and queries.
        cache_dir, progress: `encode_texts` options.
        seed: batch order and head initialisation.

    Returns:
        `UserTextFit`.

    Raises:
        SchemaError: a column the table lacks. DataError: fewer than 2 users to align.
    """
    check_int("horizon", horizon, minimum=1)
    check_int("steps", steps, minimum=1)
    schema = model.training_schema()
    if category_column is None and schema is not None and schema.category in items.columns:
        category_column = schema.category
    for column in (category_column, title_column):
        if column is not None and column not in items.columns:
            raise SchemaError(f"the item table has no column {column!r}: {list(items.columns)}")
    inputs, texts = _pairs(log, items, horizon, category_column, title_column)
    if len(inputs) < 2:
        raise DataError(f"{len(inputs)} user(s) have more than {horizon} described events: "
                        "at least 2 are needed to align users with text")  # fmt: skip
    info = text_model_info(text_model)
    targets = encode_texts(texts, model=text_model, cache_dir=cache_dir, progress=progress)
    targets = torch.from_numpy(targets)  # (N, text_dim)
    users = torch.from_numpy(model.embed(inputs, progress=progress).vectors)  # (N, D)
    phrases = _phrases(items, category_column)
    torch.manual_seed(seed)
    head = UserTextHead(dim=users.shape[1], text_dim=info.dim, num_phrases=len(phrases))
    if phrases:
        head.phrase_vectors.copy_(torch.from_numpy(
            encode_texts(phrases, model=text_model, cache_dir=cache_dir, progress=False)))  # fmt: skip
    losses = _train(head, users, targets, steps, batch_size, lr, temperature, seed)
    model.set_user_text_head(head.eval(), text_model=info, phrases=phrases)
    return UserTextFit(len(inputs), losses, phrases)


def _train(
    head: UserTextHead,
    users: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    temperature: float,
    seed: int,
) -> list[float]:
    """Symmetric InfoNCE between head(users) and their description vectors, over batches."""
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    head.train()
    for _ in range(steps):
        batch = torch.randperm(len(users), generator=g)[:batch_size]
        u, t = head(users[batch]), targets[batch]  # (B, text_dim) each, unit rows
        logits = u @ t.T / temperature  # (B, B): the diagonal holds the true pairs
        labels = torch.arange(len(batch))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def check_head(model: UserEncoder) -> UserTextHead:
    """The model's user-text head; ConfigError when it has none."""
    if model.user_text is None:
        raise ConfigError(
            "this encoder has no user-text head: train one with "
            "userfm.encoder.user_text.fit_user_text(model, log, items)"
        )
    return model.user_text
