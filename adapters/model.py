"""`UserConditionedLM`: behaviour encoder -> Perceiver -> frozen causal LM (+ optional LoRA).

    histories --encoder--> states (B, T, D) --PerceiverResampler--> latents (B, K, H)
      (+ recent_events: the last R event states, projected: (B, K + R, H); see AdapterConfig)
      soft_prompt: latents scaled to the token embeddings, in K + R slots inside the user turn
      cross_attn:  latents read by gated cross-attention blocks before every N-th layer
    the baselines, trained the same way:
      text:        the history written as text before the question (a token budget)
      none:        the question alone

Training and scoring read the answer text only: `answer_loss` is the likelihood of the
answer text + end of turn, `option_logprobs` the likelihood of each multiple-choice option as
that answer (cloze), and both run the LLM's output layer over the answer positions alone.

The LLM is frozen explicitly at construction and checked (no trainable LLM parameter unless
LoRA is on: then only the LoRA matrices train); the encoder is frozen unless
``train_encoder``. Frozen parts stay in eval mode while training (no dropout noise in what
does not learn).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
from userfm.adapters.recent_events import RecentEvents
from userfm.adapters.soft_prompt import SoftPromptScale, token_embedding_rms
from userfm.adapters.text import (
    PromptTokens,
    TokenBatch,
    answer_ids,
    pad_token_id,
    prompt_tokens,
    token_batch,
)
from userfm.data.batch import Batch
from userfm.data.collate import collate
from userfm.data.history_text import history_lines, history_prompt, lines_within
from userfm.data.log import UserHistory
from userfm.encoder import UserEncoder
from userfm.errors import ConfigError

logger = logging.getLogger("userfm.adapters")

WEIGHTS_FILE = "adapter.safetensors"
LORA_DIR = "lora"
CARD_FILE = "README.md"
ADAPTER_PREFIXES = ("resampler.", "recent.", "prompt_scale.", "xattn.")


@dataclass
class AnswerLogprobs:
    """Per-token scores of answers (`UserConditionedLM.answer_logprobs`).

    Attributes:
        logprobs: (R, A) log-probability of each of the last A tokens of each row.
        mask: (R, A) True at answer tokens (rows with shorter answers start later).
        top1: (R, A) True where the token is the LLM's top prediction.
    """

    logprobs: torch.Tensor
    mask: torch.Tensor
    top1: torch.Tensor


@dataclass
class AnswerLoss:
    """The training objective of a batch: ``loss`` (scalar, mean NLL per answer token) and
    ``exact`` ((B,) bool: every answer token is the top prediction, teacher-forced)."""

    loss: torch.Tensor
    exact: torch.Tensor


@dataclass
class OptionScores:
    """One question's option scores: summed log-probability and answer tokens per option."""

    logprob: list[float]
    tokens: list[int]

    def best(self, per_token: bool = False) -> int:
        """Index of the best option: by summed log-probability, or by its mean per token."""
        values = (
            [s / max(n, 1) for s, n in zip(self.logprob, self.tokens, strict=True)]
            if per_token
            else self.logprob
        )
        return max(range(len(values)), key=values.__getitem__)


