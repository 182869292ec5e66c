"""`AdapterModule`: the Lightning shell that fine-tunes a `UserConditionedLM`.

One shared step for train / valid / test: featurise the histories, tokenise prompt + target
(loss on the target tokens only), forward, log the loss and the share of answers whose every
token is the model's top prediction (teacher-forced exact match, cheap enough for every
validation step). Checkpoints hold only the trainable tensors (the frozen LLM and encoder are
re-loaded from their references), and the adapter directory is written at the end of ``fit``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from userfm.adapters.config import ENCODER_MODES, AdapterConfig
from userfm.adapters.data import QAExample
from userfm.adapters.model import UserConditionedLM
from userfm.adapters.text import pad_right, pad_token_id, qa_ids
from userfm.errors import ConfigError


class AdapterModule(L.LightningModule):
    """Fine-tune an adapter (and optionally LoRA / the encoder) on question records.

    Args:
        encoder: directory of a saved `UserEncoder` (``userfm pretrain export``).
        llm: base LLM, a Hugging Face directory / name or an alias (`userfm.llm.load_llm`).
        llm_cache_dir: where aliases are converted and cached (default: the user cache).
        mode, num_latents, depth, heads, dim_head, cross_attn_every, layers_path,
            text_tokens, lora, lora_r, lora_alpha, lora_dropout, lora_target_modules,
            train_encoder: `AdapterConfig` fields ("text" and "none" are the baselines).
        lr: AdamW learning rate (adapter, LoRA and encoder alike).
        weight_decay: AdamW weight decay of 2-D weights.
        warmup_steps: linear warmup, then cosine decay to 10% over the run.
        max_length: prompt + target tokens per example (the prompt is cut from the left); in
            "text" mode it must hold the ``text_tokens`` of history too.
        export_dir: where ``fit`` writes the adapter directory (None: not written).
    """

    def __init__(
        self,
        encoder: str = "runs/demo/encoder",
        llm: str = "smollm2-135m-instruct",
        llm_cache_dir: str | None = None,
        mode: str = "soft_prompt",
        num_latents: int = 8,
        depth: int = 2,
        heads: int = 4,
        dim_head: int = 32,
        cross_attn_every: int = 4,
        layers_path: str | None = None,
        text_tokens: int = 256,
        lora: bool = False,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | None = None,
        train_encoder: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 20,
        max_length: int = 384,
        export_dir: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.adapter_config = AdapterConfig(
            mode=mode,
            num_latents=num_latents,
            depth=depth,
            heads=heads,
            dim_head=dim_head,
            cross_attn_every=cross_attn_every,
            layers_path=layers_path,
            text_tokens=text_tokens,
            lora=lora,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            lora_target_modules=lora_target_modules,
            train_encoder=train_encoder,
            encoder=str(Path(encoder).expanduser().resolve()) if mode in ENCODER_MODES else None,
            llm=llm,
        )
        if lr <= 0 or warmup_steps < 0 or max_length < 8:
            raise ConfigError("`lr` must be > 0, `warmup_steps` >= 0 and `max_length` >= 8")
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
        llm, tokenizer = load_llm(hp.llm, cache_dir=hp.llm_cache_dir)
        self.model = UserConditionedLM(encoder, llm, tokenizer, self.adapter_config)
        rank_zero_info(f"userfm adapters: {self.model.describe()}")

    # ---- the shared step --------------------------------------------------------------
    def _tensors(self, examples: list[QAExample]) -> dict[str, torch.Tensor]:
        tok = self.model.tokenizer
        rows = [
            qa_ids(
                tok,
                self.model.prompt_text(e.history, e.prompt),
                e.target,
                max_length=self.hparams.max_length,
            )
            for e in examples
        ]
        ids, mask = pad_right([r[0] for r in rows], pad_token_id(tok))
        labels, _ = pad_right([r[1] for r in rows], -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def _step(self, examples: list[QAExample], stage: str) -> torch.Tensor:
        t = {k: v.to(self.device) for k, v in self._tensors(examples).items()}
        out = self.model([e.history for e in examples], **t)
        labels = t["labels"]
        logits = out.logits[:, -labels.shape[1] :]  # soft prompts add K positions in front
        hit = (logits[:, :-1].argmax(-1) == labels[:, 1:]) | (labels[:, 1:] == -100)
        exact = hit.all(dim=1).float().mean()
        n = len(examples)
        sync = stage != "train"
        self.log(f"{stage}/loss", out.loss, batch_size=n, prog_bar=True, sync_dist=sync)
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

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(
                f"nothing to train: mode {hp.mode!r} without LoRA has no trainable parameters; "
                "set `lora: true`, or evaluate the frozen LLM as it is (userfm eval uqa --zero-shot)"
            )
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": hp.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=hp.lr,
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(hp.warmup_steps, total // 2)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
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
            out = self.model.save_adapter(
                self.hparams.export_dir,
                card_data={"metrics": metrics, "training_data": facts},
            )
            rank_zero_info(f"userfm adapters: wrote {out}")
