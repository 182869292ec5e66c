"""Every YAML config parses with the CLI it is written for, and opens with purpose/command/expected."""

from pathlib import Path

import pytest
from lightning.pytorch.cli import LightningCLI

from userfm.pretrain.data import EventDataModule
from userfm.pretrain.module import PretrainModule

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


class ParseOnly(LightningCLI):
    """Parse and type-check a config without building a Trainer (GPU configs parse on CPU)."""

    def instantiate_classes(self) -> None:
        pass


def test_there_are_configs():
    names = {p.stem for p in CONFIGS}
    assert {"synthetic-tiny", "ml100k", "ddp-multinode", "fsdp"} <= names
    assert {"soft_prompt", "cross_attn", "soft_prompt_lora", "cross_attn_lora"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_opens_with_purpose_command_expected(path):
    head = path.read_text().splitlines()[:12]
    for key in ("# Purpose:", "# Command:", "# Expected:"):
        assert any(line.startswith(key) for line in head), f"{path.name} lacks {key!r}"


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if p.parent.name == "pretrain"], ids=lambda p: p.name
)
def test_pretrain_config_parses(path):
    cli = ParseOnly(PretrainModule, EventDataModule, run=False, args=["--config", str(path)])
    encoder = cli.config.model.encoder
    assert encoder["hidden_size"] % encoder["num_heads"] == 0
    assert cli.config.data.max_len >= 1


def test_a_wrong_key_or_type_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hidden_sise: 64\n")
    with pytest.raises(SystemExit):
        ParseOnly(PretrainModule, EventDataModule, run=False, args=["--config", str(bad)])
    bad.write_text("model:\n  hidden_size: many\n")
    with pytest.raises(SystemExit):
        ParseOnly(PretrainModule, EventDataModule, run=False, args=["--config", str(bad)])


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if p.parent.name == "adapters"], ids=lambda p: p.name
)
def test_adapter_config_parses(path):
    from userfm.adapters.config import AdapterConfig
    from userfm.adapters.data import QADataModule
    from userfm.adapters.module import AdapterModule

    cli = ParseOnly(AdapterModule, QADataModule, run=False, args=["--config", str(path)])
    m = cli.config.model
    adapter = AdapterConfig(**vars(m.adapter))  # the whole config, validated
    assert m.export_dir and path.stem in m.export_dir
    assert adapter.lora == path.stem.endswith("_lora")