class UserConditionedLM(nn.Module):
    """A frozen causal LM that reads a user's history through an adapter.

    Args:
        encoder: the behaviour encoder (with vocabularies, to read raw histories); not used
            (may be None) in the "text" and "none" modes.
        llm: a Hugging Face causal LM; it is frozen here.
        tokenizer: its tokenizer.
        config: the adapter's shape and mode.
        lora_dir: with ``config.lora``, a folder of trained LoRA weights in peft's format
            (``lora/`` of a saved adapter), loaded with `peft.PeftModel.from_pretrained`;
            None: new LoRA matrices (`peft.get_peft_model`), for training.
    """

    def __init__(
        self,
        encoder: UserEncoder | None,
        llm: nn.Module,
        tokenizer,
        config: AdapterConfig,
        *,
        lora_dir: str | Path | None = None,
    ):
        super().__init__()
        self.config = config
        llm.requires_grad_(False)
        hidden = llm.get_input_embeddings().embedding_dim  # H
        self.resampler = self.recent = None
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
            if config.recent_text and not encoder.config.text_dim:
                raise ConfigError(
                    "`recent_text` reads the encoder's item text vectors, and this encoder has "
                    "none (`text_dim` 0): pretrain it with an items table (`data.items`) or "
                    "set `recent_text: false`"
                )
            if config.recent_events:
                self.recent = RecentEvents(
                    dim=encoder.config.hidden_size,
                    out_dim=hidden,
                    count=config.recent_events,
                    text_dim=encoder.config.text_dim if config.recent_text else 0,
                )
        else:
            encoder = None  # the baselines never read it
        self.prompt_scale = None
        self.xattn = None
        self._context = UserContext()
        if config.mode == "soft_prompt":
            self.prompt_scale = SoftPromptScale(token_embedding_rms(llm.get_input_embeddings()))
        if config.lora:
            llm = _add_lora(llm, config, lora_dir)
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
        }.get(
            cfg.mode,
            f"{cfg.mode} adapter, K={cfg.num_latents}"
            + (f" + {cfg.recent_events} recent events" if cfg.recent_events else "")
            + (" with their item text" if cfg.recent_text else ""),
        )
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
        """The user message the LLM is given: in "text" mode the history as text (at most
        ``text_tokens`` tokens of it, most recent first) and then the question; otherwise
        the question."""
        if self.config.mode != "text":
            return question
        if not isinstance(history, UserHistory):
            raise ConfigError('"text" mode reads raw `UserHistory` objects, not a `Batch`')
        lines = history_lines(history)
        return history_prompt(self.tokenizer, lines, question, max_tokens=self.config.text_tokens)

    def events_read(self, history: UserHistory) -> int:
        """How many of ``history``'s events reach the LLM: in "text" mode the most recent ones
        that fit in ``text_tokens``; through the encoder at most its ``max_len``; none in
        "none" mode."""
        if self.config.mode == "none":
            return 0
        if self.config.mode == "text":
            lines = history_lines(history)
            return lines_within(self.tokenizer, lines, self.config.text_tokens)
        return min(len(history), self.encoder.config.max_len)

    def prompt_tokens(self, history: UserHistory, question: str) -> PromptTokens:
        """The prompt's token ids, with the K soft-prompt slots inside the user turn in
        "soft_prompt" mode (`userfm.adapters.text.prompt_tokens`)."""
        slots = self.config.num_user_vectors if self.config.mode == "soft_prompt" else 0
        return prompt_tokens(
            self.tokenizer,
            self.prompt_text(history, question),
            num_slots=slots,
            position=self.config.user_position,
        )

    def to_batch(self, histories: Batch | Sequence[UserHistory]) -> Batch:
        """Featurise raw histories with the encoder's vocabularies (a `Batch` passes through)."""
        if isinstance(histories, Batch):
            return histories
        featurizer = self.encoder.featurizer()
        return collate([featurizer(h) for h in histories])

    def user_latents(self, histories: Batch | Sequence[UserHistory]) -> torch.Tensor:
        """(B, K + R, H) user vectors of B histories: the K Perceiver latents, then the R most
        recent events (``recent_events``); soft prompts scaled to the token embeddings."""
        if self.resampler is None:
            raise ConfigError(f"mode {self.config.mode!r} has no user latents")
        batch = self.to_batch(histories).to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.train_encoder):
            states = self.encoder(batch).states  # (B, T, D)
        latents = self.resampler(states, batch.mask)  # (B, K, H)
        if self.recent is not None:
            text = (
                self.encoder.item_text_features(batch.items) if self.config.recent_text else None
            )  # (B, T, E)
            recent = self.recent(states, batch.mask, text)  # (B, R, H)
            latents = torch.cat([latents, recent], dim=1)  # (B, K+R, H)
        if self.prompt_scale is not None:
            latents = self.prompt_scale(latents)
        return latents

    def _latents_if_any(self, histories: Batch | Sequence[UserHistory]) -> torch.Tensor | None:
        """`user_latents` in the modes that read the encoder; None in "text" and "none"."""
        return self.user_latents(histories) if self.config.reads_encoder else None

    @contextlib.contextmanager
    def user_context(self, latents: torch.Tensor | None) -> Iterator[None]:
        """Cross-attention mode: the blocks read ``latents`` inside this block (a no-op for
        the other modes)."""
        if self.config.mode != "cross_attn" or latents is None:
            yield
            return
        self._context.latents = latents
        try:
            yield
        finally:
            self._context.latents = None

    # ---- forward ----------------------------------------------------------------------------
    def forward(
        self,
        histories: Batch | Sequence[UserHistory] | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        user_slots: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        latents: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        use_cache: bool = False,
    ):
        """LM output of token ids with the user context in place.

        Args:
            histories: R histories (or their `Batch`); not read in the "text" and "none"
                modes, nor when ``latents`` are given.
            input_ids: (R, L) token ids; in "soft_prompt" mode with K placeholder ids from
                ``user_slots`` on (`prompt_tokens` / `token_batch` put them there).
            attention_mask: (R, L) 1 at tokens; all ones when None.
            user_slots: (R,) index of each row's first soft-prompt slot ("soft_prompt" mode).
            position_ids: (R, L) positions (left-padded rows need them); None: 0, 1, ...
            latents: (R, K, H) user latents already computed (`user_latents`), e.g. one
                user's repeated over several answer options.
            logits_to_keep: compute the output layer at the last N positions only (0: all).
            use_cache: return the LLM's KV cache (``past_key_values``).

        Returns:
            The LLM's ``CausalLMOutputWithPast`` (logits (R, N or L, V)).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs = {
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "use_cache": use_cache,
        }
        if logits_to_keep:
            kwargs["logits_to_keep"] = logits_to_keep
        if not self.config.reads_encoder:
            return self.llm(input_ids=input_ids, **kwargs)
        if latents is None:
            latents = self.user_latents(histories)
        if self.config.mode == "soft_prompt":
            embeds = self.with_soft_prompt(input_ids, latents, user_slots)
            return self.llm(inputs_embeds=embeds, **kwargs)
        with self.user_context(latents):
            return self.llm(input_ids=input_ids, **kwargs)

    def forward_batch(
        self,
        batch: TokenBatch,
        latents: torch.Tensor | None,
        *,
        logits_to_keep: int = 0,
        use_cache: bool = False,
    ):
        """`forward` over a `TokenBatch` (left-padded rows, their positions and slots) with
        the rows' (R, K, H) user ``latents`` (None in the "text" / "none" modes)."""
        return self(
            None,
            batch.input_ids,
            batch.attention_mask,
            user_slots=batch.user_slots,
            position_ids=batch.position_ids,
            latents=latents,
            logits_to_keep=logits_to_keep,
            use_cache=use_cache,
        )

    def with_soft_prompt(
        self, input_ids: torch.Tensor, latents: torch.Tensor, user_slots: torch.Tensor | None
    ) -> torch.Tensor:
        """(R, L, H) token embeddings with the K slots from ``user_slots`` replaced by the
        (R, K, H) latents (in the LLM's dtype)."""
        if user_slots is None:
            raise ConfigError(
                "soft_prompt mode needs `user_slots`: build the ids with `encode` / "
                "`userfm.adapters.text.prompt_tokens`, which leave room for the K vectors"
            )
        embeds = self.llm.get_input_embeddings()(input_ids)  # (R, L, H)
        R, K, H = latents.shape
        index = user_slots.to(embeds.device)[:, None] + torch.arange(K, device=embeds.device)
        index = index[:, :, None].expand(R, K, H)  # (R, K, H)
        return embeds.scatter(1, index, latents.to(embeds.dtype))

    def encode(
        self,
        histories: Batch | Sequence[UserHistory],
        prompts: Sequence[str],
        answers: Sequence[str] | None = None,
    ) -> TokenBatch:
        """One left-padded row per (history, prompt[, answer]): `TokenBatch`."""
        tokens = self.prompts_tokens(histories, prompts)
        ids = None if answers is None else [answer_ids(self.tokenizer, a) for a in answers]
        return token_batch(tokens, ids, pad_token_id(self.tokenizer))

    def prompts_tokens(
        self, histories: Batch | Sequence[UserHistory], prompts: Sequence[str]
    ) -> list[PromptTokens]:
        """`prompt_tokens` of each (history, prompt) pair (a `Batch` of histories serves every
        mode but "text", which writes the raw history into the prompt)."""
        if len(prompts) != len(histories):
            raise ConfigError(f"{len(prompts)} prompts for {len(histories)} histories")
        if isinstance(histories, Batch) and self.config.mode == "text":
            raise ConfigError('"text" mode reads raw `UserHistory` objects, not a `Batch`')
        hs = histories if not isinstance(histories, Batch) else [None] * len(prompts)
        return [self.prompt_tokens(h, p) for h, p in zip(hs, prompts, strict=True)]

    def answer_logprobs(
        self, batch: TokenBatch, latents: torch.Tensor | None = None
    ) -> AnswerLogprobs:
        """Log-probabilities of each row's answer tokens, with the output layer run over the
        answer positions only (the full vocabulary at every prompt position was most of a
        training step's time, issue 17).

        Args:
            batch: rows ending with their answers (`encode` with ``answers``).
            latents: (R, K, H) user latents of the rows ("soft_prompt" / "cross_attn").
        """
        targets, mask = batch.answer_targets()  # (R, A)
        A = targets.shape[1]
        out = self.forward_batch(batch, latents, logits_to_keep=A + 1)
        logits = out.logits[:, -(A + 1) : -1].float()  # (R, A, V): column a predicts token a
        logprobs = logits.log_softmax(dim=-1).gather(-1, targets[..., None]).squeeze(-1)
        top1 = logits.argmax(dim=-1) == targets
        return AnswerLogprobs(logprobs=logprobs, mask=mask, top1=top1)

    def answer_loss(
        self,
        histories: Batch | Sequence[UserHistory],
        prompts: Sequence[str],
        answers: Sequence[str],
        *,
        max_length: int | None = None,
    ) -> AnswerLoss:
        """Mean negative log-likelihood of the answer tokens (answer text + end of turn) and
        each row's teacher-forced exact match: the training objective.

        Args:
            histories: B histories (or their `Batch`).
            prompts: B questions (each a user turn).
            answers: B answer texts.
            max_length: raise `ConfigError` when a prompt + answer is longer (None: no limit).
        """
        batch = self.encode(histories, prompts, answers).to(self.device)
        if max_length is not None and batch.input_ids.shape[1] > max_length:
            longest = int(batch.attention_mask.sum(dim=1).max())
            raise ConfigError(
                f"a prompt + answer of {longest} tokens exceeds `max_length` ({max_length}); "
                "raise `max_length` (or lower `text_tokens` in text mode)"
            )
        latents = self._latents_if_any(histories)
        scored = self.answer_logprobs(batch, latents)
        m = scored.mask
        loss = -(scored.logprobs * m).sum() / m.sum().clamp(min=1)
        exact = (scored.top1 | ~m).all(dim=1)  # (B,)
        return AnswerLoss(loss=loss, exact=exact)

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode inside the block (no dropout), the previous mode restored after."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    # ---- answering --------------------------------------------------------------------------
    @torch.no_grad()
    def option_logprobs(
        self,
        histories: Batch | Sequence[UserHistory],
        prompts: Sequence[str],
        options: Sequence[Sequence[str]],
    ) -> list[OptionScores]:
        """Multiple choice by likelihood (cloze): the log-probability of each option's text
        (+ end of turn) as the answer to its question, one forward pass for all options.

        Letters are not scored: a small instruct LLM picks "A" whatever the question, so a
        letter score hides whether it read anything (issue 17: 100 of 100); an option's own
        text is what training teaches it to produce.

        Args:
            histories: B histories (or their `Batch`).
            prompts: B questions, without the option list.
            options: B lists of option texts.

        Returns:
            B `OptionScores` (summed log-probability and token count per option).
        """
        if len(options) != len(prompts):
            raise ConfigError(f"{len(options)} option lists for {len(prompts)} prompts")
        sizes = [len(o) for o in options]
        if min(sizes, default=1) < 1:
            raise ConfigError("every question needs at least one option")
        rows = [b for b, n in enumerate(sizes) for _ in range(n)]
        answers = [answer_ids(self.tokenizer, o) for opts in options for o in opts]
        with self._evaluating():
            latents = self._latents_if_any(histories)
            prompt = self.encode(histories, prompts).to(self.device)
            logprobs, mask = self._continuation_logprobs(prompt, latents, rows, answers)
        total = (logprobs * mask).sum(dim=1).tolist()
        count = mask.sum(dim=1).tolist()
        out, start = [], 0
        for n in sizes:
            out.append(OptionScores(total[start : start + n], count[start : start + n]))
            start += n
        return out

    def _continuation_logprobs(
        self,
        prompt: TokenBatch,
        latents: torch.Tensor | None,
        rows: list[int],
        answers: list[list[int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, A) log-probabilities of R answers and (R, A) mask of their tokens, answer r
        continuing prompt ``rows[r]``. Each prompt is read once and its KV cache is shared by
        its answers: options are short, so this costs about one prompt pass, not one per
        option.
        """
        pad = pad_token_id(self.tokenizer)
        out = self.forward_batch(prompt, latents, logits_to_keep=1, use_cache=True)
        first = out.logits[:, -1].float().log_softmax(dim=-1)  # (B, V): predicts token 0
        index = torch.tensor(rows, device=self.device)
        # transformers 5 names the KV cache `cache`, earlier versions `past_key_values`
        cache_key = "cache" if "cache" in out else "past_key_values"
        cache = out[cache_key]
        cache.reorder_cache(index)  # (B, ...) -> (R, ...): each option row gets its prompt's
        A = max(len(a) for a in answers)
        targets = torch.full((len(rows), A), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(rows), A), dtype=torch.bool, device=self.device)
        for r, a in enumerate(answers):
            targets[r, : len(a)] = torch.tensor(a, device=self.device)
            mask[r, : len(a)] = True
        logprobs = first[index].gather(1, targets[:, :1])  # (R, 1)
        if A > 1:  # the rest: read tokens 0..A-2 after the cached prompt
            feed = targets[:, :-1]  # (R, A - 1), right-padded
            attention = torch.cat([prompt.attention_mask[index], mask[:, :-1].long()], dim=1)
            start = prompt.attention_mask[index].sum(dim=1, keepdim=True)  # (R, 1)
            positions = start + torch.arange(A - 1, device=self.device)
            context = latents[index] if latents is not None else None
            with self.user_context(context):
                rest = self.llm(
                    input_ids=feed,
                    attention_mask=attention,
                    position_ids=positions,
                    **{cache_key: cache},
                ).logits.float()  # (R, A - 1, V): column j predicts token j + 1
            tail = rest.log_softmax(dim=-1).gather(-1, targets[:, 1:, None]).squeeze(-1)
            logprobs = torch.cat([logprobs, tail], dim=1)
        return logprobs, mask

    @torch.no_grad()
    def choose(
        self,
        histories: Batch | Sequence[UserHistory],
        prompts: Sequence[str],
        options: Sequence[Sequence[str]],
        *,
        per_token: bool = False,
    ) -> list[str]:
        """The most likely option text of each question (`option_logprobs`); ``per_token``
        ranks by the mean log-probability per token instead of the sum."""
        scores = self.option_logprobs(histories, prompts, options)
        return [opts[s.best(per_token)] for opts, s in zip(options, scores, strict=True)]

    @torch.no_grad()
    def choose_letter(
        self,
        histories: Batch | Sequence[UserHistory],
        prompts: Sequence[str],
        letters: Sequence[str] = ("A", "B", "C", "D"),
    ) -> list[str]:
        """A diagnostic, not a score: the letter whose first token the LLM ranks highest
        right after a prompt that lists lettered options. Reports show what it gives beside
        the likelihood scores, and how often it picks each position.

        Args:
            histories: B histories (or their `Batch`).
            prompts: B questions with their lettered option lists.
            letters: the letters to choose from; their first tokens must differ.
        """
        first = [self.tokenizer(o, add_special_tokens=False)["input_ids"][:1] for o in letters]
        if any(not f for f in first) or len({f[0] for f in first}) < len(letters):
            raise ConfigError(f"`letters` {list(letters)} must start with distinct tokens")
        letter_ids = torch.tensor([f[0] for f in first])
        with self._evaluating():
            latents = self._latents_if_any(histories)
            batch = self.encode(histories, prompts).to(self.device)
            out = self.forward_batch(batch, latents, logits_to_keep=1)
            logits = out.logits[:, -1]  # (B, V): left padding puts every prompt's end last
        scores = logits[:, letter_ids.to(logits.device)]
        return [letters[i] for i in scores.argmax(dim=-1).tolist()]

    def prompt_lengths(
        self, histories: Batch | Sequence[UserHistory], prompts: Sequence[str]
    ) -> list[int]:
        """Positions the LLM reads in front of each answer: the prompt (with the history text
        in "text" mode, and the K soft-prompt vectors in "soft_prompt" mode)."""
        return [len(t.ids) for t in self.prompts_tokens(histories, prompts)]

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
        batch = self.encode(histories, prompts).to(self.device)
        with self._evaluating():
            latents = self._latents_if_any(histories)
            pad = pad_token_id(self.tokenizer)
            generate_kwargs = {"do_sample": False, "pad_token_id": pad, **generate_kwargs}
            if self.config.mode == "soft_prompt":
                embeds = self.with_soft_prompt(batch.input_ids, latents, batch.user_slots)
                # with inputs_embeds only, generate returns the new tokens alone
                new = self.llm.generate(
                    inputs_embeds=embeds,
                    attention_mask=batch.attention_mask,
                    max_new_tokens=max_new_tokens,
                    **generate_kwargs,
                )
            else:
                with self.user_context(latents):
                    out = self.llm.generate(
                        input_ids=batch.input_ids,
                        attention_mask=batch.attention_mask,
                        max_new_tokens=max_new_tokens,
                        **generate_kwargs,
                    )
                new = out[:, batch.input_ids.shape[1] :]
            return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    # ---- save / load ----------------------------------------------------------------------
    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's own tensors (+ the encoder's when it is trained); no LLM weights."""
        keep = ADAPTER_PREFIXES + (("encoder.",) if self.config.train_encoder else ())
        return {k: v for k, v in self.state_dict().items() if k.startswith(keep)}

    def save_pretrained(self, directory: str | Path, *, card_data: dict | None = None) -> Path:
        """Write adapter_config.json, adapter.safetensors, lora/ (peft's own format, when LoRA
        is on) and README.md (a card naming the encoder and base LLM).

        Args:
            directory: output folder (created; written beside it and moved in when complete).
            card_data: optional ``metrics`` (name -> value) and ``training_data`` (facts).
        """
        from userfm.adapters.card import render_adapter_card
        from userfm.outputs import staged_output_dir

        with staged_output_dir(directory) as stage:  # a kill never leaves half an adapter
            self.config.save(stage)
            state = self.adapter_state_dict()
            tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
            save_file(tensors, str(stage / WEIGHTS_FILE))
            if self.config.lora:
                self.llm.save_pretrained(str(stage / LORA_DIR))
            (stage / CARD_FILE).write_text(render_adapter_card(self, card_data), encoding="utf-8")
        return Path(directory)

    def load_adapter_weights(self, directory: str | Path) -> None:
        """Load the adapter tensors of a saved adapter directory into this model (e.g. the
        alignment stage's, to start QA fine-tuning from). LoRA weights are not read.

        Raises:
            FileNotFoundError: the directory holds no adapter weights.
            ConfigError: tensors whose names or shapes differ from this model's adapter
                (another mode or shape).
        """
        path = Path(directory) / WEIGHTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{directory} is not an adapter directory (no {WEIGHTS_FILE})")
        tensors = load_file(str(path))
        wanted = self.adapter_state_dict()
        missing = sorted(set(wanted) - set(tensors))
        unexpected = sorted(set(tensors) - set(wanted))
        shapes = [k for k in set(wanted) & set(tensors) if wanted[k].shape != tensors[k].shape]
        if missing or unexpected or shapes:
            raise ConfigError(
                f"{path} does not match this adapter (mode {self.config.mode!r}, K = "
                f"{self.config.num_latents}, R = {self.config.recent_events}): missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}, other shapes {sorted(shapes)[:5]}"
            )
        self.load_state_dict(tensors, strict=False)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        encoder: UserEncoder | None = None,
        llm: nn.Module | None = None,
        tokenizer=None,
    ) -> UserConditionedLM:
        """Load a directory written by `save_pretrained`.

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
        lora_dir = directory / LORA_DIR if config.lora else None
        model = cls(encoder, llm, tokenizer, config, lora_dir=lora_dir)
        model.load_adapter_weights(directory)
        return model


def _add_lora(llm: nn.Module, config: AdapterConfig, saved: Path | None = None) -> nn.Module:
    """``llm`` with LoRA: the trained matrices of ``saved`` (peft's own loader, as peft
    saved them), or new ones from ``config`` (peft's `get_peft_model`)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if saved is not None:
        if not (Path(saved) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no LoRA weights at {saved} (adapter_config.json missing)")
        return PeftModel.from_pretrained(llm, str(saved), is_trainable=False)

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
