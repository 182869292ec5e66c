"""Items described by text (issue 33 §1): text vectors saved with the model, ID dropout, the
inductive mode, `add_items` (an open catalogue) and `recommend(candidates=...)`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from userfm.data.items import ItemTable, items_from_log
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.vocab import NUM_SPECIALS
from userfm.encoder import UserEncoder
from userfm.encoder.item_vectors import encode_items
from userfm.encoder.text_model import text_model_info
from userfm.errors import ConfigError, DataError, SchemaError

# mapping inputs carry no categories: the model says so, as it should
pytestmark = pytest.mark.filterwarnings("ignore:.*histories have no categories")

COLUMNS = ["title", "category"]
TITLES = {
    "m1": ("toy story", "comedy|kids"),
    "m2": ("space war", "action"),
    "m3": ("love night", "romance|drama"),
    "m4": ("the crime day", "crime"),
    "m5": ("family life", "drama"),
}


def _log():
    rows = []
    for u, items in enumerate([["m1", "m2", "m3"], ["m2", "m3", "m4", "m5"], ["m1", "m5"]]):
        for t, item in enumerate(items):
            title, category = TITLES[item]
            rows.append(
                {
                    "user": f"u{u}",
                    "item": item,
                    "timestamp": 1_600_000_000 + 60 * t,
                    "title": title,
                    "category": category,
                }  # fmt: skip
            )
    return read_events(pd.DataFrame(rows), EventSchema(category="category", title="title"))


def _new_items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item": ["n1", "m2", "n2", "n3"],
            "title": ["cartoon comedy for kids", "space war", "a war documentary", None],
            "category": ["comedy", "action", "documentary", None],
        }
    )


def text_encoder(text_model, *, seed: int = 0, **config) -> UserEncoder:
    """A (random) encoder of the toy log whose items carry the tiny text model's vectors."""
    log = _log()
    model = UserEncoder.from_log(
        log, seed=seed, items=items_from_log(log), item_text=COLUMNS, text_model=text_model,
        text_cache_dir=False, hidden_size=8, num_layers=1, num_heads=1, max_len=8, **config,
    )  # fmt: skip
    return model.eval()


def test_from_log_with_items_stores_each_items_text_vector(tiny_text_model):
    model = text_encoder(tiny_text_model)
    info = text_model_info(tiny_text_model)
    cfg = model.config
    assert (cfg.text_dim, cfg.text_model_fingerprint) == (info.dim, info.fingerprint)
    tokens = model.vocabs.items.tokens
    found = encode_items(ItemTable(ids=list(TITLES), columns={
        "title": [t for t, _ in TITLES.values()], "category": [c for _, c in TITLES.values()]}),
        COLUMNS, ids=tokens, text_model=tiny_text_model, cache_dir=False)  # fmt: skip
    np.testing.assert_allclose(model.embeddings.item_text[NUM_SPECIALS:].numpy(), found.vectors)
    assert model.embeddings.item_text[:NUM_SPECIALS].abs().sum() == 0


def test_text_vectors_are_saved_bit_exact_and_loading_needs_no_text_model(
    tiny_text_model, tmp_path, monkeypatch
):
    model = text_encoder(tiny_text_model)
    model.save_pretrained(tmp_path / "m")
    import userfm.encoder.text_model as tm

    def no_text_model(*a, **k):
        raise AssertionError("loading a model must not need the text model")

    monkeypatch.setattr(tm, "resolve_text_model", no_text_model)
    loaded = UserEncoder.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.embeddings.item_text, model.embeddings.item_text)
    assert loaded.embeddings.item_text[NUM_SPECIALS:].abs().sum() > 0
    assert loaded.config.text_columns == COLUMNS
    assert loaded.config.text_model == str(tiny_text_model)
    card = (tmp_path / "m" / "README.md").read_text()
    assert str(tiny_text_model) in card and "`title`, `category`" in card


