"""UserEncoderConfig: validation names the bad field, JSON / save_pretrained round trips, Auto classes."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, AutoModel

from userfm._version import __version__
from userfm.encoder import UserEncoder, UserEncoderConfig
from userfm.errors import ConfigError


def test_defaults_and_resolved_intermediate_size():
    config = UserEncoderConfig(num_items=10)
    assert config.model_type == "userfm-encoder"
    assert (config.hidden_size, config.num_layers, config.num_heads) == (64, 2, 2)
    assert config.intermediate_size == 4 * 64
    assert config.pooling == "last" and config.attn_backend == "sdpa"
    assert config.userfm_version == __version__
    assert (
        UserEncoderConfig(num_items=10, hidden_size=8, intermediate_size=20).intermediate_size == 20
    )


def test_num_items_is_required():
    with pytest.raises(ConfigError, match="`num_items` is required"):
        UserEncoderConfig()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_items", 3),
        ("num_items", 10.0),
        ("num_actions", -1),
        ("num_categories", -2),
        ("text_dim", -1),
        ("hidden_size", 0),
        ("hidden_size", 64.0),
        ("num_layers", 0),
        ("num_heads", 0),
        ("num_heads", 3),  # does not divide 64
        ("intermediate_size", 0),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("attn_dropout", 1.5),
        ("max_len", 0),
        ("num_time_gap_buckets", 1),
        ("use_time", "yes"),
        ("pooling", "max"),
        ("normalize", 1),
        ("attn_backend", "flash"),
        ("layer_norm_eps", 0.0),
        ("initializer_range", -0.02),
    ],
)
def test_bad_field_is_named(field, value):
    kwargs = {"num_items": 10, field: value}
    with pytest.raises(ConfigError, match=f"`{field}`"):
        UserEncoderConfig(**kwargs)


def test_check_catches_fields_changed_after_construction():
    config = UserEncoderConfig(num_items=10)
    config.num_heads = 3
    with pytest.raises(ConfigError, match="`num_heads` must divide `hidden_size`"):
        UserEncoder(config)


def test_json_round_trip():
    config = UserEncoderConfig(
        num_items=50,
        num_actions=4,
        num_categories=7,
        text_dim=12,
        hidden_size=32,
        num_heads=4,
        pooling="attention",
        normalize=True,
        attn_backend="auto",
        use_time=False,
    )
    text = config.to_json_string()
    data = json.loads(text)
    assert data["model_type"] == "userfm-encoder"
    assert data["userfm_version"] == __version__
    assert data["num_items"] == 50 and data["pooling"] == "attention"
    again = UserEncoderConfig.from_dict(data)
    assert again.to_dict() == config.to_dict()
    assert again.to_json_string() == text


def test_save_pretrained_and_auto_config(tmp_path):
    config = UserEncoderConfig(num_items=20, hidden_size=16, num_heads=2, pooling="mean")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, UserEncoderConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()  # _name_or_path aside
    assert json.loads((tmp_path / "config.json").read_text())["userfm_version"] == __version__


def test_unknown_keys_from_newer_versions_are_kept():
    data = UserEncoderConfig(num_items=10).to_dict()
    data["some_future_field"] = 3
    loaded = UserEncoderConfig.from_dict(data)
    assert loaded.some_future_field == 3


def test_auto_model_resolves_the_encoder():
    config = UserEncoderConfig(num_items=10, hidden_size=8, num_heads=2, num_layers=1)
    assert isinstance(AutoModel.from_config(config), UserEncoder)
