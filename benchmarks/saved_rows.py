"""A benchmark row saved with ``--out`` and read back with ``--reuse``
(benchmarks/pretrain_quality.py): the row (`Result`), its JSON round trip, the check that a
saved row was made with the current configuration, and the merge of a row saved in several
files with other seeds. Also the runs a ``--results`` file keeps one per line
(benchmarks/dro_frontier.py, benchmarks/recipe_variants.py): `saved_run`, `save_run`.

A row's JSON entry holds its label, its configuration (everything that decides its numbers),
the first seed's report and every seed's, the first fit's timing and loss, and ``extra``
(per-fit state, and the per-seed lists of `PER_SEED_EXTRA`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Result:
    """One row: the first seed's fit (timing, loss, DRO state) and every seed's report."""

    label: str
    report: Any  # RetrievalReport of the first seed
    fit_s: float = math.nan
    fit_cpu_s: float = math.nan
    events: int = 0
    steps: int = 0
    train_loss: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)
    seed_reports: list[Any] = field(default_factory=list)  # one per seed, first = report

    def __post_init__(self) -> None:
        if not self.seed_reports:
            self.seed_reports = [self.report]

    @property
    def events_per_s(self) -> float:
        return self.events / self.fit_s if self.fit_s > 0 else math.nan

    @property
    def events_per_cpu_s(self) -> float:
        return self.events / self.fit_cpu_s if self.fit_cpu_s > 0 else math.nan

    def m(self, name: str) -> float:
        """Mean over seeds."""
        return float(np.mean(self.per_seed(name)))

    def sd(self, name: str) -> float:
        """Sample standard deviation over seeds (NaN for one seed)."""
        values = self.per_seed(name)
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan

    def per_seed(self, name: str) -> list[float]:
        return [float(r.metrics[name]) for r in self.seed_reports]

    def bucket_recall(self, k: int = 10) -> list[float]:
        """Recall@k per item-frequency bucket (head first), mean over seeds."""
        per_seed = [[b[f"recall@{k}"] for b in r.buckets] for r in self.seed_reports]
        return [float(x) for x in np.nanmean(np.asarray(per_seed, dtype=float), axis=0)]


def row_to_dict(res: Result, config: dict | None) -> dict:
    """One row of the ``--out`` JSON."""
    return {
        "label": res.label,
        "config": config,
        "report": res.report.to_dict(),
        "seed_reports": [x.to_dict() for x in res.seed_reports],
        "fit_s": res.fit_s,
        "fit_cpu_s": res.fit_cpu_s,
        "events": res.events,
        "steps": res.steps,
        "train_loss": res.train_loss,
        "extra": res.extra,
    }


def row_from_dict(d: dict) -> Result:
    """Inverse of `row_to_dict` (the config is checked by `reuse_row`)."""
    from userfm.eval.retrieval import RetrievalReport

    return Result(
        d["label"],
        RetrievalReport(**d["report"]),
        fit_s=d["fit_s"],
        fit_cpu_s=d["fit_cpu_s"],
        events=d["events"],
        steps=d["steps"],
        train_loss=d["train_loss"],
        extra=d["extra"],
        seed_reports=[RetrievalReport(**x) for x in d["seed_reports"]],
    )


def _flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differing(saved: dict, want: dict) -> list[str]:
    """The keys (flattened, ``"module.lr"``) whose values differ between two configurations,
    JSON-normalised (tuples and lists compare equal)."""
    a, b = _flat(json.loads(json.dumps(saved))), _flat(json.loads(json.dumps(want)))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _without_seeds(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "seeds"}


def reuse_row(saved: dict, path: Path, name: str, config: dict) -> dict:
    """The saved entry ``name`` of a ``--reuse`` file, if it was made with ``config``
    (JSON-normalised: tuples and lists compare equal); exits naming what differs if not."""
    entry = saved.get(name)
    if entry is None or "config" not in entry:
        raise SystemExit(
            f"--reuse {path}: no row {name!r} with its configuration (written by an older "
            f"version of this script, or without that row); add {name} to --rows"
        )
    diff = _differing(entry["config"], config)
    if diff:
        seeds = (
            f"; it has seeds {entry['config'].get('seeds')}, this run {config.get('seeds')} "
            f"(--seed, --seeds)"
            if "seeds" in diff
            else ""
        )
        raise SystemExit(
            f"--reuse {path}: row {name!r} was made with a different configuration "
            f"({', '.join(diff)} differ); add {name} to --rows to rerun it{seeds}"
        )
    return entry


def read_saved(
    paths: list[Path], names: list[str], configs: dict[str, dict]
) -> dict[str, tuple[Path, dict]]:
    """The rows ``names`` of several ``--out`` files: name -> (file, entry). A row in several
    files is one row trained on more seeds when only their seeds differ (`merge_seed_parts`).
    With this run's ``configs`` (name -> configuration, every name), a row in several files
    of which some were made with this run's configuration (seeds aside) and some not is read from the
    former, and each file left out is named with what differs: a row retrained after a recipe
    change supersedes the old file's copy. Otherwise a row in several files is refused (which
    one holds the right numbers is not ours to guess). Most popular, which every run
    recomputes, is not read."""
    parts: dict[str, list[tuple[Path, dict]]] = {}
    for path in paths:
        for name, entry in json.loads(path.read_text()).items():
            if name in names:
                parts.setdefault(name, []).append((path, entry))
    parts = {name: current_parts(name, found, configs[name]) for name, found in parts.items()}
    return {
        name: found[0] if len(found) == 1 else merge_seed_parts(name, found)
        for name, found in parts.items()
    }


def current_parts(
    name: str, found: list[tuple[Path, dict]], config: dict
) -> list[tuple[Path, dict]]:
    """The parts of row ``name`` made with ``config`` (seeds aside), when some are and some
    are not; each part left out is printed with the keys that differ. All of them otherwise."""
    if len(found) < 2:
        return found
    want = _without_seeds(config)
    diffs = [_differing(_without_seeds(entry.get("config") or {}), want) for _, entry in found]
    if all(diffs) or not any(diffs):
        return found
    kept = [part for part, diff in zip(found, diffs) if not diff]
    where = " and ".join(str(path) for path, _ in kept)
    for (path, _), diff in zip(found, diffs):
        if diff:
            print(f"--reuse {path}: row {name!r} not read, made with another configuration "
                  f"({', '.join(diff)} differ); {where} hold(s) this run's")  # fmt: skip
    return kept


#: ``extra`` entries that hold one value per seed (the others describe the first seed's fit)
PER_SEED_EXTRA = ("another_user", "selected_epoch", "best_epoch", "valid_ndcg10")


def merge_seed_parts(name: str, found: list[tuple[Path, dict]]) -> tuple[Path, dict]:
    """One row saved in several files, each with other seeds (``--seed 3 --seeds 2`` adds
    seeds 3 and 4 to a 3-seed run) and otherwise the same configuration: the row over all
    their seeds, in seed order. The lowest seed's part gives the timing, loss and per-fit
    extras; a per-seed extra that some part lacks (written before it existed) is left out,
    and said. Anything else (a part without its configuration, another configuration, a seed
    in two parts) is refused, naming the files."""
    where = " and ".join(str(path) for path, _ in found)
    if any(not entry.get("config") for _, entry in found):
        raise SystemExit(f"--reuse: row {name!r} is in both {where}; keep it in one")
    found = sorted(found, key=lambda part: min(part[1]["config"]["seeds"]))
    first = _without_seeds(found[0][1]["config"])
    seeds: list[int] = []
    for _, entry in found:
        diff = _differing(first, _without_seeds(entry["config"]))
        if diff:
            raise SystemExit(
                f"--reuse: row {name!r} is in both {where} with different configurations "
                f"({', '.join(diff)} differ); keep it in one"
            )
        if set(seeds) & set(entry["config"]["seeds"]):
            raise SystemExit(
                f"--reuse: row {name!r} is in both {where} with seed(s) "
                f"{sorted(set(seeds) & set(entry['config']['seeds']))} in more than one; "
                f"keep it in one"
            )
        seeds += entry["config"]["seeds"]
    merged = dict(found[0][1], config=dict(found[0][1]["config"], seeds=seeds))
    merged["seed_reports"] = [r for _, entry in found for r in entry["seed_reports"]]
    extra = {k: v for k, v in merged["extra"].items() if k not in PER_SEED_EXTRA}
    for key in PER_SEED_EXTRA:
        lacking = [str(path) for path, entry in found if key not in entry["extra"]]
        if len(lacking) < len(found) and lacking:
            print(f"--reuse: row {name!r}: {key} left out, {', '.join(lacking)} lacks it")
        elif not lacking:
            extra[key] = [x for _, entry in found for x in entry["extra"][key]]
    merged["extra"] = extra
    return found[0][0], merged


def saved_run(path: Path | None, key: dict) -> dict | None:
    """The run whose ``"key"`` is ``key`` in the JSON-lines file ``path``, or None (also when
    there is no file yet). Read at each call: another process may have added it."""
    if path is None or not path.is_file():
        return None
    runs = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return next((run for run in runs if run["key"] == key), None)


def save_run(path: Path | None, run: dict) -> None:
    """Append ``run`` (with its ``"key"``) to ``path`` as one line, so that processes training
    other parts can share the file; nothing when ``path`` is None."""
    if path is not None:
        with path.open("a") as f:
            f.write(json.dumps(run) + "\n")
