"""`recommend` against catalogue size: items scored in blocks vs every item at once.

Issue 20 §1 ("`recommend` must run blockwise over items with bounded memory"). For
catalogues of 10^4 .. 10^6 items, a fresh process per (items, mode) builds an untrained
`UserEncoder` over that many items (hidden 64, 2 blocks, 2 heads, ids only: the scoring cost
does not depend on the weights), asks `recommend(k=10)` for ``--users`` users with
``--history`` random items each (seen items excluded), and reports its peak resident memory
and users per second:

- ``model``: the model and its vocabulary built, nothing scored: the floor every mode shares
  (the (V, D) item table and the vocabulary's strings grow with V);
- ``blocks``: `recommend` as shipped: ``item_block`` (65,536) items scored at a time, a running
  top-k merged block by block, so scores take (batch_size, item_block + k) floats;
- ``one block``: ``item_block`` = the catalogue: the (batch_size, V) scores of a batch at once,
  the baseline.

The two modes return the same recommendations (tests/api/test_recommend.py). Ratios: each
mode's peak above the ``model`` floor, blocks against one block.

    python benchmarks/recommend_scale.py --quick    # 10^4 and 10^5 items, about a minute
    python benchmarks/recommend_scale.py            # 10^4, 10^5, 10^6 items

The last line is one JSON object: per configuration peak RSS (MiB) and users/s, and per
catalogue the scoring memory (peak above the floor) of blocks over one block.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_run import peak_rss_mib, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODES = ("model", "blocks", "one block")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10^4 and 10^5 items")
    p.add_argument("--items", type=int, nargs="+", default=None, help="catalogue sizes")
    p.add_argument("--users", type=int, default=1024, help="users recommended to")
    p.add_argument("--history", type=int, default=50, help="random items per user")
    p.add_argument("--batch-size", type=int, default=256, help="recommend's batch_size")
    p.add_argument("--child", nargs=2, metavar=("ITEMS", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.items = args.items or ([10**4, 10**5] if args.quick else [10**4, 10**5, 10**6])
    for name in ("users", "history", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def child(args: argparse.Namespace) -> None:
    """One (items, mode) in this process: build, recommend, print one JSON line."""
    import numpy as np
    import torch

    from userfm.data.vocab import Vocab, VocabSet
    from userfm.encoder import UserEncoder

    items, mode = int(args.child[0]), args.child[1]
    torch.manual_seed(0)
    vocabs = VocabSet(Vocab([f"i{i}" for i in range(items)]))
    model = UserEncoder.from_vocabs(
        vocabs, hidden_size=64, num_heads=2, max_len=args.history, use_time=False
    ).eval()
    rng = np.random.default_rng(0)
    histories = {
        f"u{u}": [f"i{i}" for i in rng.integers(0, items, args.history)] for u in range(args.users)
    }
    seconds, first = 0.0, []
    if mode != "model":
        block = items if mode == "one block" else None  # None: recommend's default
        start = time.perf_counter()
        recs = model.recommend(
            histories, k=10, batch_size=args.batch_size, item_block=block, progress=False
        )
        seconds = time.perf_counter() - start
        first = recs.item_ids[0].tolist()
    print(json.dumps({"items": items, "mode": mode, "peak_rss_mib": peak_rss_mib(),
                      "seconds": seconds, "users_per_s": args.users / seconds if seconds else None,
                      "first_user": first}))  # fmt: skip


def run_all(args: argparse.Namespace) -> list[dict]:
    """Every (items, mode) in its own process (a clean peak-RSS reading each)."""
    flags = ["--users", str(args.users), "--history", str(args.history),
             "--batch-size", str(args.batch_size)]  # fmt: skip
    rows = []
    for items in args.items:
        for mode in MODES:
            row = run_child([sys.executable, __file__, "--child", str(items), mode, *flags],
                            cwd=ROOT)  # fmt: skip
            row.update(items=items, mode=mode)
            rows.append(row)
            if "failed" in row:
                print(f"{items:>9,} {mode:<9} failed: {row['failed']}", flush=True)
                continue
            rate = f"{row['users_per_s']:>9,.0f} users/s" if row["users_per_s"] else " " * 17
            print(f"{items:>9,} {mode:<9} {rate} {row['peak_rss_mib']:>8,.0f} MiB peak", flush=True)
    return rows


def scoring_mib(rows: list[dict]) -> dict[tuple[int, str], float]:
    """(items, mode) -> peak RSS above that catalogue's ``model`` floor, MiB."""
    floor = {
        r["items"]: r["peak_rss_mib"] for r in rows if r["mode"] == "model" and "failed" not in r
    }
    return {
        (r["items"], r["mode"]): r["peak_rss_mib"] - floor[r["items"]]
        for r in rows
        if r["mode"] != "model" and "failed" not in r and r["items"] in floor
    }


def table(rows: list[dict]) -> list[str]:
    """Markdown: per catalogue and mode, peak RSS, the part above the floor, users/s; and
    whether blocks and one block recommended the same items to the first user."""
    above = scoring_mib(rows)
    lines = ["| items | mode | peak RSS MiB | above the model MiB | x one block | users/s |",
             "|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['items']:,} | {r['mode']} | failed | | | |")
            continue
        extra = above.get((r["items"], r["mode"]))
        base = above.get((r["items"], "one block"))
        ratio = f"{extra / base:.2f}" if extra is not None and base else ""
        rate = f"{r['users_per_s']:,.0f}" if r["users_per_s"] else ""
        cell = f"{extra:,.0f}" if extra is not None else ""
        lines.append(
            f"| {r['items']:,} | {r['mode']} | {r['peak_rss_mib']:,.0f} | {cell} | {ratio} | {rate} |"
        )
    return lines


def summary(rows: list[dict], args: argparse.Namespace) -> dict:
    above = scoring_mib(rows)
    out: dict = {"benchmark": "recommend_scale", "quick": args.quick, "users": args.users}
    out["configs"] = {
        f"{r['mode'].replace(' ', '_')}_{r['items']}": {
            "peak_rss_mib": round(r["peak_rss_mib"]),
            "users_per_s": round(r["users_per_s"]) if r["users_per_s"] else None,
        }
        for r in rows
        if "failed" not in r
    }
    for items in args.items:
        blocks, one = above.get((items, "blocks")), above.get((items, "one block"))
        if blocks is not None and one:
            out[f"scoring_mib_blocks_vs_one_block_{items}"] = round(blocks / one, 3)
    done = {(r["items"], r["mode"]): r for r in rows if "failed" not in r}
    out["same_top_k"] = all(
        done[(i, "blocks")]["first_user"] == done[(i, "one block")]["first_user"]
        for i in args.items
        if (i, "blocks") in done and (i, "one block") in done
    )
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.users:,} users x "
          f"{args.history} items, k 10, batch_size {args.batch_size}")  # fmt: skip
    rows = run_all(args)
    print("\n".join(["", *table(rows)]))
    print(json.dumps(summary(rows, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
