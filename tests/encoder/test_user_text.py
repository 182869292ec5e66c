"""Users in words (issue 33 §3): a head aligned contrastively with descriptions of what users
did next; `UserEmbeddings.search` and `UserEncoder.describe`; saved with the model."""

from __future__ import annotations

import numpy as np
import pytest

from userfm import EventSchema, UserEncoder, read_events
from userfm.data.items import ItemTable, items_from_log
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.encoder.user_text import describe_events, fit_user_text
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


def test_describe_events_names_the_top_categories_then_the_latest_titles():
    table = ItemTable(
        ids=["a", "b", "c"],
        columns={"title": ["Heat", "Up", None], "genres": ["Crime|Drama", "Drama", "Comedy"]},
    )
    text = describe_events(["a", "b", "b", "c", "zzz"], table, category_column="genres",
                           title_column="title", top=2)  # fmt: skip
    assert text == "genres: Drama, Comedy. title: Up; Heat"
    assert describe_events(["zzz"], table, category_column="genres", title_column=None) is None


def test_the_alignment_loss_falls_and_search_and_describe_read_the_head(
    log, tiny_text_model, tmp_path
):
    model, fit = fitted(log, tiny_text_model)
    assert fit.users == int((log.lengths > 5).sum())  # users with events left to describe
    assert np.mean(fit.losses[-20:]) < 0.8 * np.mean(fit.losses[:5])
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
    # saved with the model, read back the same
    model.save_pretrained(tmp_path / "m")
    loaded = UserEncoder.from_pretrained(tmp_path / "m").eval()
    assert loaded.describe(log, k=3, progress=False) == words
    again = loaded.embed(log, progress=False)
    np.testing.assert_array_equal(again.text_vectors, emb.text_vectors)
    # an embeddings file keeps them: search works on what `userfm embed` writes
    read = type(emb).from_parquet(emb.to_parquet(tmp_path / "emb.parquet"))
    np.testing.assert_array_equal(read.text_vectors, emb.text_vectors)
    assert read.search("books", k=5, cache_dir=False) == found


def test_without_a_head_search_and_describe_say_how_to_get_one(log, tiny_text_model):
    model = UserEncoder.from_log(log, hidden_size=16, num_layers=1, num_heads=2)
    emb = model.embed(log, progress=False)
    assert emb.text_vectors is None
    with pytest.raises(ConfigError, match="fit_user_text"):
        emb.search("books")
    with pytest.raises(ConfigError, match="fit_user_text"):
        model.describe(log, progress=False)
    with pytest.raises(SchemaError, match="plot"):
        fit_user_text(model, log, items_from_log(log), title_column="plot",
                      text_model=tiny_text_model)  # fmt: skip
    with pytest.raises(DataError, match="at least 2"):
        fit_user_text(model, log, items_from_log(log), horizon=10_000,
                      text_model=tiny_text_model)  # fmt: skip
