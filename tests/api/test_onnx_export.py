"""The ONNX user tower (issue 34 §4): `UserEncoder.export(dir, format="onnx")` and its reader
give the embeddings of the PyTorch model on padded batches of any size and length."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from userfm.api.onnx_tower import OnnxUserTower
from userfm.data import EventSchema, read_events
from userfm.data.collate import collate
from userfm.data.log import UserHistory
from userfm.data.padding import pad_histories
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log
from userfm.encoder import UserEncoder
from userfm.errors import ConfigError

MAX_LEN = 8


@pytest.fixture(scope="module")
def log():
    df = generate_synthetic_log(SyntheticConfig(num_users=30, num_items=40, mean_events=12, seed=3))
    return read_events(df, EventSchema(action="action", category="category"))


@pytest.fixture(scope="module")
def exported(log, tmp_path_factory):
    """An encoder reading items, actions, categories and time (last-position pooling), and
    its export."""
    enc = UserEncoder.from_log(
        log, hidden_size=16, num_layers=2, num_heads=2, max_len=MAX_LEN, seed=0
    ).eval()
    folder = enc.export(tmp_path_factory.mktemp("onnx") / "tower")
    return enc, folder


def random_histories(enc: UserEncoder, lengths: list[int], seed: int) -> list:
    """Histories of the given lengths over the model's known items, actions and categories."""
    rng = np.random.default_rng(seed)
    items = enc.vocabs.items.tokens
    actions = enc.vocabs.actions.tokens
    categories = enc.vocabs.categories.tokens
    out = []
    for n, length in enumerate(lengths):
        out.append(
            UserHistory(
                f"u{n}",
                np.array(rng.choice(items, length), dtype=object),
                timestamps=np.sort(rng.integers(1_600_000_000, 1_700_000_000, length)),
                actions=np.array(rng.choice(actions, length), dtype=object),
                categories=np.array(rng.choice(categories, length), dtype=object),
            )
        )
    return out


def torch_embeddings(enc: UserEncoder, encoded: list) -> np.ndarray:
    with torch.inference_mode():
        return enc(collate(encoded), return_states=False).embedding.numpy()


def test_the_export_holds_the_model_its_vocabularies_and_config(exported):
    enc, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "model.onnx", "vocab.json"
    ]  # fmt: skip
    tower = OnnxUserTower(folder)
    assert tower.input_names == [
        "items", "mask", "time_gaps", "hours", "weekdays", "actions", "categories"
    ]  # fmt: skip
    assert "user_embedding" in (folder / "README.md").read_text()


@pytest.mark.parametrize(
    "lengths", [[1], [3, 1, 8], [8, 8], [2, 5, 7, 1, 4, 6, 3]], ids=["1", "3", "2", "7"]
)
def test_onnx_equals_pytorch_on_padded_batches(exported, lengths):
    """Max abs difference <= 1e-5 for every batch size and history length, padding included."""
    enc, folder = exported
    tower = OnnxUserTower(folder)
    encoded = [tower.featurizer()(h) for h in random_histories(enc, lengths, seed=len(lengths))]
    want = torch_embeddings(enc, encoded)
    got = tower.run(pad_histories(encoded))
    assert got.shape == (len(lengths), 16)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # the same users padded further (to the 32-multiple embed uses, capped at max_len)
    wider = tower.run(pad_histories(encoded, pad_to_multiple_of=32, max_len=MAX_LEN))
    np.testing.assert_allclose(wider, want, rtol=0, atol=1e-5)


def test_the_reader_embeds_a_log_as_the_model_does(exported, log):
    enc, folder = exported
    want = enc.embed(log, progress=False)
    got = OnnxUserTower(folder).embed(log, batch_size=7)
    assert got.user_ids == want.user_ids
    np.testing.assert_allclose(got.vectors, want.vectors, rtol=0, atol=1e-5)
    assert got.stats == want.stats  # truncated users and unknown items counted alike
    assert got.stats["truncated_users"] > 0


def test_a_mean_pooled_model_without_time_exports_too(log, tmp_path):
    enc = UserEncoder.from_log(
        log, hidden_size=8, num_layers=1, num_heads=1, max_len=MAX_LEN, seed=1,
        pooling="mean", use_time=False, normalize=True,
    ).eval()  # fmt: skip
    tower = OnnxUserTower(enc.export(tmp_path / "tower"))
    assert "time_gaps" not in tower.input_names
    encoded = [tower.featurizer()(h) for h in random_histories(enc, [4, 1, 8], seed=0)]
    np.testing.assert_allclose(
        tower.run(pad_histories(encoded)), torch_embeddings(enc, encoded), rtol=0, atol=1e-5
    )


def test_export_errors_are_typed_and_leave_nothing_behind(exported, tmp_path, monkeypatch):
    enc, folder = exported
    with pytest.raises(ConfigError, match="format"):
        enc.export(tmp_path / "x", format="torchscript")
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        OnnxUserTower(tmp_path)
    find = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else find(name)
    )
    with pytest.raises(ConfigError, match=r"onnxscript.*userfm\[onnx\]"):
        enc.export(tmp_path / "x")
    monkeypatch.undo()

    def fail(*args, **kwargs):
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(RuntimeError, match="killed"):
        enc.export(tmp_path / "y")
    assert not (tmp_path / "y").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    with pytest.raises(ConfigError, match="lacks"):
        OnnxUserTower(folder).run({"items": np.zeros((1, 2), np.int64)})
