"""A prepared folder is checked before any training (issue 34, bad input): incomplete, of
another format version, or edited by hand, it is refused with one line naming what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from userfm.data.prepare import prepare_log
from userfm.data.prepared import PreparedDataError, PreparedLog
from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log

pytest.importorskip("duckdb")


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "p"
    prepare_log(generate_synthetic_log(SyntheticConfig(num_users=20, num_items=30)), out,
                num_shards=3)  # fmt: skip
    return out


@pytest.fixture
def copy(original, tmp_path):
    return shutil.copytree(original, tmp_path / "p")


def edit_manifest(folder, **changes):
    path = folder / "prepared.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


CASES = {
    "not a prepared folder": (lambda p: (p / "prepared.json").unlink(), "has no prepared.json"),
    "manifest not JSON": (lambda p: (p / "prepared.json").write_text("{"), "not valid JSON"),
    "another format version": (lambda p: edit_manifest(p, format_version=99), "format version 99"),
    "a shard missing": (lambda p: (p / "shards" / "shard-00001-of-00003.parquet").unlink(),
                        "shard shards/shard-00001-of-00003.parquet is missing"),
    "a shard edited": (lambda p: (p / "shards" / "shard-00002-of-00003.parquet").write_bytes(b"PAR1"),
                       "bytes but the manifest says"),
    "the vocabulary edited": (lambda p: (p / "vocab.json").write_text("{}"),
                              "vocab.json does not match the manifest"),
    "the item table missing": (lambda p: (p / "items.parquet").unlink(), "items.parquet is missing"),
    "a manifest key missing": (lambda p: _drop(p, "shards"), r"lacks \['shards'\]"),
}  # fmt: skip


def _drop(folder, key):
    path = folder / "prepared.json"
    manifest = json.loads(path.read_text())
    del manifest[key]
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_damaged_prepared_folder_is_refused_in_one_line(copy, case):
    damage, match = CASES[case]
    damage(copy)
    with pytest.raises(PreparedDataError, match=match) as info:
        PreparedLog.open(copy)
    assert "\n" not in str(info.value)


def test_training_refuses_it_before_any_step(copy):
    from userfm.pretrain.data import EventDataModule

    (copy / "shards" / "shard-00000-of-00003.parquet").unlink()
    with pytest.raises(PreparedDataError, match="is missing"):
        EventDataModule(source=str(copy)).setup()


def test_the_intact_folder_opens(original):
    prepared = PreparedLog.open(original)
    assert prepared.num_users == 20 and len(prepared.shards) == 3