def test_add_items_gives_new_items_vectors_that_embed_and_recommend_read(tiny_text_model, tmp_path):
    text_encoder(tiny_text_model).save_pretrained(tmp_path / "trained")
    model = UserEncoder.from_pretrained(tmp_path / "trained").eval()  # a saved model
    before = model.config.num_items
    added = model.add_items(_new_items(), cache_dir=tmp_path / "cache")
    assert (added.added, added.known, added.without_text) == (2, 1, 1)
    assert added.ids == ["n1", "n2"]
    assert model.config.num_items == before + 2 == len(model.vocabs.items)
    vectors = model.embeddings.item_vectors()
    assert torch.isfinite(vectors).all()
    n1 = model.vocabs.items.encode(["n1"])[0][0]
    assert model.embeddings.item.weight[n1].abs().sum() == 0  # no id: read from its text
    assert model.embeddings.item_text[n1].abs().sum() > 0
    # a history of new items: read, not OOV; the item without text stays OOV and is counted
    emb = model.embed({"u": ["n1", "n2", "n3"]})
    assert emb.stats["oov_items"] == 1
    ranked = model.recommend({"u": ["m1"]}, k=None)
    assert {"n1", "n2"} <= set(ranked["u"])
    # saved and loaded with the new items
    model.save_pretrained(tmp_path / "m")
    loaded = UserEncoder.from_pretrained(tmp_path / "m").eval()
    assert loaded.vocabs.items.tokens == model.vocabs.items.tokens
    torch.testing.assert_close(loaded.embeddings.item_vectors(), vectors)
    # adding the same table again adds nothing
    again = loaded.add_items(_new_items(), cache_dir=tmp_path / "cache")
    assert (again.added, again.known, again.without_text) == (0, 3, 1)


def test_an_added_item_moves_the_embedding_of_a_user_who_has_it(tiny_text_model, tmp_path):
    model = text_encoder(tiny_text_model)
    oov = model.embed({"u": ["m1", "n1"]}).to_numpy()
    model.add_items(_new_items(), cache_dir=tmp_path / "cache")
    read = model.embed({"u": ["m1", "n1"]})
    assert read.stats["oov_items"] == 0
    assert not np.allclose(read.to_numpy(), oov)


def test_recommend_candidates_ranks_only_the_given_items(tiny_text_model, tmp_path):
    model = text_encoder(tiny_text_model)
    model.add_items(_new_items(), cache_dir=tmp_path / "cache")
    full = model.recommend({"u": ["m1", "m2"]}, k=None, exclude_seen=True)
    only = model.recommend({"u": ["m1", "m2"]}, k=None, candidates=["n2", "m2", "n1", "m3"])
    assert only.k == 4
    ranked = [i for i in only["u"]]
    assert ranked == [i for i in full["u"] if i in {"n2", "n1", "m3"}]  # same order, m2 seen
    assert list(only.item_ids[0]).count(None) == 1
    # scores are the full ranking's scores of those items
    full_scores = dict(zip(full.item_ids[0], full.scores[0]))
    for item, score in zip(only.item_ids[0], only.scores[0]):
        if item is not None:
            assert score == pytest.approx(full_scores[item])
    with pytest.raises(DataError, match="not in the model's vocabulary.*add_items"):
        model.recommend({"u": ["m1"]}, candidates=["n1", "zzz"])
    with pytest.raises(ConfigError, match="empty"):
        model.recommend({"u": ["m1"]}, candidates=[])
    with pytest.raises(ConfigError, match="collection of item ids"):
        model.recommend({"u": ["m1"]}, candidates="n1")


def test_add_items_refuses_models_without_text_and_tables_without_its_columns(
    tiny_text_model, make_tiny_text_model
):
    plain = UserEncoder.from_log(_log(), hidden_size=8, num_layers=1, num_heads=1, max_len=8)
    with pytest.raises(ConfigError, match="reads no item text"):
        plain.add_items(_new_items())
    model = text_encoder(tiny_text_model)
    with pytest.raises(SchemaError, match="category"):
        model.add_items(_new_items().drop(columns="category"))
    model.config.text_model = str(make_tiny_text_model(1))  # another model's files
    with pytest.raises(ConfigError, match="not the one this encoder was trained with"):
        model.add_items(_new_items())


