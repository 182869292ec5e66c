"""Scoring UQA answers: normalised exact / prefix match, option letters, accuracy tables.

* Free-form answers (`score_free`): SQuAD-style normalisation (Rajpurkar et al. 2016: lower
  case, no punctuation, no articles, single spaces), then an exact match or a word-boundary
  prefix match, so ``"Drama."`` and ``"drama, I think"`` both match ``"Drama"`` while ``"12"``
  does not match ``"1"``.
* Multiple choice (`score_mc`): the option letter is read from the output (`parse_letter`:
  ``"B"``, ``"(b)"``, ``"Answer: B"``, ``"B. Comedy"`` or the option text itself).
* `accuracy_table`: accuracy per sub-task, per dimension and overall (micro: every question
  counts the same) with seeded bootstrap 95% intervals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from userfm.errors import ConfigError, DataError
from userfm.eval.uqa.schema import DIMENSIONS, LETTERS, TASKS

__all__ = [
    "accuracy_table",
    "normalise",
    "parse_letter",
    "score",
    "score_free",
    "score_mc",
]

# Punctuation and symbols become a space (SQuAD deletes them): "Drama->Comedy" and
# "Drama -> Comedy" then normalise alike, and so do "Sci-Fi" and "Sci Fi".
_PUNCT = re.compile(r"[^\w\s]|_")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
# "Answer: Drama", "The answer is Drama": a lead-in that models add before the answer itself.
_LEAD_IN = re.compile(r"^(?:(?:final|correct)\s+)?answer(?:\s+is)?\s+")

# Letter at the start of the output: "(b) ...", "[b]", "b. ...", "B) ...", "B: ...", "B" alone.
_LEADING_LETTER = (
    re.compile(r"^\(\s*([a-z])\s*\)", re.I),
    re.compile(r"^\[\s*([a-z])\s*\]", re.I),
    re.compile(r"^([a-z])\s*[.):](?!\w)", re.I),
    re.compile(r"^([a-z])\s*(?:\n|$)", re.I),
)
# "Answer: B", "the answer is (c)", "Option d", "choice B." After "answer (is)" a lower-case
# letter followed by a word is an article ("the answer is a comedy"), so it needs parentheses
# or punctuation; after "option" / "choice" any lone letter is the letter.
_LABELLED_LETTER = (
    re.compile(
        r"\b(?i:answer)(?:\s+(?i:is|would\s+be))?\s*[:=\-]?\s*"
        r"(?:\(\s*([A-Za-z])\s*\)|([A-Za-z])(?=\s*[.):]|\s*$)|([A-Z])(?![\w']))"
    ),
    re.compile(r"\b(?:option|choice)\s*[:=\-]?\s*\(?\s*([a-z])\s*\)?(?![\w'])", re.I),
)


def normalise(text: object) -> str:
    """SQuAD-style normalisation: lower case, punctuation to spaces, no articles, single spaces.

    Args:
        text: any value (None gives ``""``; non-strings are converted with ``str``).

    Returns:
        The normalised string, e.g. ``"The Matrix (1999)!"`` -> ``"matrix 1999"``. Text that
        is nothing but articles keeps them (``"A"`` -> ``"a"``), so it is never empty.
    """
    if text is None:
        return ""
    s = _PUNCT.sub(" ", str(text).lower())
    # an answer that is only an article ("A" as a grade) keeps it rather than vanishing
    return " ".join(_ARTICLES.sub(" ", s).split()) or " ".join(s.split())


def score_free(prediction: str | None, gold: str) -> bool:
    """Whether a free-form prediction matches the gold answer.

    True when the normalised prediction equals the normalised gold, or starts with it followed
    by a word boundary (``"drama, I think"`` matches ``"Drama"``; ``"12"`` does not match
    ``"1"``). A leading ``"Answer:"`` / ``"The answer is"`` is ignored. An empty prediction is
    never correct.

    Args:
        prediction: the model's output.
        gold: the gold answer.
    """
    p, g = normalise(prediction), normalise(gold)
    if not p or not g:
        return False
    if p == g or p.startswith(g + " "):
        return True
    stripped = _LEAD_IN.sub("", p)
    return stripped != p and (stripped == g or stripped.startswith(g + " "))


def parse_letter(prediction: str | None, options: Sequence[str]) -> str | None:
    """The option letter a model's output chooses, or None when it names no single option.

    Reads, in this order: a letter at the start (``"B"``, ``"B."``, ``"(b)"``, ``"B) Comedy"``,
    ``"b: ..."``); a labelled letter anywhere (``"Answer: B"``, ``"the answer is (c)"``,
    ``"Option D"``); the text of an option (``"Comedy"``, ``"comedy, because ..."``, or a
    sentence that contains exactly one option's text as whole words). A lower-case bare
    letter counts only when punctuation or the end follows it, so ``"a comedy"`` is read as
    text, not as option A. Letters beyond the number of options are ignored.

    Args:
        prediction: the model's output.
        options: the options, in letter order (A first).

    Returns:
        An upper-case letter among the first ``len(options)`` letters, or None.
    """
    if prediction is None:
        return None
    valid = LETTERS[: len(options)]
    s = str(prediction).strip().strip("*`\"' \t")  # markdown bold / quotes around the answer
    if not s:
        return None
    for pattern in _LEADING_LETTER:
        m = pattern.match(s)
        if m and m.group(1).upper() in valid:
            return m.group(1).upper()
    for pattern in _LABELLED_LETTER:
        for m in pattern.finditer(s):
            letter = next(g for g in m.groups() if g is not None).upper()
            if letter in valid:
                return letter
    return _letter_from_text(s, options)


def _letter_from_text(prediction: str, options: Sequence[str]) -> str | None:
    """Match the option texts: exact, then prefix (longest option), then whole-word containment."""
    p = normalise(prediction)
    if not p:
        return None
    keys = [normalise(o) for o in options]
    for candidate in (p, _LEAD_IN.sub("", p)):
        exact = [i for i, k in enumerate(keys) if k and k == candidate]
        if len(exact) == 1:
            return LETTERS[exact[0]]
        prefix = [i for i, k in enumerate(keys) if k and candidate.startswith(k + " ")]
        if prefix:
            longest = max(len(keys[i]) for i in prefix)
            best = [i for i in prefix if len(keys[i]) == longest]
            if len(best) == 1:
                return LETTERS[best[0]]
    padded = f" {p} "
    inside = [i for i, k in enumerate(keys) if k and f" {k} " in padded]
    # an option inside another matching option ("drama" in "drama comedy") is not a rival
    inside = [
        i for i in inside if not any(j != i and f" {keys[i]} " in f" {keys[j]} " for j in inside)
    ]
    if len(inside) == 1:
        return LETTERS[inside[0]]
    return None


def score_mc(prediction: str | None, record: Mapping[str, Any]) -> bool:
    """Whether a model's output picks the correct option of a multiple-choice record.

    Args:
        prediction: the model's output.
        record: a question record with ``options`` and ``answer_letter``.

    Raises:
        ConfigError: the record is not multiple choice (no options / answer letter).
    """
    options = record.get("options") or []
    letter = record.get("answer_letter")
    if not options or not letter:
        raise ConfigError(
            f"record {record.get('question_id', '?')!r} is not multiple choice (no `options` / "
            "`answer_letter`); score it with score_free(prediction, record['answer'])"
        )
    return parse_letter(prediction, options) == letter


def score(prediction: str | None, record: Mapping[str, Any]) -> bool:
    """Score a prediction by the record's ``format``: `score_mc` for ``"mc"``, else `score_free`."""
    if record.get("format") == "mc":
        return score_mc(prediction, record)
    return score_free(prediction, record["answer"])


def accuracy_table(
    results: Iterable[Mapping[str, Any]] | pd.DataFrame,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Accuracy per method at three levels: sub-task, dimension and overall, with bootstrap CIs.

    Every question counts the same at every level (micro average). The interval is the
    percentile bootstrap over questions: resampling n 0/1 outcomes with replacement gives a
    Binomial(n, accuracy) / n mean, so it is drawn directly (exactly the same distribution,
    without materialising n_resamples x n indices).

    Args:
        results: one mapping per scored answer with at least ``method``, ``task``,
            ``dimension`` and ``correct`` (bool or 0/1), or a DataFrame with those columns.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling (row i of the table uses the stream ``(seed, i)``).
        confidence: interval coverage, in (0, 1).

    Returns:
        A DataFrame with columns ``method``, ``level`` (``task`` / ``dimension`` /
        ``overall``), ``name``, ``n``, ``correct``, ``accuracy``, ``ci_low``, ``ci_high``;
        per method: sub-tasks in `TASKS` order, then dimensions in `DIMENSIONS` order, then
        ``overall``. Methods keep their order of first appearance.

    Raises:
        DataError: a result lacks a required field.
        ConfigError: bad ``n_resamples`` or ``confidence``.
    """
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ConfigError(f"`n_resamples` must be an integer >= 1, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"`confidence` must be in (0, 1), got {confidence!r}")
    df = results.copy() if isinstance(results, pd.DataFrame) else pd.DataFrame(list(results))
    columns = ["method", "level", "name", "n", "correct", "accuracy", "ci_low", "ci_high"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    for col in ("method", "task", "dimension", "correct"):
        if col not in df.columns:
            raise DataError(f"every result needs a {col!r} field", column=col)
        missing = df[col].isna().to_numpy()
        if missing.any():
            raise DataError(
                f"result field {col!r} is missing", column=col, row=int(missing.argmax())
            )
    df["correct"] = df["correct"].astype(bool)
    alpha = (1 - confidence) / 2
    rows: list[dict[str, Any]] = []

    def add(method: str, level: str, name: str, correct: np.ndarray) -> None:
        n, k = len(correct), int(correct.sum())
        acc = k / n
        rng = np.random.default_rng([seed, len(rows)])
        boot = rng.binomial(n, acc, size=n_resamples) / n
        lo, hi = np.quantile(boot, [alpha, 1 - alpha])
        rows.append(
            {
                "method": method,
                "level": level,
                "name": name,
                "n": n,
                "correct": k,
                "accuracy": acc,
                "ci_low": float(lo),
                "ci_high": float(hi),
            }
        )

    for method in pd.unique(df["method"]):
        sub = df[df["method"] == method]
        for level, col, order in (("task", "task", TASKS), ("dimension", "dimension", DIMENSIONS)):
            present = list(pd.unique(sub[col]))
            names = [x for x in order if x in present] + [x for x in present if x not in order]
            for name in names:
                add(method, level, name, sub.loc[sub[col] == name, "correct"].to_numpy())
        add(method, "overall", "overall", sub["correct"].to_numpy())
    return pd.DataFrame(rows, columns=columns)
