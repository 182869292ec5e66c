"""`UserConditionedLM`: behaviour encoder -> Perceiver -> frozen causal LM (+ optional LoRA).

    histories --encoder--> states (B, T, D) --PerceiverResampler--> latents (B, K, H)
      soft_prompt: latents scaled to the token embeddings, prepended to inputs_embeds
      cross_attn:  latents read by gated cross-attention blocks before every N-th layer
    the baselines, trained the same way:
      text:        the history written as text before the question (a token budget)
      none:        the question alone

The LLM is frozen explicitly at construction and checked (no trainable LLM parameter unless
LoRA is on: then only the LoRA matrices train); the encoder is frozen unless
``train_encoder``. Frozen parts stay in eval mode while training (no dropout noise in what
does not learn).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from userfm.adapters.config import AdapterConfig
from userfm.adapters.cross_attn import (
    CrossAttentionHooks,
    GatedCrossAttention,
    UserContext,
    cross_attention_positions,
    find_decoder_layers,
)
from userfm.adapters.perceiver import PerceiverResampler
from userfm.adapters.soft_prompt import SoftPromptScale, prepend_soft_prompt, token_embedding_rms
from userfm.adapters.text import pad_right, pad_token_id, prompt_ids
from userfm.data.batch import Batch
from userfm.data.collate import collate
from userfm.data.history_text import history_lines, history_prompt
from userfm.data.log import UserHistory
from userfm.encoder import UserEncoder
from userfm.errors import ConfigError

logger = logging.getLogger("userfm.adapters")

WEIGHTS_FILE = "adapter.safetensors"
LORA_DIR = "lora"
CARD_FILE = "README.md"
ADAPTER_PREFIXES = ("resampler.", "prompt_scale.", "xattn.")


class UserConditionedLM(nn.Module):
    """A frozen causal LM that reads a user's history through an adapter.

    Args:
        encoder: the behaviour encoder (with vocabularies, to read raw histories); not used
            (may be None) in the "text" and "none" modes.
        llm: a Hugging Face causal LM; it is frozen here.
        tokenizer: its tokenizer.
        config: the adapter's shape and mode.
    """

    def __init__(
        self, encoder: UserEncoder | None, llm: nn.Module, tokenizer, config: AdapterConfig
    ):
        super().__init__()
        self.config = config
        llm.requires_grad_(False)
        hidden = llm.get_input_embeddings().embedding_dim  # H
        self.resampler = None
        if config.reads_encoder:
            if encoder is None:
                raise ConfigError(f"mode {config.mode!r} reads a behaviour encoder; pass one")
            encoder.requires_grad_(config.train_encoder)
            self.resampler = PerceiverResampler(
                dim=encoder.config.hidden_size,
                out_dim=hidden,
                num_latents=config.num_latents,
                depth=config.depth,
                heads=config.heads,
                dim_head=config.dim_head,
            )
        else:
            encoder = None  # the baselines never read it
        self.prompt_scale = None
        self.xattn = None
        self._context = UserContext()
        if config.mode == "soft_prompt":
            self.prompt_scale = SoftPromptScale(token_embedding_rms(llm.get_input_embeddings()))
        if config.lora:
            llm = _add_lora(llm, config)
        if config.mode == "cross_attn":
            layers = find_decoder_layers(llm, config.layers_path)
            positions = cross_attention_positions(len(layers), config.cross_attn_every)
            self.xattn = nn.ModuleList(
                GatedCrossAttention(dim=hidden, heads=config.heads, dim_head=config.dim_head)
                for _ in positions
            )
            self._hooks = CrossAttentionHooks(layers, self.xattn, positions, self._context)
        self.encoder, self.llm, self.tokenizer = encoder, llm, tokenizer
        self.check_frozen()
        self.train(False)

    # ---- parameters ---------------------------------------------------------------------
    def check_frozen(self) -> None:
        """Raise if an LLM parameter other than LoRA's would train."""
        leaked = [n for n, p in self.llm.named_parameters() if p.requires_grad and "lora_" not in n]
        if leaked:
            raise RuntimeError(f"LLM parameters are trainable but must be frozen: {leaked[:5]}")

    def trainable_parameters(self) -> dict[str, int]:
        """Trainable parameter counts: adapter, LoRA, encoder, total; and the frozen count."""
        counts = dict.fromkeys(("adapter", "lora", "encoder", "frozen"), 0)
        for name, p in self.named_parameters():
            if not p.requires_grad:
                counts["frozen"] += p.numel()
            elif name.startswith("llm."):
                counts["lora"] += p.numel()
            elif name.startswith("encoder."):
                counts["encoder"] += p.numel()
            else:
                counts["adapter"] += p.numel()
        counts["trainable"] = counts["adapter"] + counts["lora"] + counts["encoder"]
        return counts

    def describe(self) -> str:
        c = self.trainable_parameters()
        cfg = self.config
        what = {
            "text": f"text-prompt baseline (<= {cfg.text_tokens} history tokens)",
            "none": "no-user baseline",
        }.get(cfg.mode, f"{cfg.mode} adapter, K={cfg.num_latents}")
        return (
            f"{what}{', LoRA r=' + str(cfg.lora_r) if cfg.lora else ''}: "
            f"trainable {c['trainable']:,} (adapter {c['adapter']:,}, LoRA {c['lora']:,}, "
            f"encoder {c['encoder']:,}); frozen {c['frozen']:,}"
        )

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def train(self, mode: bool = True) -> UserConditionedLM:
        super().train(mode)
        if self.encoder is not None:
            self.encoder.train(mode and self.config.train_encoder)
        self.llm.train(mode and self.config.lora)  # LoRA dropout; the frozen LLM has none
        return self

    # ---- user context -------------------------------------------------------------------
    def prompt_text(self, history: UserHistory, question: str) -> str:
        """What the LLM is asked: in "text" mode the history as text (at most ``text_tokens``
        tokens of it, most recent first) and then the question; otherwise the question."""
        if self.config.mode != "text":
            return question
        if not isinstance(history, UserHistory):
            raise ConfigError('"text" mode reads raw `UserHistory` objects, not a `Batch`')
        lines = history_lines(history)
        return history_prompt(self.tokenizer, lines, question, max_tokens=self.config.text_tokens)

    def to_batch(self, histories: Batch | Sequence[UserHistory]) -> Batch:
        """Featurise raw histories with the encoder's vocabularies (a `Batch` passes through)."""
        if isinstance(histories, Batch):
            return histories
        featurizer = self.encoder.featurizer()
        return collate([featurizer(h) for h in histories])

    def user_latents(self, histories: Batch | Sequence[UserHistory]) -> torch.Tensor:
        """(B, K, H) latents of B histories (scaled to the token embeddings for soft prompts)."""
        if self.resampler is None:
            raise ConfigError(f"mode {self.config.mode!r} has no user latents")
        batch = self.to_batch(histories).to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.train_encoder):
            states = self.encoder(batch).states  # (B, T, D)
        latents = self.resampler(states, batch.mask)  # (B, K, H)
        if self.prompt_scale is not None:
            latents = self.prompt_scale(latents)
        return latents

    @contextlib.contextmanager
    def user_context(self, latents: torch.Tensor) -> Iterator[None]:
        """Cross-attention mode: the blocks read ``latents`` inside this block."""
        self._context.latents = latents
        try:
            yield
        finally:
            self._context.latents = None

    # ---- forward / generate ---------------------------------------------------------------
    def forward(
        self,
        histories: Batch | Sequence[UserHistory],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ):
        """LM output (``loss`` when ``labels`` are given) of right-padded token ids.

        Args:
            histories: B histories (or their `Batch`); not read in the "text" mode (the
                history is already in the prompt, see `prompt_text`) and the "none" mode.
            input_ids: (B, L) right-padded token ids.
            attention_mask: (B, L) 1 at tokens; all ones when None.
            labels: (B, L) targets, -100 where there is no loss.

        Returns:
            The LLM's ``CausalLMOutputWithPast``; for soft prompts the logits cover the K
            prompt positions too, (B, K + L, V).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if not self.config.reads_encoder:
            return self.llm(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        latents = self.user_latents(histories)
        if self.config.mode == "soft_prompt":
            embeds = self.llm.get_input_embeddings()(input_ids)  # (B, L, H)
            embeds, mask, labels = prepend_soft_prompt(latents, embeds, attention_mask, labels)
            return self.llm(inputs_embeds=embeds, attention_mask=mask, labels=labels)
        with self.user_context(latents):
            return self.llm(input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    def _prompt_batch(
        self, histories: Batch | Sequence[UserHistory], prompts: Sequence[str]
    ) -> tuple[Batch | None, list[list[int]]]:
        """The histories' `Batch` (None when the mode reads no encoder) and each prompt's
        token ids (one prompt per history, history text included in "text" mode)."""
        if len(prompts) != len(histories):
            raise ConfigError(f"{len(prompts)} prompts for {len(histories)} histories")
        batch = self.to_batch(histories) if self.config.reads_encoder else None
        texts = [self.prompt_text(h, p) for h, p in zip(histories, prompts, strict=True)]
        return batch, [prompt_ids(self.tokenizer, t) for t in texts]

    def prompt_lengths(
        self, histories: Batch | Sequence[UserHistory], prompts: Sequence[str]
    ) -> list[int]:
        """Tokens the LLM reads in front of each answer: the prompt (with the history text in
        "text" mode) plus the K soft-prompt vectors in "soft_prompt" mode."""
        _, ids = self._prompt_batch(histories, prompts)
        extra = self.config.num_latents if self.config.mode == "soft_prompt" else 0
        return [len(i) + extra for i in ids]

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode inside the block (no dropout), the previous mode restored after."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    @torch.no_grad()
    def generate(
        self,
        histories: Batch | Sequence[UserHistory],
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 16,
        **generate_kwargs,
    ) -> list[str]:
        """Answer one question per user (greedy by default; kwargs go to ``llm.generate``).

        Args:
            histories: B histories (or their `Batch`).
            prompts: B questions; each is wrapped in the LLM's chat template.
            max_new_tokens: answer length limit.

        Returns:
            B decoded answers (special tokens removed, stripped).
        """
        batch, ids = self._prompt_batch(histories, prompts)
        with self._evaluating():
            latents = self.user_latents(batch) if batch is not None else None  # (B, K, H)
            pad = pad_token_id(self.tokenizer)
            generate_kwargs = {"do_sample": False, "pad_token_id": pad, **generate_kwargs}
            embed = self.llm.get_input_embeddings()
            if self.config.mode == "soft_prompt":
                # [soft prompt; tokens], left-padded: generation appends on the right
                rows = [
                    torch.cat([latents[b].to(embed.weight.dtype), embed(_ids(i, embed))], dim=0)
                    for b, i in enumerate(ids)
                ]
                embeds, mask = _pad_left(rows)
                out = self.llm.generate(
                    inputs_embeds=embeds,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    **generate_kwargs,
                )
                new = out  # with inputs_embeds only, generate returns the new tokens alone
            else:
                input_ids, mask = _pad_left([_ids(i, embed) for i in ids], value=pad)
                context = (
                    self.user_context(latents) if latents is not None else contextlib.nullcontext()
                )
                with context:
                    out = self.llm.generate(
                        input_ids=input_ids,
                        attention_mask=mask,
                        max_new_tokens=max_new_tokens,
                        **generate_kwargs,
                    )
                new = out[:, input_ids.shape[1] :]
            return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    @torch.no_grad()
    def choose(
        self,
        histories: Batch | Sequence[UserHistory],
        prompts: Sequence[str],
        options: Sequence[str] = ("A", "B", "C", "D"),
    ) -> list[str]:
        """Multiple choice in one forward pass: for each prompt, the option whose first token
        the LLM scores highest where the answer starts (cheaper and steadier than parsing
        generated text).

        Args:
            histories: B histories (or their `Batch`).
            prompts: B questions (wrapped in the chat template, as for training).
            options: the answer strings to choose from, e.g. option letters; their first
                tokens must differ.

        Returns:
            B chosen options.
        """
        first = [self.tokenizer(o, add_special_tokens=False)["input_ids"][:1] for o in options]
        if any(not f for f in first) or len({f[0] for f in first}) < len(options):
            raise ConfigError(f"`options` {list(options)} must start with distinct tokens")
        option_ids = torch.tensor([f[0] for f in first])
        batch, ids = self._prompt_batch(histories, prompts)
        input_ids, mask = pad_right(ids, pad_token_id(self.tokenizer))
        with self._evaluating():
            device = self.device
            logits = self(batch, input_ids.to(device), mask.to(device)).logits  # (B, K? + L, V)
        offset = logits.shape[1] - input_ids.shape[1]  # K soft-prompt positions, or 0
        last = offset + mask.sum(dim=1) - 1  # (B,) each prompt's last token
        scores = logits[torch.arange(len(ids)), last.to(logits.device)][:, option_ids]
        return [options[i] for i in scores.argmax(dim=-1).tolist()]

    # ---- save / load ----------------------------------------------------------------------
    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's own tensors (+ the encoder's when it is trained); no LLM weights."""
        keep = ADAPTER_PREFIXES + (("encoder.",) if self.config.train_encoder else ())
        return {k: v for k, v in self.state_dict().items() if k.startswith(keep)}

    def save_adapter(self, directory: str | Path, *, card_data: dict | None = None) -> Path:
        """Write adapter_config.json, adapter.safetensors, lora/ (peft's own format, when LoRA
        is on) and README.md (a card naming the encoder and base LLM).

        Args:
            directory: output folder (created).
            card_data: optional ``metrics`` (name -> value) and ``training_data`` (facts).
        """
        from userfm.adapters.card import render_adapter_card

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.adapter_state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE))
        if self.config.lora:
            self.llm.save_pretrained(str(directory / LORA_DIR))
        (directory / CARD_FILE).write_text(render_adapter_card(self, card_data), encoding="utf-8")
        return directory

    @classmethod
    def from_adapter(
        cls,
        directory: str | Path,
        *,
        encoder: UserEncoder | None = None,
        llm: nn.Module | None = None,
        tokenizer=None,
    ) -> UserConditionedLM:
        """Load a directory written by `save_adapter`.

        The encoder and LLM are loaded from the references in adapter_config.json unless
        given (pass them when the recorded paths are not valid on this machine).
        """
        from userfm.llm import load_llm

        directory = Path(directory)
        config = AdapterConfig.load(directory)
        if encoder is None and config.reads_encoder:
            if not config.encoder:
                raise ConfigError(f"{directory}: no encoder recorded; pass `encoder=`")
            encoder = UserEncoder.from_pretrained(config.encoder)
        if llm is None:
            if not config.llm:
                raise ConfigError(f"{directory}: no base LLM recorded; pass `llm=`")
            llm, tokenizer = load_llm(config.llm)
        model = cls(encoder, llm, tokenizer, config)
        missing, unexpected = model.load_state_dict(
            load_file(str(directory / WEIGHTS_FILE)), strict=False
        )
        wanted = set(model.adapter_state_dict())
        if unexpected or wanted & set(missing):
            raise ConfigError(
                f"{directory / WEIGHTS_FILE} does not match its config: missing "
                f"{sorted(wanted & set(missing))[:5]}, unexpected {unexpected[:5]}"
            )
        if config.lora:
            from peft import set_peft_model_state_dict

            lora_file = directory / LORA_DIR / "adapter_model.safetensors"
            set_peft_model_state_dict(model.llm, load_file(str(lora_file)))
        return model


def _add_lora(llm: nn.Module, config: AdapterConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(llm, lora)
    except ValueError as e:  # peft has no default targets for this model type
        raise ConfigError(f"LoRA: {e}; set `lora_target_modules`") from e


def _ids(ids: list[int], embed: nn.Embedding) -> torch.Tensor:
    return torch.tensor(ids, dtype=torch.long, device=embed.weight.device)


def _pad_left(
    rows: list[torch.Tensor], value: float | int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad (L_b, ...) tensors to (B, L, ...) and a (B, L) attention mask."""
    L = max(len(r) for r in rows)
    out = rows[0].new_full((len(rows), L, *rows[0].shape[1:]), value)
    mask = torch.zeros(len(rows), L, dtype=torch.long, device=rows[0].device)
    for b, r in enumerate(rows):
        out[b, L - len(r) :] = r
        mask[b, L - len(r) :] = 1
    return out, mask