def test_id_dropout_at_one_reads_unseen_items_as_the_inductive_model_does(tiny_text_model):
    dropped = text_encoder(tiny_text_model, item_id_dropout=1.0)
    inductive = text_encoder(tiny_text_model, item_ids=False)
    assert inductive.embeddings.item is None
    assert "embeddings.item.weight" not in inductive.state_dict()
    inductive.embeddings.text_proj.load_state_dict(dropped.embeddings.text_proj.state_dict())
    table = ItemTable(ids=["n1"], columns={"title": ["cartoon comedy for kids"],
                                           "category": ["comedy"]})  # fmt: skip
    for model in (dropped, inductive):
        assert model.add_items(table, cache_dir=False).added == 1
    for model in (dropped, inductive):
        model.train()  # training mode: p = 1 hides every id, the inductive model has none
    new = dropped.vocabs.items.encode(["n1"])[0][0]
    torch.testing.assert_close(
        dropped.embeddings.item_vectors()[new], inductive.embeddings.item_vectors()[new]
    )
    # and in evaluation, where ids are read, the unseen item's id row is zero: the same again
    dropped.eval(), inductive.eval()
    torch.testing.assert_close(
        dropped.embeddings.item_vectors()[new], inductive.embeddings.item_vectors()[new]
    )


def test_id_dropout_hides_a_share_of_ids_in_training_only(tiny_text_model):
    model = text_encoder(tiny_text_model, item_id_dropout=0.5)
    emb = model.embeddings
    items = torch.full((64, 8), NUM_SPECIALS)
    text_part = emb.text_proj(emb.item_text[items])  # (64, 8, D)
    model.train()
    torch.manual_seed(0)
    hidden = (emb.item_inputs(items) - text_part).abs().sum(-1) == 0  # (64, 8) id not read
    assert 0.35 < hidden.float().mean() < 0.65
    model.eval()
    assert not ((emb.item_inputs(items) - text_part).abs().sum(-1) == 0).any()


def test_text_config_fields_are_checked():
    from userfm.encoder import UserEncoderConfig

    with pytest.raises(ConfigError, match="inductive mode.*text"):
        UserEncoderConfig(num_items=10, item_ids=False)
    with pytest.raises(ConfigError, match="item_id_dropout"):
        UserEncoderConfig(num_items=10, text_dim=4, item_id_dropout=1.5)
    with pytest.raises(ConfigError, match="needs text features"):
        UserEncoderConfig(num_items=10, item_id_dropout=0.2)
    with pytest.raises(ConfigError, match="text_columns"):
        UserEncoderConfig(num_items=10, text_dim=4, text_columns="title")


def test_add_items_gives_new_items_their_categories_when_the_model_scores_with_them(
    tiny_text_model,
):
    model = text_encoder(tiny_text_model, output_features=True)
    assert model.scores_categories
    added = model.add_items(_new_items(), cache_dir=False)
    assert added.without_categories == 0
    assert model.add_items(_new_items(), cache_dir=False).added == 0  # all known now
    n1, n2 = model.vocabs.items.encode(["n1", "n2"])[0]
    comedy = model.vocabs.categories.encode(["comedy"])[0][0]
    assert model.embeddings.item_categories[n1].tolist() == [comedy, 0, 0, 0]
    # "documentary" is no category the model knows: OOV, as in an event
    assert model.embeddings.item_categories[n2, 0] == 2
    # a table without the category column: added from text alone, and said
    other = text_encoder(tiny_text_model, output_features=True)
    table = _new_items().assign(category=None).rename(columns={"category": "kind"})
    other.config.text_columns = ["title"]
    added = other.add_items(table, cache_dir=False)
    assert added.added == 2 and added.without_categories == 2
    assert other.embeddings.item_categories[-2:].abs().sum() == 0
