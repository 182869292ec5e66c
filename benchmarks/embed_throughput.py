"""Embedding throughput and memory: batched `iter_embed` vs a naive one-user-at-a-time loop.

Protocol: an untrained encoder (D=64, 2 layers, 2 heads, max_len 200, 10k-item vocabulary;
weights do not change the cost) embeds synthetic users with Zipf items and increasing
timestamps, generated lazily so the input is a true stream. Two history-length
distributions, both capped at 200 events: `uniform` (1..200, mean ~100: the compute-heavy
case) and `lognormal` (median 20, the heavy tail of real logs: most users are short). Each
measurement runs in its own subprocess so that peak RSS (`child_run.peak_rss_mib`) is its own:

- batched: `UserEncoder.iter_embed(stream, batch_size=256)` with the chunks written to a
  parquet file as `userfm embed` does (nothing accumulates in memory);
- naive: the same model and the same embedding-only forward (`return_states=False`) called
  once per user (featurize -> collate -> forward) under inference_mode, on the first
  `--naive-users` users of the same stream;
- onnx: the same model exported to ONNX (`UserEncoder.export(dir, format="onnx")`, issue 34
  §4; the export is not timed) and run by onnxruntime through `OnnxUserTower.embed`, which
  batches, length-sorts and pads as `iter_embed` does, on the same users at the same batch
  size; chunks written to parquet alike (needs the ``onnx`` extra; skipped without it);
- memory: the batched run again on 10x more users (uniform lengths); the ratio of peak RSS
  shows whether memory grows with the number of users.

Run: python benchmarks/embed_throughput.py [--quick] [--device cpu]
Prints a table and ends with one JSON line {"benchmark": "embed_throughput", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from child_run import peak_rss_mib  # noqa: E402

NUM_ITEMS = 10_000
MAX_LEN = 200


def stream_users(n: int, lengths: str = "uniform", seed: int = 0, chunk: int = 4096) -> Iterator:
    """n synthetic UserHistory objects, generated chunk by chunk (never all in memory)."""
    from userfm.data.log import UserHistory

    rng = np.random.default_rng(seed)
    item_names = np.array([str(i) for i in range(NUM_ITEMS)], dtype=object)
    popularity = 1.0 / np.arange(1, NUM_ITEMS + 1) ** 1.1
    popularity /= popularity.sum()
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        if lengths == "uniform":
            sizes = rng.integers(1, MAX_LEN + 1, size=m)
        else:
            sizes = np.clip(rng.lognormal(np.log(20), 1.0, size=m).astype(np.int64), 1, MAX_LEN)
        items = rng.choice(NUM_ITEMS, size=int(sizes.sum()), p=popularity)
        gaps = rng.exponential(3600.0, size=int(sizes.sum())).astype(np.int64)
        ends = np.cumsum(sizes)
        for u, (s, e) in enumerate(zip(ends - sizes, ends)):
            ts = 1_600_000_000 + np.cumsum(gaps[s:e])
            yield UserHistory(f"u{lo + u}", item_names[items[s:e]], ts)


def build_model(attn_backend: str = "sdpa"):
    import torch

    from userfm.data.vocab import Vocab, VocabSet
    from userfm.encoder import UserEncoder, UserEncoderConfig

    torch.manual_seed(0)
    vocabs = VocabSet(Vocab([str(i) for i in range(NUM_ITEMS)]))
    config = UserEncoderConfig(
        num_items=len(vocabs.items),
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        max_len=MAX_LEN,
        dropout=0.0,
        attn_backend=attn_backend,
    )
    return UserEncoder(config, vocabs=vocabs)


def worker(
    mode: str, users: int, lengths: str, device: str, batch_size: int, attn_backend: str
) -> dict:
    import pyarrow.parquet as pq
    import torch

    from userfm.data.collate import collate

    model = build_model(attn_backend).eval().to(device)
    if mode == "onnx":
        return onnx_worker(model, users, lengths, batch_size)
    t0 = time.perf_counter()
    if mode == "batched":
        with tempfile.TemporaryDirectory() as tmp:
            writer = None
            stream = stream_users(users, lengths)
            for part in model.iter_embed(
                stream, batch_size=batch_size, device=device, progress=False
            ):
                table = part.to_arrow()
                writer = writer or pq.ParquetWriter(Path(tmp) / "emb.parquet", table.schema)
                writer.write_table(table)
            writer.close()
    else:
        f = model.featurizer()
        with torch.inference_mode():
            for h in stream_users(users, lengths):
                model(collate([f(h)]).to(device), return_states=False).embedding.cpu()
    seconds = time.perf_counter() - t0
    return {
        "mode": mode,
        "lengths": lengths,
        "users": users,
        "seconds": seconds,
        "users_per_s": users / seconds,
        "peak_rss_mb": peak_rss_mib(),
    }


def onnx_worker(model, users: int, lengths: str, batch_size: int) -> dict:
    """The `onnx` measurement: export (untimed), then embed the stream with onnxruntime."""
    import pyarrow.parquet as pq

    from userfm.api.onnx_tower import OnnxUserTower

    with tempfile.TemporaryDirectory() as tmp:
        tower = OnnxUserTower(model.export(Path(tmp) / "tower"))
        t0 = time.perf_counter()
        part = tower.embed(stream_users(users, lengths), batch_size=batch_size)
        pq.write_table(part.to_arrow(), Path(tmp) / "emb.parquet")
        seconds = time.perf_counter() - t0
    return {"mode": "onnx", "lengths": lengths, "users": users, "seconds": seconds,
            "users_per_s": users / seconds, "peak_rss_mb": peak_rss_mib()}  # fmt: skip


def onnx_available() -> bool:
    """Whether the ``onnx`` extra is installed (the onnx rows need it)."""
    from userfm.api.onnx_export import missing_onnx_packages

    return not missing_onnx_packages()


def worker_argv(
    mode: str, users: int, lengths: str, device: str, batch_size: int, attn_backend: str
) -> list[str]:
    """The flags with which `main` runs one measurement (``--worker``) and prints its JSON."""
    argv = ["--worker", mode, "--users", str(users), "--lengths", lengths, "--device", device]
    return [*argv, "--batch-size", str(batch_size), "--attn-backend", attn_backend]


def run_worker(
    mode: str, users: int, lengths: str, device: str, batch_size: int, attn_backend: str
) -> dict:
    """One measurement in a subprocess of its own (its own peak RSS); its JSON as a dict."""
    flags = worker_argv(mode, users, lengths, device, batch_size, attn_backend)
    cmd = [sys.executable, __file__, *flags]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="10k / 100k users, 300 naive (a few minutes on 2 cores)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--attn-backend", default="sdpa", choices=["sdpa", "xformers", "auto"])
    p.add_argument(
        "--users", type=int, default=None, help="users for the throughput run (default 100000)"
    )
    p.add_argument(
        "--naive-users", type=int, default=None, help="users for the naive loop (default 2000)"
    )
    p.add_argument("--worker", choices=["batched", "naive", "onnx"], help=argparse.SUPPRESS)
    p.add_argument("--lengths", default="uniform", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    common = (args.device, args.batch_size, args.attn_backend)
    if args.worker:
        print(json.dumps(worker(args.worker, args.users, args.lengths, *common)))
        return 0

    users = args.users or (10_000 if args.quick else 100_000)
    naive_users = args.naive_users or (300 if args.quick else 2_000)
    big = users * 10
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"
    if args.device.startswith("cuda"):
        import torch

        machine += f", {torch.cuda.get_device_name(0)}"
    print(
        f"machine: {machine}; device {args.device}, attention {args.attn_backend}; D=64, 2 layers, histories 1..{MAX_LEN} events"
    )
    runs = {}
    onnx = onnx_available() and args.device == "cpu"
    if not onnx:
        print(
            "onnx rows skipped: "
            + ("CPU only" if onnx_available() else "pip install 'userfm[onnx]'")
        )
    for lengths in ("uniform", "lognormal"):
        runs[f"batched_{lengths}"] = run_worker("batched", users, lengths, *common)
        runs[f"naive_{lengths}"] = run_worker("naive", naive_users, lengths, *common)
        if onnx:
            runs[f"onnx_{lengths}"] = run_worker("onnx", users, lengths, *common)
    runs["memory"] = run_worker("batched", big, "uniform", *common)
    speedup = {
        k: runs[f"batched_{k}"]["users_per_s"] / runs[f"naive_{k}"]["users_per_s"]
        for k in ("uniform", "lognormal")
    }
    rss_ratio = runs["memory"]["peak_rss_mb"] / runs["batched_uniform"]["peak_rss_mb"]
    print(f"{'run':<34}{'users':>10}{'users/s':>12}{'peak RSS MB':>14}")
    for name, r in runs.items():
        print(
            f"{name + ' (' + r['lengths'] + ')':<34}{r['users']:>10,}{r['users_per_s']:>12,.0f}{r['peak_rss_mb']:>14,.0f}"
        )
    for k, v in speedup.items():
        print(f"batched / naive throughput, {k} lengths: {v:.1f}x (target >= 20x)")
    onnx_ratio = {
        k: runs[f"onnx_{k}"]["users_per_s"] / runs[f"batched_{k}"]["users_per_s"]
        for k in ("uniform", "lognormal")
        if f"onnx_{k}" in runs
    }
    for k, v in onnx_ratio.items():
        print(f"onnxruntime / PyTorch eager throughput (same users, batch size), {k}: {v:.2f}x")
    print(f"peak RSS {big:,} / {users:,} users: {rss_ratio:.2f}x (target <= 1.5x)")
    summary = {
        "benchmark": "embed_throughput",
        "quick": args.quick,
        "device": args.device,
        "attn_backend": args.attn_backend,
        "machine": machine,
        "users": users,
        "users_memory_run": big,
        "rss_ratio": round(rss_ratio, 3),
        "peak_rss_mb": round(runs["batched_uniform"]["peak_rss_mb"], 1),
        "peak_rss_mb_memory_run": round(runs["memory"]["peak_rss_mb"], 1),
    }
    for k in ("uniform", "lognormal"):
        summary[f"batched_users_per_s_{k}"] = round(runs[f"batched_{k}"]["users_per_s"], 1)
        summary[f"naive_users_per_s_{k}"] = round(runs[f"naive_{k}"]["users_per_s"], 1)
        summary[f"speedup_{k}"] = round(speedup[k], 2)
        if k in onnx_ratio:
            summary[f"onnx_users_per_s_{k}"] = round(runs[f"onnx_{k}"]["users_per_s"], 1)
            summary[f"onnx_vs_torch_{k}"] = round(onnx_ratio[k], 3)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
