"""Scoring UQA answers: normalised exact / prefix match, option letters, accuracy tables.

* Free-form answers (`score_free`): SQuAD-style normalisation (Rajpurkar et al. 2016: lower
  case, no punctuation, no articles, single spaces), then an exact match or a word-boundary
  prefix match, so ``"Drama."`` and ``"drama, I think"`` both match ``"Drama"`` while ``"12"``
  does not match ``"1"``.
* Multiple choice (`score_mc`): the option letter is read from the output (`parse_letter`:
  ``"B"``, ``"(b)"``, ``"Answer: B"``, ``"B. Comedy"`` or the option text itself).
* `accuracy_table`: accuracy per sub-task, per dimension and overall (micro: every question
  counts the same) with Wilson score intervals (`wilson_interval`, 95% by default).
* `position_table`: per method, the share of multiple-choice answers at each option position,
  flagging a method that puts more than `POSITION_BIAS_SHARE` of them on one position (a small
  LLM that always answers "A" scores chance without reading the question).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from userfm.errors import ConfigError, DataError, check_int
from userfm.eval.uqa.schema import DIMENSIONS, LETTERS, TASKS

__all__ = [
    "POSITION_BIAS_SHARE",
    "accuracy_table",
    "normalise",
    "parse_letter",
    "position_table",
    "score",
    "score_free",
    "score_mc",
    "wilson_interval",
]

#: a method is flagged for position bias when more than this share of its multiple-choice
#: answers sit on one option position (options are shuffled, so gold letters are uniform)
POSITION_BIAS_SHARE: float = 0.5

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


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``correct / n``.

    Unlike the normal (Wald) interval or a bootstrap, it has non-zero width at 0 and 1 and
    stays inside [0, 1], so a method that gets all of 10 questions right reads as
    "at least about 0.72", not "exactly 1" (Wilson 1927; Brown, Cai & DasGupta 2001).

    Args:
        correct: number of successes, ``0 <= correct <= n``.
        n: number of trials, ``>= 1``.
        confidence: interval coverage, in (0, 1).

    Returns:
        ``(low, high)``; e.g. 0 of 10 gives ``(0.0, 0.2775)``, 50 of 100 ``(0.4038, 0.5962)``.

    Raises:
        ConfigError: ``n < 1``, ``correct`` outside [0, n], or ``confidence`` outside (0, 1).
    """
    n = check_int("n", n, minimum=1, why="no questions, no interval")
    correct = check_int("correct", correct, minimum=0)
    if not 0 <= correct <= n:
        raise ConfigError(f"`correct` must be in [0, n={n}], got {correct}")
    if not 0 < confidence < 1:
        raise ConfigError(f"`confidence` must be in (0, 1), got {confidence!r}")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p, z2 = correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # at 0 (or n) successes the bound is exactly 0 (or 1); rounding would leave ~1e-17
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


def _check_fields(df: pd.DataFrame, fields: Sequence[str], *, nullable: Sequence[str] = ()) -> None:
    """DataError naming the first required field that is absent (or missing in a row)."""
    for col in fields:
        if col not in df.columns:
            raise DataError(f"every result needs a {col!r} field", column=col)
        if col in nullable:
            continue
        missing = df[col].isna().to_numpy()
        if missing.any():
            raise DataError(
                f"result field {col!r} is missing", column=col, row=int(missing.argmax())
            )


