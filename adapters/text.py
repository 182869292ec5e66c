"""Token ids of prompts and answers, the same for training, scoring and ``generate``.

A question is wrapped in the LLM's chat template (`userfm.llm.chat_prompt`) as one user
turn. A soft prompt's K vectors go *inside* that turn, before or after the question
(``<|im_start|>user\\n[K vectors]question<|im_end|>\\n<|im_start|>assistant\\n``): an instruct
model reads what sits outside its turns poorly (measured on SmolLM2-135M-Instruct, issue 17:
0.43 inside the turn against 0.27 at position 0, same training). The K positions hold
placeholder ids (the pad id) whose embeddings the model replaces with the user's vectors.

An answer is its text followed by the end-of-turn token (the tokenizer's EOS), and only
answer tokens carry a loss or a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from userfm.errors import ConfigError
from userfm.llm import chat_prompt

#: where the user's vectors sit inside the user turn
USER_POSITIONS = ("before_question", "after_question")
# A string no question contains: the chat template is applied once with it in the user
# message, and the text is cut there, so the K slots land exactly where the template put it.
_SLOT_MARK = "\x00userfm-user-slot\x00"


@dataclass(frozen=True)
class PromptTokens:
    """One prompt's token ids, and where its soft-prompt slots are.

    Attributes:
        ids: token ids of the whole prompt, ending where the answer starts.
        slot: index of the first of ``num_slots`` placeholder ids (None: no slots).
        num_slots: K, the soft-prompt vectors that replace the placeholders.
    """

    ids: list[int]
    slot: int | None = None
    num_slots: int = 0


def prompt_tokens(
    tokenizer, question: str, *, num_slots: int = 0, position: str = "before_question"
) -> PromptTokens:
    """Token ids of ``question`` wrapped as a user turn, with ``num_slots`` placeholder ids
    inside that turn (before or after the question) when ``num_slots`` > 0.

    Args:
        tokenizer: the LLM's tokenizer.
        question: the user message (the question; in "text" mode the history text too).
        num_slots: K soft-prompt vectors to make room for (0: none).
        position: ``"before_question"`` or ``"after_question"``.
    """
    if position not in USER_POSITIONS:
        raise ConfigError(f"`user_position` must be one of {USER_POSITIONS}, got {position!r}")
    # a chat template writes its own special tokens; a plain prompt gets the tokenizer's
    add_special = getattr(tokenizer, "chat_template", None) is None
    if num_slots <= 0:
        text = chat_prompt(tokenizer, question)
        return PromptTokens(tokenizer(text, add_special_tokens=add_special)["input_ids"])
    message = _SLOT_MARK + question if position == "before_question" else question + _SLOT_MARK
    head, _, tail = chat_prompt(tokenizer, message).partition(_SLOT_MARK)
    head_ids = tokenizer(head, add_special_tokens=add_special)["input_ids"]
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    slots = [pad_token_id(tokenizer)] * num_slots
    return PromptTokens(head_ids + slots + tail_ids, slot=len(head_ids), num_slots=num_slots)


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Token ids of an answer: its text, then the end-of-turn (EOS) token."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [*ids, eos] if eos is not None else list(ids)


def pad_token_id(tokenizer) -> int:
    """The id that pads token sequences: the tokenizer's pad token, else its EOS."""
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


@dataclass
class TokenBatch:
    """Left-padded prompt (+ answer) rows, ready for `UserConditionedLM.forward`.

    Left padding puts every row's last token at the same index, so the answer tokens of
    every row sit in the last ``answer_len`` columns and the LLM's output layer needs to run
    there only (``logits_to_keep``).

    Attributes:
        input_ids: (R, L) ids, left-padded with the pad id.
        attention_mask: (R, L) 1 at tokens.
        position_ids: (R, L) positions counted from each row's first token.
        user_slots: (R,) index of each row's first soft-prompt slot, or None.
        answer_len: (R,) answer tokens at the end of each row (0 for a bare prompt).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    user_slots: torch.Tensor | None
    answer_len: torch.Tensor

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            None if self.user_slots is None else self.user_slots.to(device),
            self.answer_len.to(device),
        )

    def answer_targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(R, A) ids of the last A = max answer length columns and (R, A) bool mask of the
        answer tokens among them."""
        A = int(self.answer_len.max()) if len(self.answer_len) else 0
        targets = self.input_ids[:, self.input_ids.shape[1] - A :]  # (R, A)
        column = torch.arange(A, device=targets.device)
        mask = column[None, :] >= (A - self.answer_len)[:, None]  # (R, A)
        return targets, mask


def token_batch(
    prompts: Sequence[PromptTokens], answers: Sequence[Sequence[int]] | None, pad: int
) -> TokenBatch:
    """Left-pad ``prompt + answer`` rows into a `TokenBatch`.

    Args:
        prompts: R prompts.
        answers: R answers' ids (`answer_ids`), or None for bare prompts.
        pad: the pad id.
    """
    answers = answers if answers is not None else [[] for _ in prompts]
    if len(answers) != len(prompts):
        raise ConfigError(f"{len(answers)} answers for {len(prompts)} prompts")
    rows = [list(p.ids) + list(a) for p, a in zip(prompts, answers, strict=True)]
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, L - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[b, L - len(r) :] = 1
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    has_slots = [p.slot is not None for p in prompts]
    if any(has_slots) and not all(has_slots):
        raise ConfigError("either every prompt of a batch has soft-prompt slots or none does")
    slots = None
    if all(has_slots):
        slots = torch.tensor([L - len(r) + p.slot for p, r in zip(prompts, rows, strict=True)])
    answer_len = torch.tensor([len(a) for a in answers], dtype=torch.long)
    return TokenBatch(ids, mask, position_ids, slots, answer_len)
