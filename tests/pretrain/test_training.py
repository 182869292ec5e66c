"""Pretraining end to end on a tiny synthetic log: fit, checkpoint, export, embed, plot."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from userfm import UserEncoder
from userfm.data.vocab import NUM_SPECIALS
from userfm.encoder import UserEncoderConfig
from userfm.errors import ConfigError
from userfm.pretrain import module as module_lib
from userfm.pretrain.data import EventDataModule
from userfm.pretrain.export import export_checkpoint
from userfm.pretrain.lazy_adamw import LazyAdamW
from userfm.pretrain.module import PretrainModule
from userfm.pretrain.objectives import full_softmax_loss
from userfm.pretrain.plot import plot_run

TINY_DATA = dict(
    synthetic={"num_users": 120, "num_items": 80, "seed": 1}, max_len=12, batch_size=16
)
TINY_MODEL = dict(encoder=dict(hidden_size=16, num_heads=2, dropout=0.0), lr=5e-3, warmup_steps=2)


def fit(tmp_path, steps: int, val_every: int | None = None, **model_kwargs):
    L.seed_everything(0)
    dm = EventDataModule(**TINY_DATA)
    module = PretrainModule(**{**TINY_MODEL, **model_kwargs})
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=CSVLogger(tmp_path, name="run"),
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=steps, save_last=True)
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        val_check_interval=val_every or steps,
        check_val_every_n_epoch=None,
    )
    trainer.fit(module, dm)
    return trainer, module, dm


def fixed_batch_loss(module: PretrainModule, dm: EventDataModule) -> float:
    batch = next(iter(dm.train_dataloader()))
    module.eval()
    with torch.no_grad():
        out = module.encoder(batch.batch)
        valid = batch.targets > 0
        return module._next_item_losses(out.states[valid], batch.targets[valid]).mean().item()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": "full"},
        {"loss": "sampled", "num_negatives": 32, "dro": "bucket"},
        {"loss": "bce", "contrastive_weight": 0.5, "dro": "action"},
        {"loss": "full", "future_window": 3, "dro": "bucket"},
        {"loss": "sampled", "num_negatives": 32, "sparse_items": True},
    ],
    ids=["full", "sampled+dro", "bce+contrastive+dro-action", "future-window+dro", "sparse"],
)
def test_training_lowers_the_next_item_loss(tmp_path, kwargs):
    trainer, module, dm = fit(tmp_path, steps=1, **kwargs)
    if kwargs.get("sparse_items"):  # the item table's gradient holds the rows read, no more
        assert isinstance(trainer.optimizers[0], LazyAdamW)
        batch = next(iter(dm.train_dataloader()))
        module.train()
        valid = batch.targets > 0
        states = module.encoder(batch.batch).states[valid]
        module._next_item_losses(states, batch.targets[valid]).mean().backward()
        grad = module.encoder.embeddings.item.weight.grad
        assert grad.is_sparse and grad.coalesce().indices().shape[1] < len(dm.vocabs.items)
    before = fixed_batch_loss(module, dm)
    trainer, module, dm = fit(tmp_path / "long", steps=40, **kwargs)
    after = fixed_batch_loss(module, dm)
    assert after < before - 0.2, (before, after)
    assert "valid/ndcg@10" in trainer.callback_metrics


def test_export_writes_a_loadable_encoder_with_a_filled_card(tmp_path):
    trainer, module, dm = fit(tmp_path, steps=12, val_every=6, dro="bucket")
    out = export_checkpoint(tmp_path / "ckpt" / "last.ckpt", tmp_path / "encoder")
    model = UserEncoder.from_pretrained(out)
    torch.testing.assert_close(
        model.embeddings.item.weight, module.encoder.embeddings.item.weight, rtol=0, atol=0
    )
    card = (out / "README.md").read_text()
    assert "valid/ndcg@10 (leave-one-out valid split" in card and "at step 6" in card
    assert "train_users" in card and "training steps | 12" in card
    emb = model.embed(dm.log_, progress=False)
    assert len(emb) == dm.log_.num_users
    png = plot_run(tmp_path / "run")
    assert png.stat().st_size > 1000


def test_dro_weights_are_logged_per_bucket(tmp_path):
    trainer, module, _ = fit(tmp_path, steps=3, dro="bucket", dro_buckets=3)
    assert {f"dro/weight_bucket_{c}" for c in range(3)} <= set(trainer.callback_metrics)
    # default buckets: equal item counts (as evaluation's macro recall), head = most popular
    real = module.item_bucket[NUM_SPECIALS:]
    sizes = torch.bincount(real, minlength=3)
    assert int(sizes.max() - sizes.min()) <= 1
    counts = module.item_counts[NUM_SPECIALS:]
    assert counts[real == 0].min() >= counts[real == 2].max()


def test_output_features_train_with_the_logs_item_categories_and_export_them(tmp_path):
    encoder = {**TINY_MODEL["encoder"], "output_features": True}
    trainer, module, dm = fit(tmp_path, steps=3, encoder=encoder)
    encoder = module.encoder
    table = encoder.featurizer().item_category_table(dm.log_)
    assert (table[NUM_SPECIALS:] > 0).any(axis=1).all()  # every synthetic item has a category
    torch.testing.assert_close(encoder.embeddings.item_categories, torch.from_numpy(table))
    # the category embeddings are in the output layer: the next-item loss alone trains them
    encoder.zero_grad()
    h = torch.randn(4, encoder.config.hidden_size)
    module._next_item_losses(h, torch.tensor([3, 4, 5, 6])).sum().backward()
    assert encoder.embeddings.category.weight.grad.abs().sum() > 0
    export_checkpoint(tmp_path / "ckpt" / "last.ckpt", tmp_path / "out")
    loaded = UserEncoder.from_pretrained(tmp_path / "out")
    assert loaded.config.output_features
    torch.testing.assert_close(loaded.embeddings.item_vectors(), encoder.embeddings.item_vectors())


def test_bad_hyperparameters_name_the_field():
    with pytest.raises(ConfigError, match="loss"):
        PretrainModule(loss="hinge")
    with pytest.raises(ConfigError, match="dro"):
        PretrainModule(dro="user")
    with pytest.raises(ConfigError, match="dro_bucket_by"):
        PretrainModule(dro="bucket", dro_bucket_by="events")
    with pytest.raises(ConfigError, match="dro_losses_from"):
        PretrainModule(dro="bucket", dro_losses_from="test")
    with pytest.raises(ConfigError, match="dro_apply"):
        PretrainModule(dro="bucket", dro_apply="margins")
    logits = dict(dro="bucket", dro_apply="logits", dro_losses_from="valid")
    for bad in ({"dro_losses_from": "train"}, {"loss": "bce"}, {"dro": "action"}):
        with pytest.raises(ConfigError, match="dro_apply: logits"):
            PretrainModule(**{**logits, **bad})
    with pytest.raises(ConfigError, match="future_window"):
        PretrainModule(future_window=0)
    with pytest.raises(ConfigError, match="num_heads"):  # the encoder's fields checked now
        PretrainModule(encoder={"hidden_size": 16, "num_heads": 3})
    with pytest.raises(ConfigError, match="come from the data"):
        PretrainModule(encoder={"max_len": 50})
    with pytest.raises(
        ConfigError, match="no field.*'hiden_size' -> 'hidden_size'"
    ):  # a typo was kept, unused
        PretrainModule(encoder={"hiden_size": 128})
    with pytest.raises(ConfigError, match="future_window"):
        PretrainModule(future_window=2, loss="bce")
    with pytest.raises(ConfigError, match="mask_seen"):
        PretrainModule(mask_seen=True, loss="sampled")
    with pytest.raises(ConfigError, match="chunk_size"):
        PretrainModule(chunk_size=64, loss="sampled")
    with pytest.raises(ConfigError, match="chunk_size"):
        PretrainModule(chunk_size=0)
    with pytest.raises(ConfigError, match="chunk_size"):
        PretrainModule(chunk_size="big")
    with pytest.raises(ConfigError, match="sparse_items"):
        PretrainModule(sparse_items=True)  # the full softmax reads every row
    with pytest.raises(ConfigError, match="output_features"):
        PretrainModule(sparse_items=True, loss="sampled", encoder={"output_features": True})


@pytest.mark.parametrize("source", ["train", "valid"])
def test_dro_class_losses_come_from_the_chosen_split(tmp_path, source):
    """``dro_losses_from``: with ``item`` classes, the classes whose loss is known are targets
    of the split the losses come from (valid: all of them, after validation at steps 3, 6)."""
    _, module, dm = fit(tmp_path, steps=6, val_every=3, dro="item", dro_losses_from=source)

    def targets_of(split: str) -> set[int]:
        return {int(t) for ex in dm.datasets[split].examples for t in ex.targets if t > 0}

    seen = set(module.dro_weighting.seen.nonzero()[:, 0].tolist())
    if source == "valid":
        assert seen == targets_of("valid")
    else:
        assert seen <= targets_of("train") and seen != targets_of("valid")


def test_dro_logits_train_the_plain_mean_under_minus_log_ratio_offsets(tmp_path, monkeypatch):
    """``dro_apply="logits"``: a training step's loss is the plain mean of the full softmax with
    every item's logit offset by -log(w_c / p_c) of its bucket; evaluation uses raw logits."""
    kw = dict(dro="bucket", dro_buckets=3, dro_losses_from="valid", dro_apply="logits")
    _, module, dm = fit(tmp_path, steps=2, val_every=2, **kw)
    dro = module.dro_weighting
    dro.class_loss.copy_(torch.tensor([1.0, 2.0, 4.0]))  # tail hardest on held-out data
    dro.seen.fill_(True)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)  # outside a Trainer loop
    batch = next(iter(dm.train_dataloader()))
    module.train()
    torch.manual_seed(0)
    loss = module._step(batch, "train")
    offset = -dro.log_ratio[module.item_bucket]  # (V,)
    assert offset[module.item_bucket == 2].max() < 0 < offset[module.item_bucket == 0].min()
    torch.manual_seed(0)  # same dropout
    out = module.encoder(batch.batch)
    valid = batch.targets > 0
    item_emb = module.encoder.embeddings.item_vectors()
    expected = full_softmax_loss(out.states[valid], item_emb, batch.targets[valid], None, offset)
    torch.testing.assert_close(loss, expected.mean())
    module.eval()
    assert module._logit_offset() is None