def accuracy_table(
    results: Iterable[Mapping[str, Any]] | pd.DataFrame,
    *,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Accuracy per method at three levels: sub-task, dimension and overall, with Wilson CIs.

    Every question counts the same at every level (micro average). The interval is the Wilson
    score interval (`wilson_interval`) of ``correct`` out of ``n``: closed form, so the table
    is deterministic, and not zero-width at accuracy 0 or 1 as a bootstrap would be.

    Args:
        results: one mapping per scored answer with at least ``method``, ``task``,
            ``dimension`` and ``correct`` (bool or 0/1), or a DataFrame with those columns.
        confidence: interval coverage, in (0, 1).

    Returns:
        A DataFrame with columns ``method``, ``level`` (``task`` / ``dimension`` /
        ``overall``), ``name``, ``n``, ``correct``, ``accuracy``, ``ci_low``, ``ci_high``;
        per method: sub-tasks in `TASKS` order, then dimensions in `DIMENSIONS` order, then
        ``overall``. Methods keep their order of first appearance.

    Raises:
        DataError: a result lacks a required field.
        ConfigError: bad ``confidence``.
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"`confidence` must be in (0, 1), got {confidence!r}")
    df = results.copy() if isinstance(results, pd.DataFrame) else pd.DataFrame(list(results))
    columns = ["method", "level", "name", "n", "correct", "accuracy", "ci_low", "ci_high"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    _check_fields(df, ("method", "task", "dimension", "correct"))
    df["correct"] = df["correct"].astype(bool)
    rows: list[dict[str, Any]] = []

    def add(method: str, level: str, name: str, correct: np.ndarray) -> None:
        n, k = len(correct), int(correct.sum())
        lo, hi = wilson_interval(k, n, confidence)
        rows.append(
            {
                "method": method,
                "level": level,
                "name": name,
                "n": n,
                "correct": k,
                "accuracy": k / n,
                "ci_low": lo,
                "ci_high": hi,
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


def _as_letter(value: object) -> str | None:
    """The option letter a stored answer names (``"B"``, ``" b "``), or None for anything else."""
    if not isinstance(value, str):
        return None
    s = value.strip().upper()
    return s if len(s) == 1 and s in LETTERS else None


def _position_row(name: str, letters: Sequence[str | None], positions: str) -> dict[str, Any]:
    n = len(letters)
    counts = Counter(letters)
    shares = {c: counts[c] / n for c in positions}
    # `none` is not a position: an answer that names no letter cannot be biased towards one
    top = max(shares.values(), default=0.0)
    return {
        "method": name,
        **shares,
        "none": counts[None] / n,
        "n": n,
        "max_share": top,
        "flagged": top > POSITION_BIAS_SHARE,
    }


def position_table(
    results: Iterable[Mapping[str, Any]] | pd.DataFrame, *, include_gold: bool = False
) -> pd.DataFrame:
    """Per method, the share of its multiple-choice answers at each option position.

    Options are shuffled when questions are built, so the gold letters are uniform; a method
    that puts most answers on one position (a small LLM that answers "A" whatever the
    question) reaches chance accuracy without reading anything, and is flagged.

    Args:
        results: one mapping per scored answer with ``method``, ``format`` and ``prediction``
            (for ``"mc"``: the chosen letter, or None), and ``gold`` (the gold letter) when
            ``include_gold``; or a DataFrame with those columns. ``"free"`` results are
            ignored.
        include_gold: append a row ``"gold"``: the gold letters over the multiple-choice
            questions of the first method, for reference.

    Returns:
        A DataFrame with columns ``method``, one per option position (``A``, ``B``, ...: as
        many as the largest letter among the predictions and gold letters), ``none`` (share
        of answers that are None or not a single letter, e.g. an option's text), ``n``
        (multiple-choice answers), ``max_share`` (largest position share; ``none`` excluded)
        and ``flagged`` (``max_share > POSITION_BIAS_SHARE``). Methods keep their order of
        first appearance; one without multiple-choice results is absent.

    Raises:
        DataError: a result lacks a required field.
    """
    df = results.copy() if isinstance(results, pd.DataFrame) else pd.DataFrame(list(results))
    if df.empty:
        return pd.DataFrame(columns=["method", "none", "n", "max_share", "flagged"])
    required = ["method", "format", "prediction"] + (["gold"] if include_gold else [])
    _check_fields(df, required, nullable=("prediction", "gold"))
    mc = df[df["format"] == "mc"]
    predicted = [_as_letter(v) for v in mc["prediction"]]
    gold = [_as_letter(v) for v in mc["gold"]] if "gold" in mc.columns else []
    seen = [LETTERS.index(x) for x in (*predicted, *gold) if x is not None]
    positions = LETTERS[: max(seen) + 1] if seen else ""
    by_method: dict[Any, list[str | None]] = {}
    for method, letter in zip(mc["method"], predicted, strict=True):
        by_method.setdefault(method, []).append(letter)
    order = [m for m in pd.unique(df["method"]) if m in by_method]
    rows = [_position_row(m, by_method[m], positions) for m in order]
    if include_gold and order:
        # every method answers the same questions; the first one's mc rows are that set
        first = [g for g, m in zip(gold, mc["method"], strict=True) if m == order[0]]
        rows.append(_position_row("gold", first, positions))
    columns = ["method", *positions, "none", "n", "max_share", "flagged"]
    return pd.DataFrame(rows, columns=columns)
