"""The UQA report of one evaluation run: results.jsonl, accuracy.csv, positions.csv, report.md
and two charts.

report.md has four tables: accuracy per dimension and overall with 95% Wilson score intervals
(a method flagged for position bias is marked), accuracy per sub-task, the predicted option
positions per method (with the gold letters for reference), and efficiency (mean prompt tokens
the LLM read, ms per question). The charts are accuracy by sub-task and method (with the
intervals) and overall accuracy against prompt tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from userfm.data.jsonl import read_jsonl
from userfm.errors import DataError
from userfm.eval.uqa.schema import DIMENSIONS, TASKS
from userfm.eval.uqa.scoring import POSITION_BIAS_SHARE, accuracy_table, position_table

RESULTS_FILE, ACCURACY_FILE, REPORT_FILE = "results.jsonl", "accuracy.csv", "report.md"
POSITIONS_FILE = "positions.csv"
#: appended to a flagged method's name in the headline table
BIAS_MARK = " (position bias)"
TASK_CHART, TOKENS_CHART = "accuracy_by_task.png", "accuracy_vs_tokens.png"


def efficiency_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per method: questions answered, mean events of the history the method reads (a text
    budget shows only the most recent ones), mean prompt tokens and mean ms per question (NaN
    where a method does not say, e.g. the non-LLM baselines)."""
    df = results.copy()
    for col in ("events_read", "prompt_tokens", "ms"):
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else float("nan")
    order = list(dict.fromkeys(df["method"]))
    table = df.groupby("method", sort=False).agg(
        n=("correct", "size"),
        events_read=("events_read", "mean"),
        prompt_tokens=("prompt_tokens", "mean"),
        ms=("ms", "mean"),
    )
    return table.reindex(order).reset_index()


def _cell(row: pd.Series) -> str:
    return f"{row.accuracy:.3f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"


def _markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, df.columns)) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(df.columns))) + "|")
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _pivot(table: pd.DataFrame, level: str, names: Sequence[str], cell) -> pd.DataFrame:
    part = table[table["level"] == level]
    present = [n for n in names if n in set(part["name"])]
    rows = []
    for method, g in part.groupby("method", sort=False):
        by_name = {r.name: r for r in g.itertuples(index=False)}
        rows.append([method, *(cell(by_name[n]) if n in by_name else "" for n in present)])
    header = ["method"]
    for n in present:
        count = part.loc[part["name"] == n, "n"].max()
        header.append(f"{n} (n={count})")
    return pd.DataFrame(rows, columns=header)


def _headline_markdown(table: pd.DataFrame, flagged: set[Any]) -> list[str]:
    """The "Accuracy by dimension" section; methods in ``flagged`` carry `BIAS_MARK`."""
    dims = _pivot(table, "dimension", [*DIMENSIONS], _cell)
    overall = _pivot(table, "overall", ["overall"], _cell)
    headline = dims.merge(overall, on="method", how="left")
    headline["method"] = [f"{m}{BIAS_MARK}" if m in flagged else m for m in headline["method"]]
    lines = [
        "## Accuracy by dimension (95% Wilson interval over questions)",
        "",
        _markdown(headline),
        "",
    ]
    if flagged:
        lines += [
            f"`{BIAS_MARK.strip()}`: over {POSITION_BIAS_SHARE:.0%} of the method's "
            "multiple-choice answers are on one option position (see Predicted option "
            "positions), so its accuracy says little about whether it read the question.",
            "",
        ]
    return lines


def _positions_markdown(positions: pd.DataFrame) -> list[str]:
    """The "Predicted option positions" section: shares as percentages, flagged rows marked."""
    lines = ["## Predicted option positions", ""]
    if positions.empty:
        return [*lines, "No multiple-choice results.", ""]
    lines += [
        "Share of each method's multiple-choice answers at each option position; `none`: the "
        "answer names no option letter (unparsed output, or an option's text). Options are "
        "shuffled, so the gold letters (row `gold`) are uniform in expectation; a method with "
        f"more than {POSITION_BIAS_SHARE:.0%} of its answers on one position is marked "
        "**position bias**: its accuracy says little about whether it read the question.",
        "",
    ]
    letters = [c for c in positions.columns if c not in ("method", "n", "max_share", "flagged")]
    shown = positions[["method", *letters, "n"]].copy()
    for c in letters:
        shown[c] = shown[c].map(lambda v: f"{v:.1%}")
    shown["flag"] = ["**position bias**" if f else "" for f in positions["flagged"]]
    return [*lines, _markdown(shown), ""]


