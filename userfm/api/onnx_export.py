"""Export the user tower to ONNX: a padded batch of histories -> (B, D) user embeddings.

`export_onnx` (``UserEncoder.export(dir, format="onnx")``) traces the encoder's embedding path
with ``torch.onnx.export(dynamo=True)`` (torch.export, then onnxscript), with the batch size
and the history length dynamic (1 .. ``max_len``), and writes a folder whose model any
onnxruntime runs (the reader below is part of userfm, so it comes with userfm's own
dependencies):

- ``model.onnx``: inputs named as the `userfm.data.batch.Batch` fields the model reads
  (``items``, ``mask`` and, as the model uses them, ``time_gaps`` / ``hours`` / ``weekdays``,
  ``actions``, ``categories``), int64 (B, T) (``categories`` (B, T, C); ``mask`` bool),
  right-padded; one output, ``user_embedding`` (B, D) float32.
- ``vocab.json`` and ``config.json``: the vocabularies and the encoder's config, from which
  the reader (`userfm.api.onnx_tower.OnnxUserTower`) featurises raw histories exactly as
  ``UserEncoder.embed`` does.
- ``README.md``: what the folder holds and how to read it.

Needs the ``onnx`` extra (``pip install 'userfm[onnx]'``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from userfm.data.batch import Batch
from userfm.errors import ConfigError

if TYPE_CHECKING:
    from userfm.encoder.model import UserEncoder

__all__ = [
    "ONNX_FILE",
    "OUTPUT",
    "export_onnx",
    "missing_onnx_packages",
    "onnx_input_names",
    "require_onnx",
]

ONNX_FILE = "model.onnx"
#: the output's name ("embedding" is taken by a node of the graph)
OUTPUT = "user_embedding"
#: the packages each side needs: export (torch.onnx's exporter) and serving
EXPORT_PACKAGES = ("onnx", "onnxscript")
SERVE_PACKAGES = ("onnxruntime",)
_README = """# userfm user tower (ONNX)

Maps a right-padded batch of user histories to user embeddings; exported from a userfm
`UserEncoder` (`UserEncoder.export(dir, format="onnx")`, userfm {version}).

- `model.onnx`: inputs {inputs} (int64 (B, T); `categories` (B, T, C); `mask` bool, True at
  real events, which come first), B and T dynamic (T <= {max_len}); output
  `user_embedding` (B, {dim}) float32.
- `vocab.json`, `config.json`: the vocabularies and the encoder config, which featurise raw
  histories as the PyTorch model does.

Reading it in Python (userfm's reader: onnxruntime runs the model; any other ONNX runtime
can feed the inputs above directly):

```python
from userfm.api.onnx_tower import OnnxUserTower

tower = OnnxUserTower("{name}")
embeddings = tower.embed(log)  # an EventLog, DataFrame, file or UserHistory objects
```
"""


def missing_onnx_packages(
    packages: tuple[str, ...] = EXPORT_PACKAGES + SERVE_PACKAGES,
) -> list[str]:
    """Those of ``packages`` (default: all of the ``onnx`` extra) that are not installed."""
    return [p for p in packages if importlib.util.find_spec(p) is None]


def require_onnx(packages: tuple[str, ...], what: str) -> None:
    """Raise `ConfigError` naming the missing packages and the extra that installs them."""
    missing = missing_onnx_packages(packages)
    if missing:
        raise ConfigError(
            f"{what} needs {', '.join(missing)}: pip install 'userfm[onnx]' (onnx, onnxscript, "
            "onnxruntime)"
        )


def onnx_input_names(model: UserEncoder) -> list[str]:
    """The Batch fields ``model`` reads, in the exported model's input order."""
    cfg = model.config
    names = ["items", "mask"]
    if cfg.use_time:
        names += ["time_gaps", "hours", "weekdays"]
    if cfg.num_actions:
        names.append("actions")
    if cfg.num_categories:
        names.append("categories")
    return names


class _Tower(nn.Module):
    """The tensors of a padded batch (in `onnx_input_names` order) -> (B, D) embeddings."""

    def __init__(self, encoder: UserEncoder, names: list[str]):
        super().__init__()
        self.encoder, self.names = encoder, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.names, tensors, strict=True))
        items = given["items"]
        zeros = torch.zeros_like(items)  # features the model does not read
        batch = Batch(
            items=items,
            mask=given["mask"],
            time_gaps=given.get("time_gaps", zeros),
            hours=given.get("hours", zeros),
            weekdays=given.get("weekdays", zeros),
            actions=given.get("actions"),
            categories=given.get("categories"),
        )
        return self.encoder(batch, return_states=False).embedding  # (B, D)


def _example(model: UserEncoder, names: list[str]) -> tuple[torch.Tensor, ...]:
    """A 2 x 3 padded batch (the second row one event shorter) to trace with: dimensions of
    size 1 would be specialised by torch.export, so none is."""
    B, T = 2, min(3, model.config.max_len)
    out = {
        "items": torch.full((B, T), 3, dtype=torch.long),
        "mask": torch.ones(B, T, dtype=torch.bool),
        "time_gaps": torch.ones(B, T, dtype=torch.long),
        "hours": torch.ones(B, T, dtype=torch.long),
        "weekdays": torch.ones(B, T, dtype=torch.long),
        "actions": torch.ones(B, T, dtype=torch.long),
        "categories": torch.ones(B, T, model.config.max_categories, dtype=torch.long),
    }
    out["mask"][1, -1] = False
    return tuple(out[n] for n in names)


def export_onnx(model: UserEncoder, directory: str | Path, *, opset: int = 18) -> Path:
    """Write the ONNX user tower of ``model`` with its vocabularies and config to ``directory``.

    The folder is written beside ``directory`` and moved in when complete (as
    ``save_pretrained``), so a kill never leaves half an export; other files there are kept.

    Args:
        model: a `UserEncoder` with vocabularies (it is not changed: a CPU float32 copy is
            traced).
        directory: the output folder.
        opset: the ONNX opset.

    Returns:
        The folder.

    Raises:
        ConfigError: onnx / onnxscript are not installed, or the model has no vocabularies.
    """
    from userfm import __version__
    from userfm.encoder.model import VOCAB_FILE
    from userfm.outputs import staged_output_dir
    from userfm.quiet import onnx_exporter_output

    require_onnx(EXPORT_PACKAGES, "exporting to ONNX")
    vocabs = model._require_vocabs()
    tower_model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    names = onnx_input_names(tower_model)
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1, max=tower_model.config.max_len)
    shapes = {"tensors": tuple({0: batch, 1: length} for _ in names)}
    with staged_output_dir(directory) as stage:
        with onnx_exporter_output():
            torch.onnx.export(
                _Tower(tower_model, names),
                _example(tower_model, names),
                str(stage / ONNX_FILE),
                input_names=names,
                output_names=[OUTPUT],
                dynamic_shapes=shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
                external_data=False,
            )
        vocabs.save(stage / VOCAB_FILE)
        tower_model.config.to_json_file(stage / "config.json")
        readme = _README.format(
            version=__version__,
            inputs=", ".join(f"`{n}`" for n in names),
            max_len=tower_model.config.max_len,
            dim=tower_model.config.hidden_size,
            name=Path(directory).name,
        )
        (stage / "README.md").write_text(readme, encoding="utf-8")
    return Path(directory)
