"""The options the CLI's commands share (`userfm.cli_options`): one jsonargparse style, the
event schema as one typed group spelled as the stages spell it (issue 19 §5)."""

from dataclasses import fields

import pandas as pd
import pytest
from jsonargparse import ArgumentParser

from userfm.cli import main
from userfm.cli_options import add_schema_args, schema_from_args
from userfm.data.schema import EventSchema
from userfm.pretrain.data import EventDataModule


def _parse(argv: list[str]):
    p = ArgumentParser()
    add_schema_args(p)
    return p.parse_args(argv)


def test_the_group_is_event_schema_field_for_field_as_the_stages_spell_it():
    argv = ["--schema.user", "uid", "--schema.item", "asin", "--schema.timestamp", "t"]
    argv += ["--schema.action", "kind", "--schema.category", "genres", "--schema.title", "name"]
    argv += ["--schema.extra", "[year, studio]", "--schema.timestamp_unit", "ms"]
    assert {a.split(".")[1] for a in argv if a.startswith("--")} == {
        f.name for f in fields(EventSchema)
    }
    ours = schema_from_args(_parse(argv))
    assert ours == EventSchema(
        user="uid", item="asin", timestamp="t", action="kind", category="genres",
        title="name", extra=("year", "studio"), timestamp_unit="ms",
    )  # fmt: skip
    # the pretraining stage reads the same words under --data.schema
    stage = ArgumentParser()
    stage.add_class_arguments(EventDataModule, "data")
    parsed = stage.parse_args(
        ["--data.source", "synthetic", *(a.replace("--schema.", "--data.schema.") for a in argv)]
    )
    assert EventSchema(**vars(parsed.data.schema)) == ours


def test_given_options_lay_over_the_base_schema_and_the_rest_stay():
    base = EventSchema(user="uid", action="kind", timestamp_unit="ms")
    assert schema_from_args(_parse([]), base) == base
    assert schema_from_args(_parse(["--schema.title", "name"]), base) == EventSchema(
        user="uid", action="kind", title="name", timestamp_unit="ms"
    )
    # naming a time column over a base read in row order reads that column again
    in_order = EventSchema(timestamp=None, timestamp_unit="order")
    assert schema_from_args(_parse(["--schema.timestamp", "t"]), in_order).timestamp_unit == "auto"
    assert schema_from_args(_parse(["--schema.timestamp_unit", "order"])).input_columns() == {
        "user": "user", "item": "item"
    }  # fmt: skip


def test_a_bad_option_value_is_exit_2_naming_the_option(tmp_path, capsys):
    argv = ["embed", "--model", str(tmp_path), "--input", "x.csv", "--output", "o.parquet"]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--schema.timestamp_unit", "seconds"])
    assert e.value.code == 2 and "schema.timestamp_unit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([*argv, "--batch_size", "many"])
    assert e.value.code == 2 and "batch_size" in capsys.readouterr().err


def test_a_command_reads_its_options_from_a_config_file(tmp_path, capsys):
    config = tmp_path / "synth.yaml"
    config.write_text(f"out: {tmp_path / 'log'}\nusers: 30\nitems: 40\nseed: 1\n")
    assert main(["synth", "--config", str(config), "--users", "25"]) == 0  # flags win
    events = pd.read_parquet(tmp_path / "log" / "events.parquet")
    assert events["user"].nunique() == 25 and events["item"].nunique() <= 40
    assert "seed 1" in capsys.readouterr().out