def include_results(
    paths: Sequence[str | Path],
    records: Sequence[Mapping[str, Any]],
    skip: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The answers of methods an earlier run scored, to report them beside this run's.

    Training and scoring a slow method (a long text prompt + LoRA on CPU) once, then reporting
    it with methods scored later, needs its answers on exactly the same questions: each file
    must cover this run's questions of the formats it holds (multiple choice, free form), no
    more and no fewer.

    Args:
        paths: ``results.jsonl`` files written by `write_report` (or their report folders).
            A method in several files is taken from the last one.
        records: this run's questions (``question_id``, ``format``).
        skip: methods this run scores itself; their rows in the files are ignored.

    Returns:
        The included rows, file order, methods of ``skip`` left out.

    Raises:
        FileNotFoundError: a path has no results file.
        FileFormatError: a line of a file is not a JSON object (names ``file:line``).
        DataError: a row lacks ``method``, ``question_id`` or ``format``, a file covers other
            questions than this run's, or a method answered a question twice.
    """
    by_method: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        path = Path(path)
        file = path / RESULTS_FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no {RESULTS_FILE} at {path} (`userfm eval uqa` writes one)")
        rows: dict[str, list[dict[str, Any]]] = {}
        seen: set[tuple[str, str]] = set()  # (question_id, format): both formats share ids
        formats: set[str] = set()
        for rec in read_jsonl(file):
            row = rec.value
            missing = [k for k in ("method", "question_id", "format") if k not in row]
            if missing:
                raise DataError(
                    f"{rec.where} is not a result with `method`, `question_id` and `format` "
                    f"(lacks {missing})",
                    column=missing[0],
                )
            method, qid, fmt = row["method"], row["question_id"], row["format"]
            seen.add((qid, fmt))
            formats.add(fmt)
            if method not in skip:
                rows.setdefault(method, []).append(row)
        expected = {(r["question_id"], r["format"]) for r in records if r["format"] in formats}
        if seen != expected:
            raise DataError(
                f"{file} answers {len(seen):,} questions, this run has {len(expected):,} of "
                f"its formats ({len(seen - expected):,} not in this run, "
                f"{len(expected - seen):,} missing); include results of the same question set, "
                "split, --tasks and --max_per_task"
            )
        for method, got in rows.items():
            if len({(r["question_id"], r["format"]) for r in got}) < len(got):
                raise DataError(f"{file}: {method!r} answers some question more than once")
        by_method.update(rows)  # a later file replaces a method of an earlier one
    return [r for rows in by_method.values() for r in rows]


def write_report(
    results: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    title: str = "UQA evaluation",
    facts: Mapping[str, Any] | None = None,
    notes: str = "",
) -> dict[str, Path]:
    """Write the report files of ``results`` (what `answer_questions` and the baseline
    functions return) into ``out_dir``.

    Args:
        results: one result per question and method.
        out_dir: folder (created).
        title: report heading.
        facts: protocol facts listed under the heading (LLM, questions, machine, ...).
        notes: free text appended under the tables.

    Returns:
        ``{"results", "accuracy", "positions", "report", "task_chart", "tokens_chart"}``
        -> path.
    """
    from userfm.outputs import staged_output_dir

    with staged_output_dir(out_dir) as stage:  # a kill never leaves half a report
        _write_report_files(results, stage, title=title, facts=facts, notes=notes)
    out = Path(out_dir)
    return {
        "results": out / RESULTS_FILE,
        "accuracy": out / ACCURACY_FILE,
        "positions": out / POSITIONS_FILE,
        "report": out / REPORT_FILE,
        "task_chart": out / TASK_CHART,
        "tokens_chart": out / TOKENS_CHART,
    }


def _write_report_files(
    results: Sequence[Mapping[str, Any]],
    out: Path,
    *,
    title: str,
    facts: Mapping[str, Any] | None,
    notes: str,
) -> None:
    """Write every file of `write_report` into the existing folder ``out``."""
    df = pd.DataFrame(list(results))
    with open(out / RESULTS_FILE, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(dict(r), ensure_ascii=False) + "\n")
    table = accuracy_table(df)
    table.to_csv(out / ACCURACY_FILE, index=False)
    with_gold = "gold" in df.columns
    positions = position_table(df, include_gold=with_gold)
    positions.to_csv(out / POSITIONS_FILE, index=False)
    eff = efficiency_table(df)

    # the gold row (last, when there) is a reference, not a method: it never marks a method
    methods = positions.iloc[:-1] if with_gold and len(positions) else positions
    flagged = set(methods.loc[methods["flagged"].astype(bool), "method"])
    tasks = _pivot(table, "task", [*TASKS], lambda r: f"{r.accuracy:.3f}")
    eff_md = eff.assign(
        **{
            c: eff[c].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}")
            for c in ("events_read", "prompt_tokens", "ms")
        }
    ).rename(
        columns={
            "events_read": "history events read (mean)",
            "prompt_tokens": "prompt tokens (mean)",
            "ms": "ms / question",
        }
    )
    parts = [f"# {title}", ""]
    parts += [f"- **{k}:** {v}" for k, v in (facts or {}).items()]
    parts += [
        "",
        *_headline_markdown(table, flagged),
        "## Accuracy by sub-task",
        "",
        _markdown(tasks),
        "",
        *_positions_markdown(positions),
        "## Efficiency",
        "",
        "History events read: how many of the visible events the method reads (a text prompt "
        "shows as many of the most recent ones as fit in its token budget; the encoder reads up "
        "to its max_len). Prompt tokens: what the LLM reads in front of the answer (soft-prompt "
        "vectors count as tokens; cross-attention latents do not enter the sequence). "
        "ms / question: wall time per question in batches (multiple choice: one forward pass "
        "over all options).",
        "",
        _markdown(eff_md),
        "",
        f"Charts: [{TASK_CHART}]({TASK_CHART}), [{TOKENS_CHART}]({TOKENS_CHART}). "
        f"Every answer: [{RESULTS_FILE}]({RESULTS_FILE}).",
    ]
    if notes:
        parts += ["", notes]
    (out / REPORT_FILE).write_text("\n".join(parts) + "\n", encoding="utf-8")
    _charts(table, eff, out)


def _charts(table: pd.DataFrame, eff: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    part = table[table["level"] == "task"]
    methods = list(dict.fromkeys(part["method"]))
    tasks = [t for t in TASKS if t in set(part["name"])]
    width = 0.8 / max(len(methods), 1)
    colours = plt.get_cmap("tab20")  # 20 distinct colours: one per method
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(tasks) + 2), 5.5))
    x = np.arange(len(tasks))
    for j, m in enumerate(methods):
        g = part[part["method"] == m].set_index("name").reindex(tasks)
        err = np.vstack([g["accuracy"] - g["ci_low"], g["ci_high"] - g["accuracy"]])
        offset = j * width - 0.4 + width / 2
        ax.bar(
            x + offset, g["accuracy"], width, yerr=err, label=m, capsize=1.5,
            color=colours(j % 20), error_kw={"elinewidth": 0.6},
        )  # fmt: skip
    ax.set_xticks(x, [t.replace("_", "\n") for t in tasks])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("UQA accuracy by sub-task (95% Wilson intervals)")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    fig.savefig(out / TASK_CHART, dpi=120)
    plt.close(fig)

    overall = table[table["level"] == "overall"].set_index("method")
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    markers = "osD^vP*Xhp<>"
    for j, (m, tokens) in enumerate(zip(eff["method"], eff["prompt_tokens"], strict=True)):
        if m not in overall.index:
            continue
        acc = overall.loc[m, "accuracy"]
        if pd.isna(tokens):  # no LLM: a reference level, not a point
            ax.axhline(acc, color=colours(j % 20), linestyle=":", linewidth=1, label=m)
            continue
        ax.errorbar(
            tokens, acc,
            yerr=[[acc - overall.loc[m, "ci_low"]], [overall.loc[m, "ci_high"] - acc]],
            fmt=markers[j % len(markers)], color=colours(j % 20), capsize=3, label=m,
        )  # fmt: skip
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.set_xscale("log")
    ax.set_xlabel("prompt tokens per question (mean, log scale)")
    ax.set_ylabel("overall accuracy")
    ax.set_title("Accuracy vs prompt tokens")
    fig.tight_layout()
    fig.savefig(out / TOKENS_CHART, dpi=120)
    plt.close(fig)
