"""Exact resume: a run killed with SIGKILL mid-epoch continues from its last checkpoint at the
same global step, batch position, optimizer and scheduler state."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from userfm.pretrain.cli import make_cli

CONFIG = """\
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 2000
  enable_progress_bar: false
  enable_model_summary: false
  limit_val_batches: 0
  num_sanity_val_steps: 0
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: "{root}", name: run}}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{dirpath: "{root}/ckpt", every_n_train_steps: 5, save_top_k: -1, save_last: true}}
model: {{encoder: {{hidden_size: 16, num_heads: 2}}, warmup_steps: 3, dro: bucket}}
data:
  synthetic: {{num_users: 1000, num_items: 200, seed: 0}}
  max_len: 12
  batch_size: 16
"""


class RecordStart(Callback):
    def on_train_start(self, trainer, pl_module):
        opt = trainer.optimizers[0]
        self.step = trainer.global_step
        self.batch_in_epoch = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        self.scheduler_epoch = trainer.lr_scheduler_configs[0].scheduler.last_epoch
        self.exp_avg = [
            opt.state[p]["exp_avg"].clone() for g in opt.param_groups for p in g["params"]
        ]
        self.dro_state = {k: v.clone() for k, v in pl_module.dro_weighting.state_dict().items()}
        self.first_users = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_users is None:
            self.first_users = list(batch.batch.user_ids)


def test_sigkill_mid_epoch_then_resume(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "userfm.cli", "pretrain", "fit", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt, later = (
        tmp_path / "ckpt" / "epoch=0-step=10.ckpt",
        tmp_path / "ckpt" / "epoch=0-step=15.ckpt",
    )
    deadline = time.time() + 240
    while not later.exists():  # step 15 written => step 10 is complete on disk
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint within the time limit"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    cli = make_cli(["--config", str(config), "--trainer.max_steps", "12"], run=False)
    record = RecordStart()
    cli.trainer.callbacks.append(record)
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=str(ckpt))

    assert record.step == saved["global_step"] == 10
    # mid-epoch (1000 users / 16 = 63 batches per epoch): the data continues with the 11th
    # batch of the epoch's seeded order, as if the run had never stopped
    cli.datamodule.setup()
    order = [b.batch.user_ids for b in cli.datamodule.train_dataloader()]
    assert record.first_users == order[10]
    assert record.scheduler_epoch == saved["lr_schedulers"][0]["last_epoch"]
    saved_state = saved["optimizer_states"][0]["state"]
    for i, exp_avg in enumerate(record.exp_avg):
        torch.testing.assert_close(exp_avg, saved_state[i]["exp_avg"], rtol=0, atol=0)
    for k, v in record.dro_state.items():
        torch.testing.assert_close(v, saved["state_dict"][f"dro_weighting.{k}"], rtol=0, atol=0)
    assert cli.trainer.global_step == 12


def test_the_documented_resume_line_continues_a_killed_run_of_a_shipped_config(tmp_path):
    """pretrain/README: `userfm pretrain fit --config CONFIG --ckpt_path last` after a kill,
    with a shipped config as it is (issue 18: its checkpoints went to a new version_N/ folder
    each run, so "last" was never found and training silently restarted at step 0)."""
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "synthetic-tiny.yaml"
    fit = [sys.executable, "-m", "userfm.cli", "pretrain", "fit", "--config", str(config)]
    small = ["--data.synthetic.num_users", "600", "--trainer.max_epochs", "1000",
             "--model.encoder.hidden_size", "16", "--data.max_len", "12",
             "--trainer.enable_progress_bar", "false"]  # fmt: skip
    proc = subprocess.Popen([*fit, *small], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    last = tmp_path / "runs" / "pretrain" / "synthetic-tiny" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "no checkpoint within the time limit"
        time.sleep(0.2)
    time.sleep(0.5)  # let the file be complete before the kill
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert step > 0

    resumed = subprocess.run(
        [*fit, "--ckpt_path", "last", *small, "--trainer.max_steps", str(step + 10)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Restoring states from the checkpoint path at {last}" in resumed.stderr
    logs = sorted((tmp_path / "runs" / "pretrain" / "synthetic-tiny" / "logs").glob("version_*"))
    assert len(logs) == 2  # one log folder per run, one checkpoint folder for both
    steps = pd.read_csv(logs[1] / "metrics.csv")["step"].dropna()
    assert steps.min() >= step and steps.max() < step + 10  # continued, not from step 0


def test_default_root_dir_alone_places_logs_and_checkpoints(tmp_path):
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "synthetic-tiny.yaml"
    cli = make_cli(["--config", str(config), "--trainer.default_root_dir", str(tmp_path / "run"),
                    "--data.synthetic.num_users", "50"], run=False)  # fmt: skip
    assert Path(cli.trainer.logger.log_dir).parent == tmp_path / "run" / "logs"
    assert Path(cli.trainer.checkpoint_callback.dirpath) == tmp_path / "run" / "checkpoints"
    absolute = make_cli(["--config", str(config), "--trainer.logger.init_args.save_dir",
                         str(tmp_path / "elsewhere"), "--data.synthetic.num_users", "50"],
                        run=False)  # fmt: skip
    assert Path(absolute.trainer.logger.log_dir).parent == tmp_path / "elsewhere" / "logs"


def _damaged_checkpoints(folder):
    """A truncated real checkpoint and a planted one (a pickled object weights_only refuses)."""
    import argparse

    folder.mkdir(parents=True, exist_ok=True)
    truncated, planted = folder / "truncated.ckpt", folder / "planted.ckpt"
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(64, 64)}, "global_step": 3}, buffer)
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    torch.save({"global_step": 3, "hook": argparse.Namespace(x=1)}, planted)
    return truncated, planted


def test_resuming_from_a_damaged_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    """Issue 18 §3: `--ckpt_path` at a truncated or planted checkpoint ended in a traceback
    from inside the trainer; now exit 2 and one line naming the file."""
    from userfm.cli import main

    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(root=tmp_path))
    for bad in _damaged_checkpoints(tmp_path / "bad"):
        code = main(["pretrain", "fit", "--config", str(config), "--ckpt_path", str(bad)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert err[-1].startswith("userfm pretrain: error: ") and str(bad) in err[-1]
        assert not any("Traceback" in line for line in err)


def test_a_config_without_an_encoder_section_trains_with_the_encoders_defaults(tmp_path):
    """Review of issue 19: under LightningCLI, `model.encoder` left out is saved as null, and
    building the encoder from it raised a TypeError."""
    config = tmp_path / "run.yaml"
    config.write_text(
        CONFIG.format(root=tmp_path).replace("encoder: {hidden_size: 16, num_heads: 2}, ", "")
    )
    cli = make_cli(["--config", str(config), "--trainer.max_steps", "1"], run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 1 and cli.model.encoder.config.hidden_size == 64
