"""Adapter training data: question records joined to the asking user's history.

A question file is JSON lines (``userfm eval questions`` writes ``train.jsonl``,
``valid.jsonl`` and ``test.jsonl`` in one folder); each record needs ``user_id`` and
``prompt`` (the text shown to the LLM; ``question`` is accepted instead) and either
``target`` (the text the LLM must produce) or ``answer``. ``context_end`` (optional) is the
number of the user's events, oldest first, the model may see; without it, the whole history.

Multiple-choice records (``format: "mc"``) train as cloze questions: the prompt is the
question *without* its option list and the target is the correct option's text, the same
form in which `UserConditionedLM.option_logprobs` scores them. (Training on the option letter
gave one target token per example, and a small instruct LLM answers "A" to anything.)

Batches are lists of `QAExample` (history, prompt, target): featurising and tokenising
happen in `UserConditionedLM`, which owns the encoder's vocabulary and the LLM's tokenizer.
With ``balance_tasks`` (the default), training draws sub-tasks equally often, so a sub-task
with many questions per user does not crowd out the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import WeightedRandomSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from userfm.data.jsonl import read_jsonl
from userfm.data.log import EventLog, UserHistory
from userfm.data.schema import EventSchema, schema_dict
from userfm.data.sources import load_source
from userfm.errors import ConfigError, DataError
from userfm.eval.uqa.evaluate import cloze_prompt, visible_history

SPLITS = ("train", "valid", "test")


@dataclass
class QAExample:
    """One question about one user: the visible history, the prompt and the target text."""

    history: UserHistory
    prompt: str
    target: str
    record: dict[str, Any]


def record_target(record: dict[str, Any]) -> str:
    """The text the LLM is trained to produce for ``record``: its ``target`` if given, else
    its ``answer`` (for multiple choice, the correct option's text, never its letter)."""
    if record.get("target") is not None:
        return str(record["target"])
    return str(record["answer"])


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of one JSON-lines question file.

    Raises:
        FileNotFoundError: no file at ``path``.
        FileFormatError: a line is not a JSON object (names ``file:line``).
        DataError: a record lacks ``user_id``, a prompt or an answer (names ``file:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, f"no question file at {path}", str(path))
    records = []
    for rec in read_jsonl(path):
        record = rec.value
        missing = [k for k in ("user_id",) if k not in record]
        if "prompt" not in record and "question" not in record:
            missing.append("prompt")
        if "target" not in record and "answer" not in record:
            missing.append("answer")
        if missing:
            raise DataError(f"{rec.where} lacks {missing}", column=missing[0])
        records.append(record)
    return records


def join_histories(records: Sequence[dict[str, Any]], log: EventLog) -> list[QAExample]:
    """`QAExample` per record with the history the question lets the model see
    (`userfm.eval.uqa.evaluate.visible_history`); a user missing from the log raises
    `DataError`."""
    return [
        QAExample(visible_history(log, r), cloze_prompt(r), record_target(r), r) for r in records
    ]


def task_balanced_sampler(
    examples: Sequence[QAExample], generator: torch.Generator
) -> WeightedRandomSampler:
    """Draws (with replacement, one epoch = ``len(examples)`` draws) each sub-task equally
    often and each question of a sub-task equally often; records without ``task`` form one
    group."""
    tasks = [str(e.record.get("task")) for e in examples]
    counts = Counter(tasks)
    weights = torch.tensor([1.0 / counts[t] for t in tasks], dtype=torch.double)
    return WeightedRandomSampler(weights, len(examples), replacement=True, generator=generator)


def _as_list(batch: list[QAExample]) -> list[QAExample]:
    return batch


class QADataModule(L.LightningDataModule):
    """Question records + the event log they are about, for `AdapterModule`.

    Args:
        questions: a folder holding ``train.jsonl`` / ``valid.jsonl`` / ``test.jsonl``.
        log: the event log (``"synthetic"``, a file or a public dataset folder; see
            `userfm.data.sources.load_source`).
        log_format: how to read ``log``.
        log_schema: `EventSchema` fields for ``auto`` files.
        synthetic: `SyntheticConfig` fields for ``log="synthetic"``.
        tasks: keep only these sub-tasks (``task`` field); None = all.
        formats: keep only these formats (``format`` field: "mc", "free"); None = all.
        max_train, max_eval: use at most this many records per split (the first ones).
        balance_tasks: draw training questions so that every sub-task is as frequent
            (`task_balanced_sampler`); False: a plain shuffle.
        batch_size: questions per training step.
        eval_batch_size: questions per validation / test step.
        seed: training shuffle seed.
    """

    def __init__(
        self,
        questions: str = "runs/qa",
        log: str = "synthetic",
        log_format: str = "auto",
        log_schema: EventSchema | None = None,
        synthetic: dict[str, Any] | None = None,
        tasks: list[str] | None = None,
        formats: list[str] | None = None,
        max_train: int | None = None,
        max_eval: int | None = None,
        balance_tasks: bool = True,
        batch_size: int = 8,
        eval_batch_size: int = 16,
        seed: int = 0,
    ):
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError("`batch_size` and `eval_batch_size` must be >= 1")
        log_schema = schema_dict(log_schema)  # hyper-parameters hold plain values (weights_only)
        self.save_hyperparameters()
        self.datasets: dict[str, list[QAExample]] = {}  # a list is a map-style dataset
        self.log_: EventLog | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        folder = Path(hp.questions).expanduser()
        if not (folder / "train.jsonl").is_file():
            raise ConfigError(
                f"`questions`: no train.jsonl in {folder}; build a question set first "
                "(userfm eval questions --log ... --out DIR)"
            )
        self.log_ = load_source(
            hp.log, format=hp.log_format, schema=hp.log_schema, synthetic=hp.synthetic
        )
        for split in SPLITS:
            path = folder / f"{split}.jsonl"
            records = read_records(path) if path.is_file() else []
            if hp.tasks is not None:
                records = [r for r in records if r.get("task") in hp.tasks]
            if hp.formats is not None:
                records = [r for r in records if r.get("format") in hp.formats]
            limit = hp.max_train if split == "train" else hp.max_eval
            records = records[:limit] if limit is not None else records
            self.datasets[split] = join_histories(records, self.log_)
        if not len(self.datasets["train"]):
            raise ConfigError(f"no training questions left in {folder} after the filters")

    def _loader(self, split: str, shuffle: bool) -> StatefulDataLoader:
        self.setup()
        hp = self.hparams
        data = self.datasets[split]
        generator = torch.Generator().manual_seed(hp.seed) if shuffle else None
        sampler = None
        if shuffle and hp.balance_tasks:
            sampler, shuffle = task_balanced_sampler(data, generator), False
        return StatefulDataLoader(
            data,
            batch_size=hp.batch_size if split == "train" else hp.eval_batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=_as_list,
            generator=generator if sampler is None else None,
        )

    def train_dataloader(self) -> StatefulDataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader("test", shuffle=False)
