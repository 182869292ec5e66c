"""Saving and loading UQA question sets: ``{split}.jsonl``, the saved dataset, stats, manifest."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from userfm.data.jsonl import read_jsonl
from userfm.errors import DataError
from userfm.eval.uqa.config import QuestionConfig
from userfm.eval.uqa.schema import RECORD_FEATURES, RECORD_FIELDS, SPLITS
from userfm.eval.uqa.stats import question_stats

__all__ = ["load_question_config", "load_questions", "save_questions"]


def records_dataset(rows: list[dict[str, Any]], description: str = "") -> datasets.Dataset:
    """A split of question records (`RECORD_FEATURES`) carrying ``description`` (the stats)."""
    # from_dict (not from_list) so that an empty split still gets its columns
    columns = {k: [r[k] for r in rows] for k in RECORD_FIELDS}
    info = datasets.DatasetInfo(description=description, features=RECORD_FEATURES)
    return datasets.Dataset.from_dict(columns, features=RECORD_FEATURES, info=info)


def save_questions(
    questions: datasets.DatasetDict,
    out_dir: str | os.PathLike,
    config: QuestionConfig | None = None,
) -> Path:
    """Write ``{split}.jsonl`` per split, the dataset (``dataset/``, `save_to_disk`),
    ``stats.json`` and ``manifest.json`` (splits, and the builder's config when given).

    Args:
        questions: what `build_questions` returned (any splits).
        out_dir: folder to write into (created).
        config: the `QuestionConfig` they were built with (read back by
            `load_question_config`, e.g. for the direct-computation baseline).

    Returns:
        The folder (written beside it and moved in when complete: `staged_output_dir`).
    """
    from userfm.outputs import staged_output_dir

    with staged_output_dir(out_dir) as out:
        for split, ds in questions.items():
            with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for row in ds:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        # datasets cannot load an empty saved split back, so those are listed in manifest.json
        nonempty = {s: ds for s, ds in questions.items() if len(ds)}
        if nonempty:
            datasets.DatasetDict(nonempty).save_to_disk(str(out / "dataset"))
        manifest = {"splits": list(questions), "empty": [s for s in questions if s not in nonempty]}
        if config is not None:
            manifest["question_config"] = config.to_dict()
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (out / "stats.json").write_text(json.dumps(question_stats(questions), indent=2) + "\n")
    return Path(out_dir)


def load_questions(
    path: str | os.PathLike | Sequence[str | os.PathLike],
) -> datasets.DatasetDict:
    """Read questions written by `save_questions` (or any such jsonl).

    Args:
        path: a folder written by `save_questions` (its saved dataset is read; without one,
            its ``*.jsonl``), a folder saved with ``DatasetDict.save_to_disk``, one ``.jsonl``
            file, or a list of them (split name = file stem).

    Returns:
        ``DatasetDict`` of question records.

    Raises:
        FileNotFoundError: nothing readable at ``path``.
        FileFormatError: a jsonl line is not a JSON object (names ``file:line``).
        DataError: a record lacks a question field (names the field and ``file:line``).
    """
    if not isinstance(path, (str, os.PathLike)):
        files = [Path(p) for p in path]
        return datasets.DatasetDict({p.stem: _read_jsonl(p) for p in files})
    p = Path(path).expanduser()
    if p.is_file():
        return datasets.DatasetDict({p.stem: _read_jsonl(p)})
    if not p.is_dir():
        raise FileNotFoundError(2, f"no questions at {p}", str(p))
    manifest = _read_manifest(p)
    for folder in (p, p / "dataset"):
        if (folder / "dataset_dict.json").is_file():
            dd = datasets.load_from_disk(str(folder))
            description = next(iter(dd.values())).info.description if len(dd) else ""
            order = manifest.get("splits", list(dd))
            return datasets.DatasetDict(
                {s: dd[s] if s in dd else records_dataset([], description) for s in order}
            )
    files = sorted(p.glob("*.jsonl"), key=lambda f: (_split_rank(f.stem), f.stem))
    if not files:
        raise FileNotFoundError(
            2, f"{p} holds neither a saved dataset (dataset_dict.json) nor *.jsonl files", str(p)
        )
    dd = datasets.DatasetDict({f.stem: _read_jsonl(f) for f in files})
    stats_file = p / "stats.json"
    if stats_file.is_file():
        description = stats_file.read_text()
        dd = datasets.DatasetDict(
            {s: records_dataset(list(ds), description) for s, ds in dd.items()}
        )
    return dd


def load_question_config(folder: str | os.PathLike) -> QuestionConfig:
    """The `QuestionConfig` recorded by `save_questions` in ``folder`` (the default config
    when none was recorded)."""
    recorded = _read_manifest(Path(folder).expanduser()).get("question_config")
    return QuestionConfig.from_dict(recorded) if recorded else QuestionConfig()


def _read_manifest(folder: Path) -> dict[str, Any]:
    f = folder / "manifest.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _split_rank(name: str) -> int:
    return SPLITS.index(name) if name in SPLITS else len(SPLITS)


def _read_jsonl(path: Path) -> datasets.Dataset:
    rows = []
    for rec in read_jsonl(path):
        missing = [k for k in RECORD_FIELDS if k not in rec.value]
        if missing:
            raise DataError(f"{rec.where} lacks the question field(s) {missing}", column=missing[0])
        rows.append({k: rec.value[k] for k in RECORD_FIELDS})
    return records_dataset(rows)
