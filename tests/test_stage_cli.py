"""What a training run prints: its data summary by default, no library noise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "synthetic-tiny.yaml"


def test_fit_shows_its_data_summary_and_no_library_noise(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "userfm.cli", "pretrain", "fit", "--config", str(CONFIG),
         "--trainer.max_steps", "2", "--data.synthetic.num_users", "60",
         "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "userfm pretrain: data: source synthetic, events" in out
    assert "users_too_short_to_train (<4 events) 0" in out and "re-sorted by time" in out
    for noise in ("Tip:", "set_vital", "LeafSpec", "in eval mode at the start"):
        assert noise not in out, noise
