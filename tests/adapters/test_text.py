"""Prompt / answer token ids: the loss covers the answer (and EOS) only."""

from __future__ import annotations

from userfm.adapters.text import pad_right, prompt_ids, qa_ids

from .conftest import make_tokenizer


def test_labels_cover_the_answer_and_eos_only():
    tok = make_tokenizer()
    prompt = prompt_ids(tok, "what genre ?")
    assert tok.decode(prompt) == "<user> what genre ? <eos> <assistant>"  # the chat template
    ids, labels = qa_ids(tok, "what genre ?", "comedy", max_length=64)
    assert ids[: len(prompt)] == prompt
    answer = tok("comedy", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids[len(prompt) :] == answer
    assert labels == [-100] * len(prompt) + answer


def test_long_prompts_are_cut_from_the_left_never_the_answer():
    tok = make_tokenizer()
    ids, labels = qa_ids(tok, "what genre " * 30 + "?", "drama", max_length=10)
    assert len(ids) == 10
    assert tok.decode(ids[-2:]) == "drama <eos>" and labels[-2:] == ids[-2:]
    assert labels[:-2] == [-100] * 8


def test_plain_prompt_without_a_chat_template():
    from userfm.llm import chat_prompt

    tok = make_tokenizer(chat_template=False)
    assert chat_prompt(tok, "what genre ?") == "Question: what genre ?\nAnswer:"
    assert prompt_ids(tok, "what genre ?") == tok("Question: what genre ?\nAnswer:")["input_ids"]


def test_pad_right():
    ids, mask = pad_right([[5, 6, 7], [8]], value=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
