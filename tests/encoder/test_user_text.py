"""Users in words (issue 33 §3): a head aligned with the text of what users did next;
`UserEmbeddings.search` and `UserEncoder.describe`; saved with the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from userfm import EventSchema, UserEncoder, read_events
from userfm.data.items import ItemTable, items_from_log
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.encoder.item_vectors import encode_items
from userfm.encoder.user_text import _pairs, _targets, fit_user_text
from userfm.errors import ConfigError, DataError, SchemaError


@pytest.fixture(scope="module")
def log():
    events = generate_synthetic_log(SyntheticConfig(num_users=120, num_items=60, seed=3))
    return read_events(events, EventSchema(category="category", title="title"))


def fitted(log, text_model, **kwargs):
    model = UserEncoder.from_log(log, seed=0, hidden_size=16, num_layers=1, num_heads=2).eval()
    fit = fit_user_text(
        model, log, items_from_log(log), horizon=5, steps=150, batch_size=64,
        text_model=text_model, cache_dir=False, **kwargs,
    )  # fmt: skip
    return model, fit


def test_each_user_is_aligned_with_the_mean_text_vector_of_their_next_events(tiny_text_model):
    """The target is what the user did next: the normalised mean of the text vectors of the
    items of their last ``horizon`` events; events on items without text are left out, and a
    user none of whose last events has text is not trained on."""
    table = ItemTable(ids=["a", "b", "c"],
                      columns={"title": ["Heat", "Up", None], "genres": ["Crime", "Drama", None]})  # fmt: skip
    events = {"user": ["u"] * 4 + ["v"] * 3 + ["w"] * 2,
              "item": ["c", "a", "b", "b", "a", "c", "c", "a", "b"],
              "timestamp": [1, 2, 3, 4, 1, 2, 3, 1, 2]}  # fmt: skip
    log = read_events(pd.DataFrame(events), EventSchema())
    found = encode_items(table, ["title", "genres"], text_model=tiny_text_model, cache_dir=False)
    positions = {item: i for i, item in enumerate(found.ids)}
    inputs, rows = _pairs(log, positions, found.has_text, horizon=2)
    # u: input [c, a], next [b, b]; v: next [c, c] has no text (left out); w: too short
    assert [h.user for h in inputs] == ["u"] and [list(h.items) for h in inputs] == [["c", "a"]]
    assert rows == [[1, 1]]
    inputs, rows = _pairs(log, positions, found.has_text, horizon=3)
    assert [h.user for h in inputs] == ["u"] and rows == [[0, 1, 1]]  # c has no text
    want = (found.vectors[0] + 2 * found.vectors[1]) / 3
    np.testing.assert_allclose(
        _targets(found.vectors, rows).numpy()[0], want / np.linalg.norm(want), rtol=1e-5
    )


@pytest.mark.parametrize("loss", ["cosine", "infonce"])
def test_the_alignment_loss_falls(log, tiny_text_model, loss):
    _, fit = fitted(log, tiny_text_model, loss=loss)
    assert fit.users == int((log.lengths > 5).sum())  # users with events left to describe
    assert fit.text_columns == ["title", "category"]  # the log's title and category columns
    assert np.mean(fit.losses[-20:]) < 0.8 * fit.losses[0]


def test_search_and_describe_read_the_head(log, tiny_text_model, tmp_path):
    model, fit = fitted(log, tiny_text_model)
    assert set(fit.phrases) == set(model.vocabs.categories.tokens)  # the log's categories
    emb = model.embed(log, progress=False)
    assert emb.text_vectors.shape == (log.num_users, 16)
    np.testing.assert_allclose(np.linalg.norm(emb.text_vectors, axis=1), 1.0, rtol=1e-5)
    found = emb.search("books", k=5, cache_dir=False)
    assert len(found) == 5 and found[0][1] >= found[-1][1]
    words = model.describe(log, k=3, progress=False)
    assert set(words) == set(emb.user_ids)
    first = words[emb.user_ids[0]]
    assert len(first) == 3 and {p for p, _ in first} <= set(fit.phrases)
    # saved with the model, read back the same, and named by its card
    model.save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert (
        f"Users in words: user embeddings mapped into the 16-d space of `{tiny_text_model}`" in card
    )
    assert f"nearest of {len(fit.phrases)} attribute phrases" in card
    loaded = UserEncoder.from_pretrained(tmp_path / "m").eval()
    assert loaded.describe(log, k=3, progress=False) == words
    again = loaded.embed(log, progress=False)
    np.testing.assert_array_equal(again.text_vectors, emb.text_vectors)
    # an embeddings file keeps them: search works on what `userfm embed` writes
    read = type(emb).from_parquet(emb.to_parquet(tmp_path / "emb.parquet"))
    np.testing.assert_array_equal(read.text_vectors, emb.text_vectors)
    assert read.search("books", k=5, cache_dir=False) == found


def test_without_a_head_search_and_describe_say_how_to_get_one(log, tiny_text_model, tmp_path):
    model = UserEncoder.from_log(log, hidden_size=16, num_layers=1, num_heads=2)
    emb = model.embed(log, progress=False)
    assert emb.text_vectors is None
    card = (model.save_pretrained(tmp_path / "m") / "README.md").read_text()
    assert "Users in words: none (`userfm.encoder.user_text.fit_user_text` trains one)" in card
    with pytest.raises(ConfigError, match="fit_user_text"):
        emb.search("books")
    with pytest.raises(ConfigError, match="fit_user_text"):
        model.describe(log, progress=False)
    with pytest.raises(SchemaError, match="plot"):
        fit_user_text(model, log, items_from_log(log), text_columns=["title", "plot"],
                      text_model=tiny_text_model)  # fmt: skip
    with pytest.raises(ConfigError, match="loss must be one of"):
        fit_user_text(model, log, items_from_log(log), loss="mse", text_model=tiny_text_model)
    with pytest.raises(DataError, match="at least 2"):
        fit_user_text(model, log, items_from_log(log), horizon=10_000,
                      text_model=tiny_text_model)  # fmt: skip
