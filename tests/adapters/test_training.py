"""`userfm adapters fit` with every shipped config (tiny LLM and encoder swapped in), checkpoints
with trainable tensors only, resume, the exported adapter directory and `chat`."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

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
    loaded = UserConditionedLM.from_pretrained(
        adapter
    ).eval()  # encoder + LLM from the recorded paths
    examples = [cli.datamodule.datasets["valid"][i] for i in range(2)]
    args = ([e.history for e in examples], [e.prompt for e in examples])
    options = [[e.target, "comedy"] for e in examples]
    assert trained.option_logprobs(*args, options) == loaded.option_logprobs(*args, options)

    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    trainable = {f"model.{n}" for n, p in trained.named_parameters() if p.requires_grad}
    assert set(ckpt["state_dict"]) == trainable  # no frozen LLM / encoder weights


class RecordStart(Callback):
    """What the trainer holds when training (re)starts: step, trainable tensors, optimizer."""

    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.scheduler_epoch = trainer.lr_scheduler_configs[0].scheduler.last_epoch
        self.weights = {
            f"model.{n}": p.detach().clone()
            for n, p in pl_module.model.named_parameters()
            if p.requires_grad
        }
        opt = trainer.optimizers[0]
        self.exp_avg = [
            opt.state[p]["exp_avg"].clone() for g in opt.param_groups for p in g["params"]
        ]


def test_resume_continues_from_the_checkpoint(workspace, tmp_path):
    """Resume restores the trainable tensors, the optimizer moments and the schedule exactly,
    not only the step (issue 19 §6: the step alone passes with a fresh optimizer)."""
    first = make_cli(["fit", *fit_args(workspace, "cross_attn", tmp_path, steps=4)])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    args = fit_args(workspace, "cross_attn", tmp_path / "resumed", steps=6)
    resumed = make_cli(args, run=False)
    record = RecordStart()
    resumed.trainer.callbacks.append(record)
    resumed.trainer.fit(resumed.model, resumed.datamodule, ckpt_path=str(ckpt))
    assert first.trainer.global_step == saved["global_step"] == record.step == 4
    assert resumed.trainer.global_step == 6
    assert record.scheduler_epoch == saved["lr_schedulers"][0]["last_epoch"] == 4
    assert set(record.weights) == set(saved["state_dict"])
    for name, value in record.weights.items():
        torch.testing.assert_close(value, saved["state_dict"][name], rtol=0, atol=0)
    moments = [s["exp_avg"] for _, s in sorted(saved["optimizer_states"][0]["state"].items())]
    assert len(moments) == len(record.exp_avg) > 0
    for got, want in zip(record.exp_avg, moments, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


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
            "--max_new_tokens",
            "3",
            "what genre ?",
        ]  # fmt: skip
    )
    assert code == 0
    assert capsys.readouterr().out.startswith("user u00 (")
