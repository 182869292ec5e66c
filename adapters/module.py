"""`AdapterModule`: the Lightning shell that fine-tunes a `UserConditionedLM`.

One shared step for train / valid / test: `UserConditionedLM.answer_loss` (the likelihood of
the answer text + end of turn, with the LLM's output layer run over the answer positions
only), logged with the share of answers whose every token is the model's top prediction
(teacher-forced exact match, cheap enough for every validation step). The optimiser has one
parameter group per part (Perceiver / projection, soft-prompt scale and gates, LoRA, encoder),
each with its own learning rate. Checkpoints hold only the trainable tensors (the frozen LLM
and encoder are re-loaded from their references), and the adapter directory is written at the
end of ``fit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from userfm.adapters.config import AdapterConfig
from userfm.adapters.data import QAExample
from userfm.adapters.model import UserConditionedLM
from userfm.encoder.model import decay_groups
from userfm.errors import ConfigError, check_fields


class AdapterModule(L.LightningModule):
    """Fine-tune an adapter (and optionally LoRA / the encoder) on question records.

    Args:
        adapter: the `AdapterConfig`, passed whole (in YAML: ``model.adapter``): the mode
            ("text" and "none" are the baselines), its sizes, LoRA, ``encoder`` (directory of
            a saved `UserEncoder`, ``userfm pretrain export``; needed by the modes that read
            it) and ``llm`` (a Hugging Face directory / name or an alias of
            `userfm.llm.load_llm`; None: `userfm.llm.DEFAULT_LLM`). A dict of its fields is
            accepted too (how a checkpoint's hyper-parameters come back).
        llm_cache_dir: where aliases are converted and cached (default: the user cache).
        lr: AdamW learning rate of the adapter (Perceiver, projection, soft-prompt scale,
            cross-attention blocks).
        lora_lr: learning rate of the LoRA matrices (None: ``lr``). A Perceiver trained from
            scratch wants a far larger rate than LoRA on a pretrained LLM.
        encoder_lr: learning rate of the encoder when ``train_encoder`` (None: ``lr`` / 10).
        weight_decay: AdamW weight decay of 2-D adapter and encoder weights.
        warmup_steps: linear warmup, then cosine decay to 10% over the run.
        max_length: most prompt + answer tokens per example; a longer one raises (a cut
            prompt would train on what the model never sees). In "text" mode it must hold the
            ``text_tokens`` of history too.
        export_dir: where ``fit`` writes the adapter directory (None: not written).
        init_from: an adapter directory whose adapter weights start this run (the alignment
            stage's, `configs/adapters/align.yaml`); its shape must match this config.
    """

    def __init__(
        self,
        adapter: AdapterConfig | None = None,
        llm_cache_dir: str | None = None,
        lr: float = 1e-3,
        lora_lr: float | None = None,
        encoder_lr: float | None = None,
        weight_decay: float = 0.0,
        warmup_steps: int = 20,
        max_length: int = 384,
        export_dir: str | None = None,
        init_from: str | None = None,
    ):
        super().__init__()
        config = self.adapter_config = _resolve_adapter(adapter)
        mode, text_tokens = config.mode, config.text_tokens
        # hyper-parameters hold plain values only: a checkpoint is read with weights_only
        adapter = {k: v for k, v in config.to_dict().items() if k != "userfm_version"}
        self.save_hyperparameters()
        if lr <= 0 or warmup_steps < 0 or max_length < 8:
            raise ConfigError("`lr` must be > 0, `warmup_steps` >= 0 and `max_length` >= 8")
        for name, value in (("lora_lr", lora_lr), ("encoder_lr", encoder_lr)):
            if value is not None and value <= 0:
                raise ConfigError(f"`{name}` must be > 0 or null, got {value}")
        if mode == "text" and max_length < text_tokens + 64:
            raise ConfigError(
                f"`max_length` ({max_length}) must hold the history text (`text_tokens` = "
                f"{text_tokens}) and the question: set it to at least {text_tokens + 64}"
            )
        self.model: UserConditionedLM | None = None
        self.strict_loading = False  # checkpoints hold the trainable tensors only

    def configure_model(self) -> None:
        if self.model is not None:
            return
        from userfm.encoder import UserEncoder
        from userfm.llm import load_llm

        hp = self.hparams
        cfg = self.adapter_config
        encoder = UserEncoder.from_pretrained(cfg.encoder) if cfg.reads_encoder else None
        llm, tokenizer = load_llm(cfg.llm, cache_dir=hp.llm_cache_dir)
        self.model = UserConditionedLM(encoder, llm, tokenizer, self.adapter_config)
        if hp.init_from:
            self.model.load_adapter_weights(hp.init_from)
            rank_zero_info(f"userfm adapters: adapter weights from {hp.init_from}")
        rank_zero_info(f"userfm adapters: {self.model.describe()}")

    # ---- the shared step --------------------------------------------------------------
    def _step(self, examples: list[QAExample], stage: str) -> torch.Tensor:
        out = self.model.answer_loss(
            [e.history for e in examples],
            [e.prompt for e in examples],
            [e.target for e in examples],
            max_length=self.hparams.max_length,
        )
        n = len(examples)
        sync = stage != "train"
        self.log(f"{stage}/loss", out.loss, batch_size=n, prog_bar=True, sync_dist=sync)
        exact = out.exact.float().mean()
        self.log(
            f"{stage}/exact_match", exact, batch_size=n, prog_bar=stage != "train", sync_dist=sync
        )
        return out.loss

    def training_step(self, batch: list[QAExample], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: list[QAExample], batch_idx: int) -> None:
        self._step(batch, "valid")

    def test_step(self, batch: list[QAExample], batch_idx: int) -> None:
        self._step(batch, "test")

    def parameter_groups(self) -> list[dict[str, Any]]:
        """AdamW groups: the adapter (Perceiver, projection, soft-prompt scale, gates, ...),
        LoRA and the encoder, each part at its own learning rate; within the adapter and the
        encoder, decay on 2-D weight matrices only (`userfm.encoder.model.decay_groups`:
        never on embedding tables, gains or biases). Empty groups are left out."""
        hp = self.hparams
        lora_lr = hp.lora_lr if hp.lora_lr is not None else hp.lr
        encoder_lr = hp.encoder_lr if hp.encoder_lr is not None else hp.lr / 10
        parts: dict[str, list[torch.nn.Parameter]] = {"adapter": [], "lora": [], "encoder": []}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                part = name.split(".")[0]
                parts["lora" if part == "llm" else part if part == "encoder" else "adapter"].append(
                    p
                )
        decay, no_decay = decay_groups(self.model, hp.weight_decay, params=parts["adapter"])
        groups = [
            {"name": "adapter", "lr": hp.lr, **decay},
            {"name": "adapter_no_decay", "lr": hp.lr, **no_decay},
            {"name": "lora", "params": parts["lora"], "lr": lora_lr, "weight_decay": 0.0},
        ]
        if parts["encoder"]:
            decay, no_decay = decay_groups(self.model.encoder, hp.weight_decay)
            groups += [
                {"name": "encoder", "lr": encoder_lr, **decay},
                {"name": "encoder_no_decay", "lr": encoder_lr, **no_decay},
            ]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = self.parameter_groups()
        if not groups:
            raise ConfigError(
                f"nothing to train: mode {self.adapter_config.mode!r} without LoRA has no trainable parameters; "
                "set `lora: true`, or evaluate the frozen LLM as it is (userfm eval uqa --zero_shot)"
            )
        opt = torch.optim.AdamW(groups, lr=hp.lr)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        sched = get_cosine_with_min_lr_schedule_with_warmup(
            opt, min(hp.warmup_steps, total // 2), total, min_lr_rate=0.1
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- checkpoints and export -------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = {f"model.{k}" for k in self.model.adapter_state_dict()}
        keep |= {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_train_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:
            metrics = {
                k: float(v)
                for k, v in self.trainer.callback_metrics.items()
                if k.startswith("valid/")
            }
            data = getattr(self.trainer, "datamodule", None)
            facts = {}
            if data is not None and getattr(data, "datasets", None):
                facts = {f"{s} questions": len(d) for s, d in data.datasets.items()}
                facts["questions"] = data.hparams.questions
                facts["log"] = data.hparams.log
            out = self.model.save_pretrained(
                self.hparams.export_dir,
                card_data={"metrics": metrics, "training_data": facts},
            )
            rank_zero_info(f"userfm adapters: wrote {out}")


def _resolve_adapter(adapter: AdapterConfig | Mapping[str, Any] | None) -> AdapterConfig:
    """The run's `AdapterConfig`: ``llm`` defaults to `DEFAULT_LLM`; ``encoder`` is required
    by the modes that read it (made absolute, so the saved adapter finds it from anywhere)
    and dropped by the others."""
    from userfm.llm import DEFAULT_LLM

    if adapter is None:
        adapter = AdapterConfig()
    elif isinstance(adapter, Mapping):
        check_fields("adapter", adapter, (f.name for f in fields(AdapterConfig)), "AdapterConfig")
        adapter = AdapterConfig(**adapter)
    encoder = None
    if adapter.reads_encoder:
        if not adapter.encoder:
            raise ConfigError(
                f"`adapter.encoder` is required by mode {adapter.mode!r}: the folder of a saved "
                "encoder (`userfm pretrain export`)"
            )
        encoder = str(Path(adapter.encoder).expanduser().resolve())
    return replace(adapter, encoder=encoder, llm=adapter.llm or DEFAULT_LLM)
