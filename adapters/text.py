"""Token ids of questions and answers, the same for training and for ``generate``.

The question is wrapped in the LLM's chat template (`userfm.llm.chat_prompt`); the answer
follows it and ends with the end-of-sequence token, and only answer tokens carry a loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from userfm.llm import chat_prompt


def prompt_ids(tokenizer, question: str) -> list[int]:
    """Token ids of ``question`` wrapped as a user turn, ending where the answer starts."""
    text = chat_prompt(tokenizer, question)
    # a chat template writes its own special tokens; a plain prompt gets the tokenizer's
    add_special = getattr(tokenizer, "chat_template", None) is None
    return tokenizer(text, add_special_tokens=add_special)["input_ids"]


def qa_ids(
    tokenizer, question: str, answer: str, *, max_length: int
) -> tuple[list[int], list[int]]:
    """(input ids, labels) of a question + answer + EOS; labels are -100 on the question.

    When too long, the question is cut from the left (its start is the chat template's
    system preamble, the question text comes last), the answer never.
    """
    prompt = prompt_ids(tokenizer, question)
    answer_tokens = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_tokens = [*answer_tokens, tokenizer.eos_token_id]
    keep = max(max_length - len(answer_tokens), 1)
    prompt = prompt[-keep:]
    ids = prompt + answer_tokens
    labels = [-100] * len(prompt) + answer_tokens
    return ids, labels


def pad_token_id(tokenizer) -> int:
    """The id that pads token sequences: the tokenizer's pad token, else its EOS."""
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


def pad_right(sequences: Sequence[Sequence[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) right-padded int64 ids and (B, L) attention mask (1 = token)."""
    L = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), L), value, dtype=torch.long)
    mask = torch.zeros((len(sequences), L), dtype=torch.long)
    for b, s in enumerate(sequences):
        ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[b, : len(s)] = 1
    return ids, mask