def test_dro_losses_from_valid_needs_the_validation_loop():
    dm = EventDataModule(**TINY_DATA)
    module = PretrainModule(**TINY_MODEL, dro="bucket", dro_losses_from="valid")
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False, enable_progress_bar=False
    )
    with pytest.raises(ConfigError, match="dro_losses_from"):
        trainer.fit(module, dm)


def test_export_rejects_a_foreign_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "x.ckpt")
    with pytest.raises(Exception, match="not a userfm pretraining checkpoint"):
        export_checkpoint(tmp_path / "x.ckpt", tmp_path / "out")


class Planted:
    """Unpickling this would run code; weights_only must refuse it unread."""

    def __reduce__(self):
        return (print, ("planted code ran",))


def test_export_refuses_truncated_and_planted_checkpoints_with_one_line(tmp_path, capsys):
    from userfm.cli import main
    from userfm.errors import FileFormatError

    torch.save({"state_dict": {"w": torch.zeros(1000)}}, tmp_path / "full.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "full.ckpt").read_bytes()[:300])
    with pytest.raises(FileFormatError, match="cut.ckpt is not a readable checkpoint"):
        export_checkpoint(tmp_path / "cut.ckpt", tmp_path / "out")
    torch.save({"userfm": Planted()}, tmp_path / "planted.ckpt")
    with pytest.raises(FileFormatError, match="planted.ckpt holds objects other than tensors"):
        export_checkpoint(tmp_path / "planted.ckpt", tmp_path / "out")
    assert "planted code ran" not in capsys.readouterr().out
    assert main(["pretrain", "export", str(tmp_path / "cut.ckpt"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a readable checkpoint" in err and err.strip().count("\n") == 0


def test_item_counts_cover_the_training_split_only():
    dm = EventDataModule(**TINY_DATA)
    dm.setup()
    expected = sum(max(n - 2, 0) for n in dm.log_.lengths)
    assert dm.item_counts.sum().item() == expected < len(dm.log_)
    assert dm.item_counts[:3].sum() == 0


def test_the_optimizer_covers_every_trainable_parameter_once(tmp_path):
    trainer, module, _ = fit(tmp_path, steps=2, contrastive_weight=0.5, dro="bucket")
    in_optimizer = [id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]]
    assert len(in_optimizer) == len(set(in_optimizer))
    assert set(in_optimizer) == {id(p) for p in module.parameters() if p.requires_grad}
    assert module.contrastive_head is not None


def test_future_window_trains_each_position_on_the_next_items(tmp_path, monkeypatch):
    """With ``future_window=3`` a training step has one example per (position, item among
    the next 3) pair, and DRO sees the class of each pair's item."""
    _, module, dm = fit(tmp_path, steps=1, future_window=3, dro="bucket")
    seen: dict[str, torch.Tensor] = {}
    inner = module._next_item_losses
    monkeypatch.setattr(
        module, "_next_item_losses", lambda h, t, *a, **k: seen.update(t=t) or inner(h, t, *a, **k)
    )
    dro = module.dro_weighting
    monkeypatch.setattr(dro, "forward", lambda losses, classes, **_: seen.update(c=classes) or 0.0)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)  # outside a Trainer loop
    batch = next(iter(dm.train_dataloader()))
    module.train()
    module._step(batch, "train")
    valid = batch.targets > 0
    window = seen["t"]
    assert window.shape == (int(valid.sum()), 3)
    assert torch.equal(window[:, 0], batch.targets[valid])
    row, pos = valid.nonzero()[0].tolist()
    assert window[0, 1] == batch.targets[row, pos + 1]
    filled = window > 0
    assert torch.equal(seen["c"], module.item_bucket[window[filled]])
    assert filled.sum() > valid.sum()  # more examples than positions
    module.eval()
    module._step(batch, "valid")  # evaluation keeps the single next item
    assert seen["t"].dim() == 1


def test_mask_seen_leaves_each_positions_history_out_of_its_softmax(tmp_path, monkeypatch):
    """With ``mask_seen`` the training softmax of a position drops the items at or before it
    (evaluation filters them); validation uses the same softmax."""
    _, module, dm = fit(tmp_path, steps=1, mask_seen=True, future_window=2)
    got: dict[str, torch.Tensor] = {}
    real = module_lib.next_item_loss
    monkeypatch.setattr(
        module_lib,
        "next_item_loss",
        lambda h, e, t, **kw: got.update(exclude=kw["exclude"]) or real(h, e, t, **kw),
    )
    monkeypatch.setattr(module, "log", lambda *a, **k: None)  # outside a Trainer loop
    batch = next(iter(dm.train_dataloader()))
    module.train()
    loss = module._step(batch, "train")
    valid = batch.targets > 0
    exclude = got["exclude"]
    assert exclude.shape == (int(valid.sum()), batch.batch.items.shape[1])
    row, pos = valid.nonzero()[-1].tolist()  # the last example: its row's whole history
    assert exclude[-1, : pos + 1].tolist() == batch.batch.items[row, : pos + 1].tolist()
    assert (exclude[-1, pos + 1 :] == 0).all()
    assert torch.isfinite(loss)
    module.eval()
    module._step(batch, "valid")
    assert got["exclude"].shape[0] == int(valid.sum())


def test_a_chunked_softmax_gives_the_training_step_the_same_gradients(tmp_path, monkeypatch):
    """Issue 20: `chunk_size` changes the memory a training step needs, not its loss or
    gradients (future window and seen items masked: every path of the full softmax)."""
    _, module, dm = fit(tmp_path, steps=1, future_window=2, mask_seen=True)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)  # outside a Trainer loop
    batch = next(iter(dm.train_dataloader()))
    module.train()
    results = []
    for chunk in (None, 37):
        module.hparams.chunk_size = chunk
        module.zero_grad()
        loss = module._step(batch, "train")
        loss.backward()
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and "encoder.embeddings.item.weight" in grads_a
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_auto_chunks_the_full_softmax_once_its_logits_pass_the_budget(monkeypatch):
    """Issue 20 §1: the default follows the measurement: one block while a step's logits fit
    in LOGITS_BUDGET (faster there), blocks of AUTO_CHUNK items past it (7.9 -> 1.6 GiB at
    10^5 items, same speed); an explicit size or None is kept."""
    module = PretrainModule()
    assert module.hparams.chunk_size == "auto"
    fits = module_lib.LOGITS_BUDGET // 4 // 6400  # items whose 6,400-row logits fit
    assert module._chunk(6400, fits) is None
    assert module._chunk(6400, 100_003) == module_lib.AUTO_CHUNK
    assert PretrainModule(chunk_size=None)._chunk(6400, 10**6) is None
    assert PretrainModule(chunk_size=512)._chunk(10, 100) == 512
    seen = []
    full = module_lib.next_item_loss
    monkeypatch.setattr(module_lib, "LOGITS_BUDGET", 4 * 5 * 53)  # 5 rows of 53 items fit
    monkeypatch.setattr(
        module_lib, "next_item_loss", lambda *a, **k: seen.append(k["chunk_size"]) or full(*a, **k)
    )
    module.encoder = UserEncoder(UserEncoderConfig(num_items=53, hidden_size=8, num_heads=2))
    module.item_counts = torch.ones(53)
    h = torch.randn(6, 8)
    module._next_item_losses(h[:5], torch.full((5,), 4))
    module._next_item_losses(h, torch.full((6,), 4))
    assert seen == [None, module_lib.AUTO_CHUNK]


def test_a_full_softmax_over_a_large_catalogue_points_to_the_sampled_one(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(module_lib, "FULL_SOFTMAX_ITEMS", 50)  # the tiny log has 80 items
    with caplog.at_level("WARNING", logger="userfm.pretrain.module"):
        fit(tmp_path, steps=1, loss="full")  # asked for: kept, with the warning
    assert "sparse_items: true" in caplog.text and "table of 83 rows" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="userfm.pretrain.module"):
        fit(tmp_path / "sampled", steps=1, loss="sampled", num_negatives=8)
    assert "full softmax" not in caplog.text


def test_loss_auto_is_the_full_softmax_on_a_small_catalogue(tmp_path):
    """Issue 20 §1: the default loss follows the measurement: below FULL_SOFTMAX_ITEMS the
    full softmax (best quality, affordable) trains, exactly as ``loss: full`` does."""
    assert PretrainModule().hparams.loss == "auto"
    _, auto, _ = fit(tmp_path / "auto", steps=2)
    _, full, _ = fit(tmp_path / "full", steps=2, loss="full")
    assert auto.loss_kind == "full" and not auto.sparse
    for (name, a), b in zip(auto.state_dict().items(), full.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_loss_auto_samples_with_sparse_rows_above_the_threshold(tmp_path, monkeypatch, caplog):
    """Above FULL_SOFTMAX_ITEMS ``loss: auto`` trains the sampled softmax with sparse item
    rows (LazyAdamW), and says so; an option that needs the full softmax keeps it, as does an
    item table with dense output features (sampled, rows dense)."""
    from userfm.pretrain.lazy_adamw import LazyAdamW

    monkeypatch.setattr(module_lib, "FULL_SOFTMAX_ITEMS", 50)  # the tiny log has 80 items
    with caplog.at_level("INFO", logger="userfm.pretrain.module"):
        trainer, module, _ = fit(tmp_path / "auto", steps=2, num_negatives=8)
    assert module.loss_kind == "sampled" and module.sparse
    assert isinstance(trainer.optimizers[0], LazyAdamW)
    assert module.encoder.embeddings.item.sparse
    assert "loss: auto: the sampled softmax (8 log_uniform negatives" in caplog.text
    assert "sparse item rows" in caplog.text
    _, masked, _ = fit(tmp_path / "masked", steps=1, mask_seen=True)
    assert masked.loss_kind == "full" and not masked.sparse
    features = dict(TINY_MODEL["encoder"], output_features=True)
    trainer, dense, _ = fit(tmp_path / "features", steps=1, encoder=features, num_negatives=8)
    assert dense.loss_kind == "sampled" and not dense.sparse
    assert not isinstance(trainer.optimizers[0], LazyAdamW)


def test_sparse_items_refuses_gradient_clipping_before_training(tmp_path):
    dm = EventDataModule(**TINY_DATA)
    module = PretrainModule(**TINY_MODEL, loss="sampled", num_negatives=8, sparse_items=True)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, gradient_clip_val=1.0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match="gradient_clip_val"):
        trainer.fit(module, dm)
    assert trainer.global_step == 0
