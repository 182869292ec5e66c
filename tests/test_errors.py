"""The shared field validators of `userfm.errors` (issue 19 §2: one error policy, not three)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from userfm.data.synthetic import SyntheticConfig
from userfm.encoder import UserEncoderConfig
from userfm.errors import ConfigError, check_fields, check_int, field_error, is_number
from userfm.eval.uqa import QuestionConfig


@pytest.mark.parametrize("value", [True, False, 3.0, 2.5, "3", None, [3]])
def test_check_int_refuses_what_is_not_an_integer_and_names_the_field(value):
    with pytest.raises(ConfigError, match=r"^`num_layers` must be an integer >= 0, got "):
        check_int("num_layers", value, minimum=0)


def test_check_int_bounds_reason_and_numpy():
    assert check_int("n", 3, minimum=3, maximum=3) == 3
    got = check_int("n", np.int64(7), minimum=1)
    assert got == 7 and type(got) is int  # JSON can write it
    with pytest.raises(ConfigError, match=r"`n` must be an integer >= 2, got 1$"):
        check_int("n", 1, minimum=2)
    with pytest.raises(ConfigError, match=r"`n` must be an integer >= 2 and <= 26, got 27$"):
        check_int("n", 27, minimum=2, maximum=26)
    with pytest.raises(ConfigError, match=r"`n` must be an integer >= 0 \(0 turns it off\)"):
        check_int("n", -1, minimum=0, why="0 turns it off")


def test_is_number_takes_finite_reals_only():
    assert all(is_number(v) for v in (0, -1, 2.5, np.int32(3), np.float32(0.5)))
    assert not any(is_number(v) for v in (True, np.bool_(True), float("nan"), float("inf")))
    assert not any(is_number(v) for v in ("1", None, [1], 1j))


def test_field_error_is_one_message_form():
    e = field_error("QuestionConfig.format", "yes", "'mc', 'free' or 'both'")
    assert isinstance(e, ConfigError)
    assert str(e) == "`QuestionConfig.format` must be 'mc', 'free' or 'both', got 'yes'"


def test_check_fields_names_the_unknown_field_and_the_closest_known_one():
    check_fields("adapter", {"num_latents": 8}, ["num_latents", "mode"], "AdapterConfig")
    with pytest.raises(ConfigError) as e:
        check_fields(
            "adapter", {"num_latent": 8, "zzz": 1}, ["num_latents", "mode"], "AdapterConfig"
        )
    assert str(e.value) == (
        "`adapter` has no field(s) ['num_latent', 'zzz'] (did you mean 'num_latent' -> "
        "'num_latents'?); AdapterConfig's fields are ['mode', 'num_latents']"
    )


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: SyntheticConfig.from_dict({"num_user": 5}), "synthetic"),
        (lambda: QuestionConfig.from_dict({"windw": 5}), "questions"),
    ],
)
def test_every_config_from_a_mapping_refuses_an_unknown_field_alike(make, name):
    with pytest.raises(ConfigError, match=rf"^`{name}` has no field\(s\) .*did you mean"):
        make()


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda v: UserEncoderConfig(num_items=10, num_layers=v), "`num_layers`"),
        (lambda v: SyntheticConfig(num_users=v), "`SyntheticConfig.num_users`"),
        (lambda v: QuestionConfig(window=v), "`QuestionConfig.window`"),
    ],
)
def test_every_config_shares_the_integer_policy(make, field):
    for bad in (True, 2.0):
        with pytest.raises(ConfigError, match=f"^{field} must be an integer >= 1, got "):
            make(bad)
    make(np.int64(2))  # numpy integers are integers everywhere


def test_encoder_config_stores_numpy_numbers_as_python_ones():
    config = UserEncoderConfig(num_items=np.int64(10), hidden_size=np.int32(8), num_heads=2)
    assert type(config.num_items) is int and type(config.hidden_size) is int
    config = UserEncoderConfig(num_items=10, dropout=np.float32(0.25))
    assert json.loads(config.to_json_string())["dropout"] == 0.25
