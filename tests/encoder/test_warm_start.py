"""warm_start: a pretrained encoder's weights in an encoder built for another log (issue 33 §2,
a new catalogue): whole weights copied, vocabulary-indexed rows moved by token."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from userfm.data.items import items_from_log
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.encoder import UserEncoder
from userfm.encoder.warm_start import warm_start
from userfm.errors import ConfigError

SCHEMA = EventSchema(category="category", title="title", action="action")


def _log(items: list[tuple[str, str, str]], actions: list[str]):
    """Users reading ``items`` (id, title, category) in turn; category / action frequencies
    differ between calls, so the vocabularies' orders differ too."""
    rows = []
    for u in range(4):
        for t in range(5):
            item, title, category = items[(u + t) % len(items)]
            rows.append({"user": f"u{u}", "item": item, "timestamp": 1_600_000_000 + 60 * t,
                         "title": title, "category": category, "action": actions[t % len(actions)]})  # fmt: skip
    return read_events(pd.DataFrame(rows), SCHEMA)


A = [("a1", "space war", "action"), ("a2", "toy story", "comedy"), ("a3", "love", "romance"),
     ("a4", "space day", "action")]  # fmt: skip
B = [("b1", "funny kids", "comedy"), ("b2", "crime night", "crime"), ("b3", "war", "action")]


def encoder(log, text_model, seed: int, **config) -> UserEncoder:
    config = {"hidden_size": 8, "num_layers": 1, "num_heads": 1, "max_len": 8, **config}
    return UserEncoder.from_log(
        log, seed=seed, items=items_from_log(log), item_text=["title", "category"],
        text_model=text_model, text_cache_dir=False, **config,
    )  # fmt: skip


def test_a_new_catalogue_gets_every_learnt_weight_and_the_shared_tokens_rows(tiny_text_model):
    src = encoder(_log(A, ["view", "buy"]), tiny_text_model, seed=0, item_ids=False)
    dst = encoder(_log(B, ["buy", "view", "view"]), tiny_text_model, seed=1, item_ids=False)
    text_before = dst.embeddings.item_text.clone()
    done = warm_start(dst, src)
    assert done.rows["categories"] == (2, len(dst.vocabs.categories))  # comedy, action
    assert done.rows["actions"] == (2, len(dst.vocabs.actions))
    for name in ("comedy", "action"):
        i = dst.vocabs.categories.encode([name])[0][0]
        j = src.vocabs.categories.encode([name])[0][0]
        assert i != j or name == "action"  # the orders differ
        assert torch.equal(dst.embeddings.category.weight[i], src.embeddings.category.weight[j])
    crime = dst.vocabs.categories.encode(["crime"])[0][0]
    assert not torch.equal(dst.embeddings.category.weight[crime], torch.zeros(8))  # fresh init
    for name, weight in src.state_dict().items():
        if name.startswith(("blocks.", "ln_f.", "embeddings.text_proj", "embeddings.position")):
            assert torch.equal(dst.state_dict()[name], weight), name
    assert torch.equal(dst.embeddings.item_text, text_before)  # the new log's data


def test_item_rows_follow_their_tokens_when_catalogues_overlap(tiny_text_model):
    src = encoder(_log(A, ["view"]), tiny_text_model, seed=0)
    dst = encoder(_log(A[2:] + B, ["view"]), tiny_text_model, seed=1)
    done = warm_start(dst, src)
    assert done.rows["items"][0] == 2  # a3, a4
    i, j = dst.vocabs.items.encode(["a4"])[0][0], src.vocabs.items.encode(["a4"])[0][0]
    assert torch.equal(dst.embeddings.item.weight[i], src.embeddings.item.weight[j])


def test_another_architecture_or_text_model_is_refused(tiny_text_model, make_tiny_text_model):
    src = encoder(_log(A, ["view"]), tiny_text_model, seed=0)
    with pytest.raises(ConfigError, match="num_layers: 1 -> 2"):
        warm_start(encoder(_log(B, ["view"]), tiny_text_model, seed=1, num_layers=2), src)
    other = encoder(_log(B, ["view"]), make_tiny_text_model(1), seed=1)
    with pytest.raises(ConfigError, match="another model"):
        warm_start(other, src)


def test_a_text_only_encoder_can_be_fine_tuned_with_an_id_table_added(tiny_text_model):
    """Transfer to a new catalogue, then ids of its own: the id table starts fresh, every
    other weight is copied; the reverse (dropping a learnt id table) is refused."""
    src = encoder(_log(A, ["view"]), tiny_text_model, seed=0, item_ids=False)
    dst = encoder(_log(B, ["view"]), tiny_text_model, seed=1)  # item ids on
    fresh = dst.embeddings.item.weight.clone()
    done = warm_start(dst, src)
    assert done.rows["items"] == (0, len(dst.vocabs.items))
    assert torch.equal(dst.embeddings.item.weight, fresh)
    for name, weight in src.state_dict().items():
        if name.startswith(("blocks.", "embeddings.text_proj")):
            assert torch.equal(dst.state_dict()[name], weight), name
    with pytest.raises(ConfigError, match="its id table would be lost"):
        warm_start(encoder(_log(B, ["view"]), tiny_text_model, seed=1, item_ids=False), dst)
