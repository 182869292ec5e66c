"""Pretraining with items described by text (issue 33 §1): `data.items`, ID dropout, the
inductive mode; the exported model carries its text vectors and needs no text model to load."""

from __future__ import annotations

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from userfm import UserEncoder
from userfm.data.items import items_from_log
from userfm.data.vocab import NUM_SPECIALS
from userfm.encoder.item_vectors import encode_items
from userfm.errors import ConfigError, SchemaError
from userfm.pretrain.data import EventDataModule
from userfm.pretrain.export import export_checkpoint
from userfm.pretrain.module import PretrainModule

SYNTHETIC = {"num_users": 60, "num_items": 40, "seed": 1}


def text_data(text_model, tmp_path, **kwargs) -> EventDataModule:
    return EventDataModule(
        synthetic=SYNTHETIC,
        max_len=10,
        batch_size=16,
        items="auto",
        text_model=str(text_model),
        text_cache_dir=str(tmp_path / "cache"),
        **kwargs,
    )


class KeepTextProjection(L.Callback):
    """Keeps the text projection's weights as training starts."""

    def on_train_start(self, trainer, module):
        self.start = module.encoder.embeddings.text_proj.weight.detach().clone()


def fit(dm, tmp_path, steps: int = 2, callbacks=(), **encoder):
    L.seed_everything(0)
    module = PretrainModule(
        encoder=dict(hidden_size=16, num_heads=2, num_layers=1, **encoder), lr=5e-3, warmup_steps=1
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        val_check_interval=steps,
        check_val_every_n_epoch=None,
        callbacks=list(callbacks),
    )
    trainer.fit(module, dm)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    return module


def test_items_auto_gives_each_item_its_text_vector_and_the_export_keeps_them(
    tiny_text_model, tmp_path, monkeypatch
):
    dm = text_data(tiny_text_model, tmp_path, item_text=["title", "category"])
    module = fit(dm, tmp_path, item_id_dropout=0.3)
    enc = module.encoder
    assert enc.config.text_columns == ["title", "category"]
    assert enc.config.text_dim == 16 and enc.config.item_id_dropout == 0.3
    assert dm.stats["items_without_text"] == 0
    # row i is the text vector of item index i, made from the log's titles and categories
    tokens = dm.vocabs.items.tokens
    expected = encode_items(
        items_from_log(dm.log_), ["title", "category"], ids=tokens, text_model=tiny_text_model,
        cache_dir=False,
    ).vectors  # fmt: skip
    np.testing.assert_allclose(
        enc.embeddings.item_text[NUM_SPECIALS:].numpy(), expected, rtol=1e-5, atol=1e-6
    )
    assert enc.embeddings.item_text[:NUM_SPECIALS].abs().sum() == 0
    # exported and loaded bit-exact, without the text model
    out = export_checkpoint(tmp_path / "last.ckpt", tmp_path / "model")
    import userfm.encoder.text_model as tm

    fingerprint = tm.text_model_info(tiny_text_model).fingerprint
    monkeypatch.setattr(tm, "resolve_text_model", lambda *a: pytest.fail("text model loaded"))
    loaded = UserEncoder.from_pretrained(out)
    assert torch.equal(loaded.embeddings.item_text, enc.embeddings.item_text)
    assert loaded.config.text_model == str(tiny_text_model)
    assert loaded.config.text_model_fingerprint == fingerprint


def test_inductive_mode_trains_without_an_item_id_table(tiny_text_model, tmp_path):
    dm = text_data(tiny_text_model, tmp_path)
    kept = KeepTextProjection()
    module = fit(dm, tmp_path, callbacks=[kept], item_ids=False)
    assert module.encoder.embeddings.item is None
    assert not any("embeddings.item.weight" in k for k in module.state_dict())
    # the text projection is what represents items, and it learns
    assert not torch.equal(module.encoder.embeddings.text_proj.weight, kept.start)


def test_an_items_file_is_read_with_its_id_column_and_missing_text_is_counted(
    tiny_text_model, tmp_path
):
    dm = text_data(tiny_text_model, tmp_path)
    dm.setup()
    tokens = dm.vocabs.items.tokens
    table = pd.DataFrame(
        {"movie": tokens[:-3], "blurb": [f"the story of {t}" for t in tokens[:-3]]}
    )
    table.to_csv(tmp_path / "items.csv", index=False)
    dm2 = EventDataModule(
        synthetic=SYNTHETIC, max_len=10, items=str(tmp_path / "items.csv"),
        item_id_column="movie", text_model=str(tiny_text_model),
        text_cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    dm2.setup()
    assert dm2.stats["items_without_text"] == 3
    vectors = dm2.item_text.vectors
    missing = dm2.vocabs.items.encode(tokens[-3:])[0]
    assert vectors[missing].abs().sum() == 0 and vectors[NUM_SPECIALS].abs().sum() > 0
    bad = EventDataModule(
        synthetic=SYNTHETIC, max_len=10, items=str(tmp_path / "items.csv"),
        item_id_column="movie", item_text=["title"], text_model=str(tiny_text_model),
    )  # fmt: skip
    with pytest.raises(SchemaError, match="title"):
        bad.setup()


def test_sparse_item_rows_are_refused_with_text(tiny_text_model, tmp_path):
    dm = text_data(tiny_text_model, tmp_path)
    with pytest.raises(ConfigError, match="sparse_items"):
        L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False).fit(
            PretrainModule(
                encoder=dict(hidden_size=16, num_heads=2), loss="sampled", sparse_items=True
            ),  # fmt: skip
            dm,
        )


class KeepBlocks(L.Callback):
    """Keeps the first block's attention weights as training starts."""

    def on_train_start(self, trainer, module):
        self.start = module.encoder.blocks[0].attn.qkv.weight.detach().clone()
        self.config = module.encoder.config


def test_init_from_fine_tunes_a_pretrained_encoder_on_another_catalogue(tiny_text_model, tmp_path):
    fit(text_data(tiny_text_model, tmp_path), tmp_path, item_ids=False, dropout=0.3)
    pretrained = export_checkpoint(tmp_path / "last.ckpt", tmp_path / "pretrained")
    source = UserEncoder.from_pretrained(pretrained)
    other = EventDataModule(
        synthetic={**SYNTHETIC, "seed": 7, "num_items": 30}, max_len=10, batch_size=16,
        items="auto", text_model=str(tiny_text_model), text_cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    L.seed_everything(0)
    kept = KeepBlocks()
    module = PretrainModule(init_from=str(pretrained), encoder={"dropout": 0.0}, lr=1e-3)
    L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
              callbacks=[kept]).fit(module, other)  # fmt: skip
    assert torch.equal(kept.start, source.blocks[0].attn.qkv.weight)  # the pretrained weights
    assert kept.config.item_ids is False and kept.config.hidden_size == 16  # its architecture
    assert kept.config.dropout == 0.0  # a setting given here wins
    assert module.encoder.vocabs.items.tokens != source.vocabs.items.tokens  # its own catalogue
