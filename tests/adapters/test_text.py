"""Prompt / answer token ids: the soft-prompt slots sit inside the user turn, answers end with
EOS, and a left-padded batch puts every answer in its last columns."""

from __future__ import annotations

import pytest

from userfm.adapters.text import answer_ids, prompt_tokens, token_batch
from userfm.errors import ConfigError

from .conftest import make_tokenizer


def test_a_bare_prompt_is_the_chat_template():
    tok = make_tokenizer()
    p = prompt_tokens(tok, "what genre ?")
    assert tok.decode(p.ids) == "<user> what genre ? <eos> <assistant>"
    assert p.slot is None and p.num_slots == 0


@pytest.mark.parametrize(
    "position,expected",
    [
        ("before_question", "<user> <pad> <pad> <pad> what genre ? <eos> <assistant>"),
        ("after_question", "<user> what genre ? <pad> <pad> <pad> <eos> <assistant>"),
    ],
)
def test_soft_prompt_slots_sit_inside_the_user_turn(position, expected):
    tok = make_tokenizer()
    p = prompt_tokens(tok, "what genre ?", num_slots=3, position=position)
    assert tok.decode(p.ids) == expected
    assert p.ids[p.slot : p.slot + 3] == [tok.pad_token_id] * 3 and p.num_slots == 3
    with pytest.raises(ConfigError, match="user_position"):
        prompt_tokens(tok, "q", num_slots=2, position="first")


def test_plain_prompt_without_a_chat_template():
    from userfm.llm import chat_prompt

    tok = make_tokenizer(chat_template=False)
    assert chat_prompt(tok, "what genre ?") == "Question: what genre ?\nAnswer:"
    assert (
        prompt_tokens(tok, "what genre ?").ids
        == tok("Question: what genre ?\nAnswer:")["input_ids"]
    )
    p = prompt_tokens(tok, "what genre ?", num_slots=2)
    assert tok.decode(p.ids[p.slot + 2 :]) == "what genre ? <unk>"  # "Answer:" is one word


def test_answers_end_with_eos():
    tok = make_tokenizer()
    assert answer_ids(tok, "comedy drama") == [*tok("comedy drama")["input_ids"], tok.eos_token_id]


def test_token_batch_left_pads_and_marks_the_answers():
    tok = make_tokenizer()
    prompts = [
        prompt_tokens(tok, "what genre ?", num_slots=2),
        prompt_tokens(tok, "q", num_slots=2),
    ]
    answers = [answer_ids(tok, "comedy"), answer_ids(tok, "a b c")]
    b = token_batch(prompts, answers, pad=0)
    L = b.input_ids.shape[1]
    lengths = [len(p.ids) + len(a) for p, a in zip(prompts, answers)]
    assert max(lengths) == L
    assert b.attention_mask.sum(1).tolist() == lengths
    for r, n in enumerate(lengths):  # positions count from each row's first token
        assert b.position_ids[r, L - n :].tolist() == list(range(n))
        assert b.input_ids[r, b.user_slots[r] : b.user_slots[r] + 2].tolist() == [0, 0]
        assert b.user_slots[r] == L - n + prompts[r].slot
    targets, mask = b.answer_targets()
    assert targets.shape == (2, 4) and mask.sum(1).tolist() == [2, 4]
    assert targets[0][mask[0]].tolist() == answers[0] and targets[1].tolist() == answers[1]
    with pytest.raises(ConfigError, match="soft-prompt slots"):
        token_batch([prompts[0], prompt_tokens(tok, "q")], None, pad=0)
