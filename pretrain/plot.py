"""Training curves of a run (losses, metrics, DRO weights) from its CSV log to one PNG."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from userfm.errors import UserfmError
from userfm.outputs import atomic_output

GROUPS = (
    ("losses", ("train/loss", "train/next_item_loss", "train/contrastive_loss", "valid/loss")),
    ("validation metrics", ("valid/hr@", "valid/ndcg@")),
    ("DRO class weights", ("dro/",)),
)


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw every logged curve of ``run_dir`` (the newest metrics.csv below it) to a PNG.

    Returns:
        The PNG path (default ``run_dir/curves.png``).

    Raises:
        UserfmError: no metrics.csv under ``run_dir``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    logs = sorted(run_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not logs:
        raise UserfmError(
            f"no metrics.csv under {run_dir}: is it a run folder of `userfm pretrain fit`?"
        )
    df = pd.read_csv(logs[-1])
    panels = [
        (title, [c for c in df.columns if c != "step" and c.startswith(prefixes)])
        for title, prefixes in GROUPS
    ]
    panels = [(t, cols) for t, cols in panels if cols]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3 * len(panels)), squeeze=False)
    for ax, (title, cols) in zip(axes[:, 0], panels):
        for col in cols:
            series = df[["step", col]].dropna()
            ax.plot(
                series["step"], series[col], label=col, marker="." if len(series) < 30 else None
            )
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "curves.png"
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
