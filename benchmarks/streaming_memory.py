"""Training memory against log size: the in-memory training set vs ``data.streaming: true``.

Issue 20 §1 ("logs larger than RAM through the streaming path: measure it"). For synthetic
logs of ``--users`` users (about 50 events each, 10^4 items), each written once to parquet,
a fresh process per (users, mode) builds the `EventDataModule` from the file and runs
``--steps`` training steps of a small `PretrainModule` (hidden 64, 2 blocks, sampled softmax
with sparse item rows: the loss costs the same at every size), and reports its peak resident
memory, the data set-up time and the training steps per second.

- ``memory``: every training window is a tensor example in memory (the default);
- ``streaming``: training examples are built on the fly from the memory-mapped Arrow log,
  user by user through a shuffle buffer;
- ``read``: only ``read_events`` on the file (no examples, no training): the reader's own
  share of the peak.

Both modes keep each user's validation and test example in memory (one each, at most
``max_len`` events), so streaming bounds the memory of the training set, not of the
evaluation sets: the table shows how much each still grows with the number of users.

    python benchmarks/streaming_memory.py --quick    # 2,000 and 10,000 users, a few minutes
    python benchmarks/streaming_memory.py            # 10^4, 10^5, 3x10^5 users

The last line is one JSON object: per configuration peak RSS (MiB), set-up seconds and
steps/s, and the peak RSS growth from the smallest to the largest log per mode.
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

MODES = ("read", "memory", "streaming")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 and 10,000 users")
    p.add_argument("--users", type=int, nargs="+", default=None, help="log sizes (users)")
    p.add_argument("--steps", type=int, default=20, help="training steps per run")
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--child", nargs=2, metavar=("LOG", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.users = args.users or ([2000, 10_000] if args.quick else [10_000, 100_000, 300_000])
    return args


def child(args: argparse.Namespace) -> None:
    """One (log, mode) in this process: set up, train, print one JSON line."""
    import lightning as L

    from userfm.pretrain.data import EventDataModule
    from userfm.pretrain.module import PretrainModule
    from userfm.quiet import quiet_library_noise

    quiet_library_noise()
    path, mode = args.child
    t0 = time.perf_counter()
    if mode == "read":
        from userfm.data.readers import read_events

        log = read_events(path)
        print(json.dumps({"events": len(log), "users": log.num_users, "mode": mode,
                          "peak_rss_mib": peak_rss_mib(), "setup_s": time.perf_counter() - t0,
                          "steps_per_s": 0.0}))  # fmt: skip
        return
    L.seed_everything(0, verbose=False)
    dm = EventDataModule(source=path, max_len=args.max_len, batch_size=128,
                         streaming=mode == "streaming", use_actions=False, use_categories=False)  # fmt: skip
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    module = PretrainModule(encoder=dict(hidden_size=64, num_heads=2), loss="sampled",
                            num_negatives=1024, sampler="uniform", sparse_items=True)  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.steps, logger=False,
                        limit_val_batches=0, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    steps_s = trainer.global_step / (time.perf_counter() - t0)
    peak = peak_rss_mib()
    print(json.dumps({"events": dm.stats["events"], "users": dm.stats["users"], "mode": mode,
                      "peak_rss_mib": peak, "setup_s": setup_s, "steps_per_s": steps_s}))  # fmt: skip


def write_logs(users: list[int], folder: Path) -> dict[int, Path]:
    from userfm.data.synthetic import SyntheticConfig, write_synthetic_log

    paths = {}
    for n in users:
        paths[n] = write_synthetic_log(
            folder / f"events-{n}.parquet", SyntheticConfig(num_users=n, num_items=10_000)
        )
    return paths


def run(args: argparse.Namespace, paths: dict[int, Path]) -> list[dict]:
    rows = []
    for n, path in paths.items():
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--child", str(path), mode,
                   "--steps", str(args.steps), "--max-len", str(args.max_len)]  # fmt: skip
            row = run_child(cmd)
            if "failed" in row:
                rows.append({"users": n, "mode": mode, **row})
                print(f"{n:>9,} users {mode:<9} failed ({row['failed'][:40]})", flush=True)
                continue
            rows.append(row)
            print(f"{n:>9,} users ({row['events']:,} events) {mode:<9} peak "
                  f"{row['peak_rss_mib']:>7,.0f} MiB, set-up {row['setup_s']:.0f} s, "
                  f"{row['steps_per_s']:.1f} steps/s", flush=True)  # fmt: skip
    return rows


def table(rows: list[dict]) -> list[str]:
    done = [r for r in rows if "failed" not in r]
    first = {m: next((r for r in done if r["mode"] == m), None) for m in MODES}
    lines = ["| users | events | mode | peak RSS MiB | x smallest | set-up s | steps/s |",
             "|---:|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['users']:,} | | {r['mode']} | failed | | | |")
            continue
        base = first[r["mode"]]
        lines.append(
            f"| {r['users']:,} | {r['events']:,} | {r['mode']} | {r['peak_rss_mib']:,.0f} | "
            f"{r['peak_rss_mib'] / base['peak_rss_mib']:.2f} | {r['setup_s']:.0f} | "
            f"{r['steps_per_s']:.1f} |"
        )
    return lines


def summary(rows: list[dict], quick: bool) -> dict:
    done = [r for r in rows if "failed" not in r]
    out: dict = {"benchmark": "streaming_memory", "quick": quick}
    out["configs"] = {
        f"{r['mode']}_{r['users']}": {"events": r["events"], "peak_rss_mib": round(r["peak_rss_mib"]),
                                      "setup_s": round(r["setup_s"], 1),
                                      "steps_per_s": round(r["steps_per_s"], 2)}
        for r in done
    }  # fmt: skip
    for mode in MODES:
        runs = [r for r in done if r["mode"] == mode]
        if len(runs) > 1:
            out[f"peak_rss_growth_{mode}"] = round(
                runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"], 3
            )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; users {args.users}; "
          f"{args.steps} steps, batch 128, max_len {args.max_len}")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        rows = run(args, write_logs(args.users, Path(folder)))
    print("\n".join(["", *table(rows)]))
    print(json.dumps(summary(rows, args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
