"""UserEncoder: round trips, padding invariance, causality, NaN safety, gradients, optimizer groups."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from userfm.data.batch import Batch
from userfm.encoder import EncoderOutput, UserEncoder, UserEncoderConfig
from userfm.errors import ConfigError

NUM_ITEMS, NUM_ACTIONS, NUM_CATEGORIES, TEXT_DIM, C = 30, 5, 9, 6, 3


def make_config(**overrides) -> UserEncoderConfig:
    kwargs = dict(
        num_items=NUM_ITEMS,
        num_actions=NUM_ACTIONS,
        num_categories=NUM_CATEGORIES,
        text_dim=TEXT_DIM,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        max_len=12,
        num_time_gap_buckets=8,
    )
    kwargs.update(overrides)
    return UserEncoderConfig(**kwargs)


def make_model(seed: int = 0, **overrides) -> UserEncoder:
    torch.manual_seed(seed)
    model = UserEncoder(make_config(**overrides))
    if model.config.text_dim:
        g = torch.Generator().manual_seed(seed + 1)
        model.set_item_text_features(torch.randn(NUM_ITEMS, TEXT_DIM, generator=g))
    return model.eval()


def random_users(lengths: list[int], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """One dict of unpadded (L,) / (L, C) feature tensors per user."""
    g = torch.Generator().manual_seed(seed)
    users = []
    for n in lengths:
        categories = torch.randint(1, NUM_CATEGORIES, (n, C), generator=g)
        categories[:, -1] = 0  # a ragged bag: the last slot is padding
        users.append(
            {
                "items": torch.randint(3, NUM_ITEMS, (n,), generator=g),
                "time_gaps": torch.randint(1, 8, (n,), generator=g),
                "hours": torch.randint(1, 25, (n,), generator=g),
                "weekdays": torch.randint(1, 8, (n,), generator=g),
                "actions": torch.randint(1, NUM_ACTIONS, (n,), generator=g),
                "categories": categories,
            }
        )
    return users


def make_batch(users: list[dict[str, torch.Tensor]], T: int | None = None) -> Batch:
    """Right-pad users to T (default: the longest) the way the collate function does."""
    T = T or max(len(u["items"]) for u in users)
    B = len(users)

    def pad(name: str, trailing: tuple[int, ...] = ()) -> torch.Tensor:
        out = torch.zeros(B, T, *trailing, dtype=torch.long)
        for b, u in enumerate(users):
            out[b, : len(u[name])] = u[name]
        return out

    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, u in enumerate(users):
        mask[b, : len(u["items"])] = True
    return Batch(
        items=pad("items"),
        mask=mask,
        time_gaps=pad("time_gaps"),
        hours=pad("hours"),
        weekdays=pad("weekdays"),
        actions=pad("actions"),
        categories=pad("categories", (C,)),
        user_ids=[f"u{b}" for b in range(B)],
    )


def test_output_shapes_and_zero_pads():
    model = make_model()
    batch = make_batch(random_users([5, 2, 7]))
    out = model(batch)
    assert isinstance(out, EncoderOutput)
    assert out.states.shape == (3, 7, 16) and out.embedding.shape == (3, 16)
    assert out.states[~batch.mask].abs().max() == 0


def test_save_and_load_give_identical_outputs(tmp_path):
    model = make_model(pooling="attention", normalize=True)
    batch = make_batch(random_users([4, 6, 1]))
    with torch.no_grad():
        expected = model(batch)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    for loader in (UserEncoder, AutoModel):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, UserEncoder)
        with torch.no_grad():
            got = loaded(batch)
        torch.testing.assert_close(got.states, expected.states, atol=0, rtol=0)
        torch.testing.assert_close(got.embedding, expected.embedding, atol=0, rtol=0)
        torch.testing.assert_close(loaded.embeddings.item_text, model.embeddings.item_text)


@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
def test_padding_does_not_change_any_user(pooling):
    model = make_model(pooling=pooling, dropout=0.0)
    lengths = [3, 7, 1, 5]
    users = random_users(lengths, seed=3)
    with torch.no_grad():
        padded = model(make_batch(users, T=10))  # longer users and 3 extra pad columns
        for b, (user, n) in enumerate(zip(users, lengths)):
            alone = model(make_batch([user]))  # T = n, no padding at all
            torch.testing.assert_close(padded.states[b, :n], alone.states[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(padded.embedding[b], alone.embedding[0], atol=1e-5, rtol=0)


def test_future_events_do_not_change_earlier_states():
    model = make_model()
    users = random_users([8, 8], seed=1)
    changed = random_users([8, 8], seed=2)
    for u, c in zip(users, changed):
        for key in c:  # same first 4 events, different last 4
            c[key][:4] = u[key][:4]
    with torch.no_grad():
        a = model(make_batch(users)).states
        b = model(make_batch(changed)).states
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)


@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
def test_short_and_mixed_lengths_give_no_nan(pooling):
    model = make_model(pooling=pooling, normalize=True)
    batch = make_batch(random_users([1, 12, 1, 4]))
    empty = make_batch(random_users([1]), T=3)
    empty.mask[:] = False  # an all-pad row: must give zeros, not NaN
    empty.items[:] = 0
    for b in (batch, empty):
        out = model(b)
        assert torch.isfinite(out.states).all() and torch.isfinite(out.embedding).all()
    torch.testing.assert_close(out.embedding.norm(), torch.tensor(0.0))
    torch.testing.assert_close(model(batch).embedding.norm(dim=-1), torch.ones(4))


def test_last_pooling_is_the_last_valid_state():
    model = make_model(pooling="last")
    batch = make_batch(random_users([3, 6]))
    out = model(batch)
    torch.testing.assert_close(out.embedding, out.states[[0, 1], [2, 5]])


def test_deterministic_under_a_seed():
    batch = make_batch(random_users([4, 6]))
    a, b = make_model(seed=7), make_model(seed=7)
    torch.testing.assert_close(a(batch).embedding, b(batch).embedding, atol=0, rtol=0)
    assert not torch.allclose(make_model(seed=8)(batch).embedding, a(batch).embedding)
    a.train()
    b.train()
    torch.manual_seed(1)
    train_a = a(batch).states
    torch.manual_seed(1)
    torch.testing.assert_close(b(batch).states, train_a, atol=0, rtol=0)  # same dropout masks


def test_gradients_reach_every_trainable_parameter():
    model = make_model(pooling="attention").train()
    batch = make_batch(random_users([5, 3, 6]))
    out = model(batch)
    g = torch.Generator().manual_seed(0)
    # random projections: a plain sum after LayerNorm would have zero gradient upstream
    loss = (out.states * torch.randn(out.states.shape, generator=g)).sum()
    loss = loss + (out.embedding * torch.randn(out.embedding.shape, generator=g)).sum()
    loss = loss + model.item_scores(out.embedding).logsumexp(-1).sum()
    loss.backward()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("text_proj" in n for n in names) and any("pool.query" in n for n in names)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not model.embeddings.item_text.requires_grad  # a buffer, never trained
    assert "embeddings.item_text" in model.state_dict()


def test_features_are_used_and_optional():
    batch = make_batch(random_users([4, 2]))
    full = make_model()
    base = full(batch).embedding
    for key in ("actions", "categories", "hours", "time_gaps"):
        other = make_batch(random_users([4, 2]))
        setattr(other, key, getattr(make_batch(random_users([4, 2], seed=9)), key))
        assert not torch.allclose(full(other).embedding, base), key
    full.set_item_text_features(torch.zeros(NUM_ITEMS, TEXT_DIM))
    assert not torch.allclose(full(batch).embedding, base)
    plain = make_model(num_actions=0, num_categories=0, text_dim=0, use_time=False)
    bare = Batch(items=batch.items, mask=batch.mask, time_gaps=batch.time_gaps,
                 hours=batch.hours, weekdays=batch.weekdays)  # fmt: skip
    assert plain(bare).embedding.shape == (2, 16)
    names = {n for n, _ in plain.named_parameters()}
    assert not any(k in n for n in names for k in ("action", "category", "text", "hour"))


def test_missing_batch_feature_raises():
    model = make_model()
    batch = make_batch(random_users([3]))
    batch.actions = None
    with pytest.raises(ConfigError, match="`num_actions`"):
        model(batch)


def test_history_longer_than_max_len_raises():
    model = make_model(max_len=4)
    with pytest.raises(ConfigError, match="`max_len`=4"):
        model(make_batch(random_users([5])))


def test_set_item_text_features_checks_shape():
    model = make_model()
    with pytest.raises(ConfigError, match="shape"):
        model.set_item_text_features(torch.zeros(NUM_ITEMS, TEXT_DIM + 1))
    with pytest.raises(ConfigError, match="`text_dim` is 0"):
        make_model(text_dim=0).set_item_text_features(torch.zeros(NUM_ITEMS, 1))


def test_item_scores_use_the_tied_item_embedding():
    model = make_model(text_dim=0)
    out = model(make_batch(random_users([3, 2])))
    scores = model.item_scores(out.states)
    assert scores.shape == (2, 3, NUM_ITEMS)
    torch.testing.assert_close(scores, out.states @ model.embeddings.item.weight.T)
    assert model.embeddings.item_vectors() is model.embeddings.item.weight  # the table itself


def test_an_items_output_vector_reads_its_text_as_its_input_token_does():
    # issue 33: input and output item vectors come from one item representation
    model = make_model()
    emb = model.embeddings
    expected = emb.item.weight + emb.text_proj(emb.item_text)  # (V, D)
    torch.testing.assert_close(emb.item_vectors(), expected)
    items = torch.arange(NUM_ITEMS)[None]  # (1, V)
    torch.testing.assert_close(emb.item_inputs(items)[0], expected)


def test_output_features_add_each_items_categories_and_text_to_its_output_vector(tmp_path):
    model = make_model(output_features=True)
    g = torch.Generator().manual_seed(5)
    table = torch.randint(0, NUM_CATEGORIES, (NUM_ITEMS, 4), generator=g)
    model.set_item_categories(table)
    emb = model.embeddings
    expected = emb.item.weight + emb.category(table).sum(1) + emb.text_proj(emb.item_text)
    torch.testing.assert_close(emb.item_vectors(), expected)
    out = model(make_batch(random_users([3, 2])))
    torch.testing.assert_close(model.item_scores(out.states), out.states @ expected.T)
    # the table is saved with the weights
    model.save_pretrained(tmp_path)
    assert (
        "id embedding plus their category and text features" in (tmp_path / "README.md").read_text()
    )
    loaded = UserEncoder.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.embeddings.item_categories, table)
    torch.testing.assert_close(loaded.embeddings.item_vectors(), emb.item_vectors())
    # off (the default): the id embedding and its text (no categories), and no table to set
    plain = make_model()
    e = plain.embeddings
    torch.testing.assert_close(e.item_vectors(), e.item.weight + e.text_proj(e.item_text))
    with pytest.raises(ConfigError, match="output_features=True"):
        plain.set_item_categories(table)


def test_set_item_categories_checks_shape_and_indices():
    model = make_model(output_features=True)
    with pytest.raises(ConfigError, match="shape"):
        model.set_item_categories(torch.zeros(NUM_ITEMS, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="indices"):
        model.set_item_categories(torch.full((NUM_ITEMS, 4), NUM_CATEGORIES))
    with pytest.raises(ConfigError, match="output_features"):
        UserEncoderConfig(num_items=NUM_ITEMS, output_features="yes")


def test_weight_init():
    model = make_model(seed=0, hidden_size=64, num_heads=4, initializer_range=0.05)
    assert model.embeddings.item.weight[0].abs().max() == 0  # padding row
    assert model.embeddings.hour.weight[0].abs().max() == 0
    qkv = model.blocks[0].attn.qkv
    assert abs(qkv.weight.std().item() - 0.05) < 0.005
    assert qkv.bias.abs().max() == 0
    assert torch.equal(model.ln_f.weight, torch.ones(64)) and model.ln_f.bias.abs().max() == 0
    assert model.embeddings.item_text.abs().sum() > 0  # set by make_model, not re-initialised


def test_optimizer_groups():
    model = make_model(pooling="attention")
    decay, no_decay = model.optimizer_groups(weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    decayed = {id(p) for p in decay["params"]}
    by_name = dict(model.named_parameters())
    for name, p in by_name.items():
        is_matrix = p.dim() == 2 and "embeddings." in name and "text_proj" not in name
        if is_matrix or p.dim() < 2:
            assert id(p) not in decayed, name  # embeddings, biases, LayerNorm, pool query
    for name in (
        "blocks.0.attn.qkv.weight",
        "blocks.1.mlp.fc.weight",
        "embeddings.text_proj.weight",
    ):
        assert id(by_name[name]) in decayed, name
    torch.optim.AdamW(model.optimizer_groups(0.1), lr=1e-3)  # accepted as is


def test_xformers_backend_on_cpu_raises():
    model = make_model(attn_backend="xformers")
    with pytest.raises(ConfigError, match="needs CUDA and the `xformers` extra"):
        model(make_batch(random_users([2])))


def test_auto_backend_on_cpu_matches_sdpa():
    batch = make_batch(random_users([3, 5]))
    auto, sdpa = make_model(attn_backend="auto"), make_model(attn_backend="sdpa")
    torch.testing.assert_close(auto(batch).states, sdpa(batch).states, atol=0, rtol=0)


@pytest.mark.parametrize("normalize", [False, True])
def test_embedding_only_path_matches_the_full_forward(normalize):
    """return_states=False (the embedding API's path) gives the same embeddings, empty rows too."""
    model = make_model(normalize=normalize)
    batch = make_batch(random_users([1, 5, 12, 3]), T=12)
    batch.mask[3] = False  # an empty history
    full = model(batch).embedding
    fast = model(batch, return_states=False)
    assert fast.states is None
    torch.testing.assert_close(fast.embedding, full, atol=1e-5, rtol=1e-5)
    assert fast.embedding[3].abs().max() == 0
