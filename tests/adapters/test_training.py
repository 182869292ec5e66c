"""`userfm adapters fit` with every shipped config (tiny LLM and encoder swapped in), checkpoints
with trainable tensors only, resume, the exported adapter directory and `chat`."""

from __future__ import annotations

import pytest
import torch

from userfm.adapters.cli import main as adapters_main
from userfm.adapters.cli import make_cli
from userfm.adapters.model import UserConditionedLM

from .conftest import fit_args

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize(
    "config", ["soft_prompt", "cross_attn", "soft_prompt_lora", "cross_attn_lora"]
)
def test_each_config_trains_and_exports(workspace, tmp_path, config):
    cli = make_cli(["fit", *fit_args(workspace, config, tmp_path)])
    assert cli.trainer.global_step == 4
    assert torch.isfinite(cli.trainer.callback_metrics["valid/loss"])
    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "README.md").is_file()
    assert (adapter / "lora").is_dir() == config.endswith("_lora")

    trained = cli.model.model.eval()
    loaded = UserConditionedLM.from_adapter(adapter).eval()  # encoder + LLM from the recorded paths
    examples = [cli.datamodule.datasets["valid"][i] for i in range(2)]
    args = ([e.history for e in examples], [e.prompt for e in examples])
    options = [[e.target, "comedy"] for e in examples]
    assert trained.option_logprobs(*args, options) == loaded.option_logprobs(*args, options)

    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    trainable = {f"model.{n}" for n, p in trained.named_parameters() if p.requires_grad}
    assert set(ckpt["state_dict"]) == trainable  # no frozen LLM / encoder weights


def test_resume_continues_from_the_checkpoint(workspace, tmp_path):
    first = make_cli(["fit", *fit_args(workspace, "cross_attn", tmp_path, steps=4)])
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    args = fit_args(workspace, "cross_attn", tmp_path / "resumed", steps=6)
    resumed = make_cli(["fit", *args, "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
    assert saved["global_step"] == 4 and resumed.trainer.global_step == 6
    assert first.trainer.global_step == 4


def test_chat_answers_for_one_user(workspace, tmp_path, capsys):
    make_cli(["fit", *fit_args(workspace, "soft_prompt", tmp_path, steps=2)])
    code = adapters_main(
        [
            "chat",
            "--adapter",
            str(tmp_path / "adapter"),
            "--log",
            str(workspace / "events.parquet"),
            "--user",
            "u00",
            "--max-new-tokens",
            "3",
            "what genre ?",
        ]  # fmt: skip
    )
    assert code == 0
    assert capsys.readouterr().out.startswith("user u00 (")
