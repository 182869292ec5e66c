"""Logs larger than memory (issue 34 §5): prepare once, then train, validate and embed from the
prepared shards, against log size.

For each size (``--events``; ~50 events per user over 10^5 items, Zipf popularity), a
synthetic log is written as parquet files, one per simulated day with every user's events of
that day in time order (the layout of a real event log), by a generator that holds one file
at a time. Then each stage runs in a fresh process of its own, which reports its peak
resident memory (``VmHWM``):

- ``prepare``: ``prepare_log`` with the DuckDB engine under ``--memory-limit`` (events/s);
- ``prepare_pyarrow``: the other candidate of issue 34 §1 on the same input: the same
  validation pass, then pyarrow hash-partitions the users into 64 buckets and groups each
  bucket in memory (sizes up to ``--pyarrow-max-events``);
- ``train``: ``--steps`` training steps from the prepared shards (`PreparedExamples`,
  ``--train-workers`` DataLoader workers; 0 on 2 cores, where a worker competes with the
  model's threads), a small model (hidden 64, 2 blocks, sampled softmax, sparse item rows):
  input events / s;
- ``memory`` (the smallest size only): the same steps through the in-memory path
  (`read_events` + precomputed examples), the reference for the streamed events / s;
- ``validate``: leave-one-out validation from the shards, full ranking of every item (users
  / s): every user, or the first ``--validate-batches`` batches of 256 (at 10^8 events a full
  pass is 2 million users, ~80 min here, dominated by the ranking, not by the data);
- ``embed``: ``userfm embed`` of every user, one output file per shard (users / s).

    python benchmarks/streaming_memory.py --quick        # 10^6 events, a few minutes
    python benchmarks/streaming_memory.py --validate-batches 400   # 10^6, 10^7, 10^8

The last line is one JSON object: per (stage, size) peak RSS (MiB), seconds and rate; the
peak growth of train / validate / embed from the smallest to the largest size; the streamed
/ in-memory training rate; prepare's peak against its memory limit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_run import peak_rss_mib, run_child  # noqa: E402

STAGES = ("prepare", "prepare_pyarrow", "memory", "train", "validate", "embed")
T0 = 1_600_000_000
DAY = 86_400


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10^6 events only")
    p.add_argument("--events", type=float, nargs="+", default=None, help="log sizes (events)")
    p.add_argument("--events-per-user", type=int, default=50)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=200, help="training steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument(
        "--train-workers",
        type=int,
        default=0,
        help="DataLoader workers of the streamed training (0: in the main process)",
    )
    p.add_argument("--memory-limit", default="2GB", help="DuckDB's memory limit in prepare")
    p.add_argument(
        "--validate-batches",
        type=int,
        default=0,
        help="validate the first N batches of 256 users only (0: every user)",
    )
    p.add_argument("--pyarrow-max-events", type=float, default=1e7)
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--work", default=None, help="folder for the logs (default: a temporary one)")
    p.add_argument("--child", nargs=3, metavar=("STAGE", "LOG", "WORK"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = args.events or ([1e6] if args.quick else [1e6, 1e7, 1e8])
    args.events = [int(n) for n in sizes]
    return args


# ---- the log --------------------------------------------------------------------------------
def write_log(
    folder: Path, events: int, *, events_per_user: int, items: int, seed: int = 0
) -> Path:
    """~``events`` events of ``events // events_per_user`` users as one parquet file per day
    (at most 10^6 rows each), rows in time order; one file in memory at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    users = max(1, events // events_per_user)
    days = max(1, events // 1_000_000)
    rng = np.random.default_rng(seed)
    p = np.arange(1, items + 1, dtype=np.float64) ** -1.05
    cdf = np.cumsum(p / p.sum())
    for day in range(days):
        n = rng.poisson(events / days / users, size=users)
        user = np.repeat(np.arange(users, dtype=np.int64), n)
        item = np.minimum(np.searchsorted(cdf, rng.random(len(user))), items - 1).astype(np.int64)
        ts = T0 + day * DAY + rng.integers(0, DAY, len(user))
        order = np.argsort(ts, kind="stable")
        table = pa.table({"user": user[order], "item": item[order], "timestamp": ts[order]})
        pq.write_table(table, folder / f"day-{day:05d}.parquet")
    return folder


# ---- the stages (each in a fresh process) ---------------------------------------------------
def child(args: argparse.Namespace) -> None:
    from userfm.quiet import quiet_library_noise

    quiet_library_noise()
    stage, log, work = args.child
    log, work = Path(log), Path(work)
    t0 = time.perf_counter()
    row = {"prepare": _prepare, "prepare_pyarrow": _prepare_pyarrow, "memory": _train,
           "train": _train, "validate": _validate, "embed": _embed}[stage](args, log, work)  # fmt: skip
    row.update(stage=stage, seconds=time.perf_counter() - t0, peak_rss_mib=peak_rss_mib())
    print(json.dumps(row))


def _prepare(args, log: Path, work: Path) -> dict:
    import shutil

    from userfm.data.prepare import prepare_log

    out = work / "prepared"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    prepared = prepare_log(log, out, memory_limit=args.memory_limit, progress=False)
    seconds = time.perf_counter() - t0
    events = prepared.stats.rows_read
    return {"events": events, "users": prepared.num_users, "rate": events / seconds,
            "unit": "events/s", "memory_limit": args.memory_limit}  # fmt: skip


def _prepare_pyarrow(args, log: Path, work: Path) -> dict:
    """The pyarrow candidate: the same validation pass, then hash buckets grouped in memory
    (a comparison only: duplicates and short users are not handled here)."""
    import shutil

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from userfm.data.log import ReadStats
    from userfm.data.prepare import _normalise
    from userfm.data.raw_batches import open_raw_batches
    from userfm.data.read_plan import make_plan
    from userfm.data.schema import EventSchema

    out = work / "prepared_pyarrow"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    schema = EventSchema()
    raw = open_raw_batches(log, schema)
    plan = make_plan(raw.columns, schema, schema.input_columns(), ReadStats(), dedupe=False)
    staged = _normalise(raw, plan, out / "staged", progress=False)
    buckets, writers, pending = 64, {}, {}
    for path in sorted(staged.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 20):
            users = batch.column("user").to_numpy(zero_copy_only=False)
            shard = pd.util.hash_array(users.astype(object)) % buckets
            table = pa.Table.from_batches([batch])
            for k in np.unique(shard):
                part = table.filter(pa.array(shard == k))
                pending.setdefault(k, []).append(part)
                if sum(len(t) for t in pending[k]) >= 1 << 16:
                    writer = _bucket_writer(writers, k, out, part.schema)
                    writer.write_table(pa.concat_tables(pending.pop(k)))
    for k, parts in pending.items():
        _bucket_writer(writers, k, out, parts[0].schema).write_table(pa.concat_tables(parts))
    for w in writers.values():
        w.close()
    users = 0
    for k in sorted(writers):
        t = pq.read_table(out / f"b{k}.parquet")
        t = t.take(pc.sort_indices(t, [("user", "ascending"), ("timestamp", "ascending"),
                                       ("_row", "ascending")]))  # fmt: skip
        u = t.column("user").to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        offsets = pa.array(np.r_[starts, len(u)].astype(np.int32))
        lists = {c: pa.ListArray.from_arrays(offsets, t.column(c).combine_chunks())
                 for c in ("item", "timestamp")}  # fmt: skip
        pq.write_table(pa.table({"user": t.column("user").take(pa.array(starts)), **lists}),
                       out / f"shard-{k:05d}.parquet")  # fmt: skip
        users += len(starts)
    seconds = time.perf_counter() - t0
    return {"events": raw.num_rows, "users": users, "rate": raw.num_rows / seconds,
            "unit": "events/s"}  # fmt: skip


def _bucket_writer(writers: dict, k: int, out: Path, schema):
    """Bucket ``k``'s parquet writer, opened on first use."""
    import pyarrow.parquet as pq

    if k not in writers:
        writers[k] = pq.ParquetWriter(out / f"b{k}.parquet", schema)
    return writers[k]


def _train(args, log: Path, work: Path) -> dict:
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from userfm.pretrain.data import EventDataModule
    from userfm.pretrain.module import PretrainModule

    class Count(Callback):
        events, t0 = 0, None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.t0 is None and batch_idx == 1:  # after the first batch: warm
                self.t0, self.events = time.perf_counter(), 0
            self.events += int(batch.batch.mask.sum())

    L.seed_everything(0, verbose=False)
    in_memory = args.child[0] == "memory"
    source = str(_single_file(log, work) if in_memory else work / "prepared")
    dm = EventDataModule(source=source, max_len=args.max_len, batch_size=args.batch_size,
                         num_workers=0 if in_memory else args.train_workers, use_actions=False,
                         use_categories=False)  # fmt: skip
    count = Count()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.steps, logger=False,
                        limit_val_batches=0, enable_checkpointing=False, callbacks=[count],
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(_module(PretrainModule), datamodule=dm)
    rate = count.events / (time.perf_counter() - count.t0)
    return {"events": dm.stats["events"], "users": dm.stats["users"], "rate": rate,
            "unit": "input events/s"}  # fmt: skip


def _module(cls):
    return cls(encoder=dict(hidden_size=64, num_heads=2), loss="sampled", num_negatives=1024,
               sampler="uniform", sparse_items=True)  # fmt: skip


def _single_file(log: Path, work: Path) -> Path:
    """The log as one parquet file (the in-memory reader reads one file)."""
    import pyarrow.parquet as pq

    path = work / "single.parquet"
    if not path.exists():
        pq.write_table(pq.read_table(sorted(log.glob("*.parquet"))), path)
    return path


def _validate(args, log: Path, work: Path) -> dict:
    import lightning as L

    from userfm.pretrain.data import EventDataModule
    from userfm.pretrain.module import PretrainModule

    L.seed_everything(0, verbose=False)
    dm = EventDataModule(source=str(work / "prepared"), max_len=args.max_len,
                         batch_size=args.batch_size, eval_batch_size=256, use_actions=False,
                         use_categories=False)  # fmt: skip
    limit = args.validate_batches or 1.0
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=limit)  # fmt: skip
    t0 = time.perf_counter()
    trainer.validate(_module(PretrainModule), datamodule=dm, verbose=False)
    users = len(dm.datasets["valid"])
    if args.validate_batches:
        users = min(users, args.validate_batches * 256)
    return {"events": dm.stats["events"], "users": users,
            "rate": users / (time.perf_counter() - t0), "unit": "users/s"}  # fmt: skip


def _embed(args, log: Path, work: Path) -> dict:
    import shutil

    import torch

    from userfm.api.embed_prepared import embed_prepared, finish_output, start_output
    from userfm.data.prepared import PreparedLog
    from userfm.encoder import UserEncoder

    torch.manual_seed(0)
    prepared = PreparedLog.open(work / "prepared")
    model = UserEncoder.from_vocabs(prepared.vocabs, hidden_size=64, num_heads=2,
                                    max_len=args.max_len)  # fmt: skip
    out = work / "embeddings"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    start_output(model, prepared, out)
    stats = embed_prepared(model, prepared, out, batch_size=256, progress=False)
    finish_output(prepared, out)
    return {"events": prepared.num_events, "users": stats["users"],
            "rate": stats["users"] / (time.perf_counter() - t0), "unit": "users/s"}  # fmt: skip


# ---- the run --------------------------------------------------------------------------------
def run(args: argparse.Namespace, work: Path) -> list[dict]:
    rows = []
    for n in args.events:
        log = write_log(work / f"log-{n}", n, events_per_user=args.events_per_user,
                        items=args.items)  # fmt: skip
        for stage in args.stages:
            if stage == "memory" and n != args.events[0]:
                continue
            if stage == "prepare_pyarrow" and n > args.pyarrow_max_events:
                continue
            cmd = [sys.executable, __file__, "--child", stage, str(log), str(work),
                   "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                   "--max-len", str(args.max_len), "--memory-limit", args.memory_limit,
                   "--train-workers", str(args.train_workers),
                   "--validate-batches", str(args.validate_batches)]  # fmt: skip
            row = {"size": n, **run_child(cmd)}
            row.setdefault("stage", stage)
            rows.append(row)
            if "failed" in row:
                print(f"{n:>12,} {stage:<16} failed ({row['failed'][-200:]})", flush=True)
                continue
            print(f"{n:>12,} {stage:<16} peak {row['peak_rss_mib']:>7,.0f} MiB, "
                  f"{row['seconds']:>7.1f} s, {row['rate']:>12,.0f} {row['unit']}", flush=True)  # fmt: skip
        import shutil

        shutil.rmtree(log, ignore_errors=True)
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["| events | stage | peak RSS MiB | x smallest | seconds | rate |",
             "|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    first: dict[str, dict] = {}
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['size']:,} | {r['stage']} | failed | | | |")
            continue
        base = first.setdefault(r["stage"], r)
        lines.append(
            f"| {r['size']:,} | {r['stage']} | {r['peak_rss_mib']:,.0f} | "
            f"{r['peak_rss_mib'] / base['peak_rss_mib']:.2f} | {r['seconds']:,.0f} | "
            f"{r['rate']:,.0f} {r['unit']} |"
        )
    return lines


def summary(rows: list[dict], args: argparse.Namespace) -> dict:
    done = [r for r in rows if "failed" not in r]
    out: dict = {"benchmark": "streaming_memory", "quick": args.quick,
                 "memory_limit": args.memory_limit}  # fmt: skip
    out["runs"] = {
        f"{r['stage']}_{r['size']}": {"peak_rss_mib": round(r["peak_rss_mib"]),
                                      "seconds": round(r["seconds"], 1), "rate": round(r["rate"], 1)}
        for r in done
    }  # fmt: skip
    out["failed"] = [f"{r['stage']}_{r['size']}" for r in rows if "failed" in r]
    for stage in ("train", "validate", "embed", "prepare"):
        runs = [r for r in done if r["stage"] == stage]
        if len(runs) > 1:
            out[f"peak_growth_{stage}"] = round(
                runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"], 3
            )
    memory = next((r for r in done if r["stage"] == "memory"), None)
    train = next(
        (r for r in done if r["stage"] == "train" and memory and r["size"] == memory["size"]), None
    )
    if memory and train:
        out["train_streamed_vs_memory"] = round(train["rate"] / memory["rate"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; events {args.events}; "
          f"{args.events_per_user} events/user, {args.items:,} items; {args.steps} steps of "
          f"batch {args.batch_size}, max_len {args.max_len}; prepare memory limit "
          f"{args.memory_limit}")  # fmt: skip
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        rows = run(args, Path(args.work))
    else:
        with tempfile.TemporaryDirectory() as folder:
            rows = run(args, Path(folder))
    print("\n".join(["", *table(rows)]))
    print(json.dumps(summary(rows, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
