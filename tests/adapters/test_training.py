"""`userfm adapters fit` with every shipped config (tiny LLM and encoder swapped in), checkpoints
with trainable tensors only, resume, the exported adapter directory and `chat`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from userfm.adapters.cli import main as adapters_main
from userfm.adapters.cli import make_cli
from userfm.adapters.model import UserConditionedLM
from userfm.data.readers import read_events
from userfm.data.schema import EventSchema
from userfm.data.synthetic import SyntheticConfig, write_synthetic_log
from userfm.encoder import UserEncoder
from userfm.eval.uqa import build_questions, save_questions

from .conftest import make_llm, make_tokenizer

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "adapters"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    events = write_synthetic_log(
        root / "events.parquet", SyntheticConfig(num_users=60, num_items=40, seed=5)
    )
    log = read_events(events, EventSchema(action="action", category="category", title="title"))
    UserEncoder.from_log(
        log, hidden_size=16, num_layers=1, num_heads=2, max_len=32, seed=0
    ).save_pretrained(root / "encoder")
    save_questions(
        build_questions(log, seed=0, tasks=("short_term", "direct_feature")), root / "qa"
    )
    llm_dir = root / "llm"
    make_llm("llama").save_pretrained(llm_dir)
    make_tokenizer().save_pretrained(llm_dir)
    return root


def fit_args(root: Path, config: str, out: Path, steps: int = 4) -> list[str]:
    return [
        "--config", str(CONFIGS / f"{config}.yaml"),
        "--model.encoder", str(root / "encoder"),
        "--model.llm", str(root / "llm"),
        "--model.num_latents", "2",
        "--model.dim_head", "8",
        "--model.cross_attn_every", "2",
        "--model.max_length", "64",
        "--model.export_dir", str(out / "adapter"),
        "--data.questions", str(root / "qa"),
        "--data.log", str(root / "events.parquet"),
        "--data.max_train", "24",
        "--data.max_eval", "8",
        "--data.batch_size", "4",
        "--trainer.max_steps", str(steps),
        "--trainer.val_check_interval", "2",
        "--trainer.default_root_dir", str(out),
        "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.callbacks.init_args.dirpath", str(out / "ckpt"),
        "--trainer.callbacks.init_args.every_n_train_steps", "2",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip


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
    t = cli.model._tensors(examples)
    with torch.no_grad():
        a = trained([e.history for e in examples], **t).logits
        b = loaded([e.history for e in examples], **t).logits
    assert torch.equal(a, b)

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
