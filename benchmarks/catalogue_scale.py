"""Training cost against catalogue size: full softmax, chunked full softmax, sampled softmax.

Issue 20 §1. For catalogues of 10^3 .. 10^6 items, one `UserEncoder` training step (forward,
next-item loss, backward, AdamW) on the same batch shape (users x positions) is timed in a
fresh process per configuration, which also reports its peak resident memory:

- ``full``: `full_softmax_loss`, the (N, V) logits at once;
- ``chunked``: the same loss over blocks of ``--chunk`` items (`chunked_log_z`): the (N, V)
  logits never exist, each block's are recomputed in the backward pass;
- ``sampled``: `sampled_softmax_loss`, ``--negatives`` uniform negatives shared by the batch,
  logQ-corrected; the item table gets a dense (V, D) gradient and a dense AdamW step;
- ``sparse``: the same loss with the item table's gradient sparse (the rows the step read) and
  `LazyAdamW` moving those rows only (``PretrainModule(sparse_items=True)``).

Printed: a table of events/s (target positions per second) and peak RSS, each as a ratio to
the same loss at the smallest catalogue, and a log-log chart (``--out``). A configuration
whose (N, V) float32 logits would pass ``--max-logits-gib`` is skipped (named, not run): the
full softmax at 10^6 items and 6,400 positions needs 24 GiB for its logits alone.

History length: the ``sparse`` step over ``--length-items`` items (10^4) at ``--lengths``
positions per user (50, 200, 1,000), with fewer users per step as histories grow, so that every
step holds the same 6,400 positions: what the length itself costs. Attention runs through
PyTorch's SDPA, whose CPU kernels are the flash / math ones; on a GPU, SDPA picks its
memory-efficient or FlashAttention kernel and ``attn_backend="xformers"`` packs the histories.

Protocol: random histories (the step's cost does not depend on the ids), hidden size 64,
2 blocks, 2 heads, SDPA; ``--warmup`` steps untimed, then ``--steps`` timed; torch threads as
the machine gives them.

On a GPU (``--device cuda``): the same steps on the card, synchronised before and after the
timed ones; memory is the card's peak (``torch.cuda.max_memory_allocated``, what the step
itself holds) instead of the process's RSS. ``--precision bf16`` runs the step under bf16
autocast; ``--sdpa-kernels`` times the history lengths once per SDPA kernel named (``flash``,
``efficient``, ``math``; ``default`` lets PyTorch choose), each forced through
``torch.nn.attention.sdpa_kernel`` (a kernel that cannot run the step is named as failed).

``--quality``: each loss also trains a `PretrainModule` on a synthetic log (``--quality-users``
users over ``--quality-items`` items, the same log for every loss) for ``--quality-epochs``
epochs per seed, and reports validation full-ranking NDCG@10 (seen items filtered) against the
full softmax's, the same budget for each: the quality a cheaper loss gives up. Most popular
(training counts; `evaluate_retrieval` on the same log's validation split), and each model
given another user's history (`userfm.eval.OtherUsersInput`), are printed beside them: what
a model scores when it cannot read the user's own history.

    python benchmarks/catalogue_scale.py --quick      # 10^3 .. 10^5 items, a few minutes
    python benchmarks/catalogue_scale.py              # 10^3 .. 10^6 items

The last line is one JSON object: per configuration events/s and peak RSS (MiB), and the
headline ratios (events/s at the largest catalogue against 10^4 items, per loss).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_run import peak_rss_mib, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ("full", "chunked", "sampled", "sparse")
SDPA_KERNELS = ("default", "flash", "efficient", "math")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10^3 .. 10^5 items, fewer steps")
    p.add_argument("--items", type=int, nargs="+", default=None, help="catalogue sizes")
    p.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    p.add_argument("--batch", type=int, default=128, help="users per step")
    p.add_argument("--max-len", type=int, default=50, help="positions per user")
    p.add_argument("--chunk", type=int, default=8192, help="items per block of `chunked`")
    p.add_argument("--negatives", type=int, default=1024, help="negatives of `sampled`")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 5, quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--max-logits-gib", type=float, default=6.0, help="skip larger (N, V)")
    p.add_argument("--out", type=Path, default=None, help="PNG chart of the table")
    p.add_argument("--quality", action="store_true", help="also NDCG@10 at a fixed budget")
    p.add_argument("--quality-users", type=int, default=3000)
    p.add_argument("--quality-items", type=int, default=5000)
    p.add_argument("--quality-epochs", type=int, default=None, help="default 10, quick 4")
    p.add_argument("--seeds", type=int, default=None, help="quality seeds (default 3, quick 1)")
    p.add_argument("--lengths", type=int, nargs="*", default=None,
                   help="history lengths to time (default 50 200 1000; none: skip)")  # fmt: skip
    p.add_argument("--length-items", type=int, default=10**4, help="catalogue of --lengths")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where steps run")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="bf16: the step under bf16 autocast")  # fmt: skip
    p.add_argument("--sdpa-kernels", nargs="+", default=["default"], choices=SDPA_KERNELS,
                   help="history lengths: one run per SDPA kernel")  # fmt: skip
    p.add_argument("--sdpa-kernel", default="default", choices=SDPA_KERNELS, help=argparse.SUPPRESS)
    p.add_argument("--child", nargs=2, metavar=("ITEMS", "LOSS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.items = args.items or (
        [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    )
    args.steps = args.steps or (3 if args.quick else 5)
    args.quality_epochs = args.quality_epochs or (4 if args.quick else 10)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.lengths = [50, 200, 1000] if args.lengths is None else args.lengths
    return args


def child(args: argparse.Namespace) -> None:
    """One configuration in this process: time the steps, print one JSON line."""
    import torch

    from userfm.data.batch import Batch
    from userfm.encoder import UserEncoder, UserEncoderConfig
    from userfm.pretrain.lazy_adamw import LazyAdamW
    from userfm.pretrain.objectives import next_item_loss

    items, loss = int(args.child[0]), args.child[1]
    device = torch.device(args.device)
    torch.manual_seed(0)
    B, T = args.batch, args.max_len
    config = UserEncoderConfig(num_items=items + 3, hidden_size=64, num_heads=2, max_len=T)
    model = UserEncoder(config).to(device)
    sparse = loss == "sparse"
    model.embeddings.item.sparse = sparse
    optimizer = (LazyAdamW if sparse else torch.optim.AdamW)(model.optimizer_groups(0.01), lr=1e-3)
    ids = torch.randint(3, items + 3, (B, T + 1), device=device)
    ones = torch.ones(B, T, dtype=torch.long, device=device)
    batch = Batch(items=ids[:, :T], mask=ones.bool(), time_gaps=ones, hours=ones, weekdays=ones)
    targets = ids[:, 1:].reshape(-1)  # (N,) every position's next item
    kind = {"chunked": "full", "sparse": "sampled"}.get(loss, loss)
    extra = {"chunk_size": args.chunk} if loss == "chunked" else {}
    if kind == "sampled":
        extra = {"num_negatives": args.negatives, "sampler": "uniform", "sparse_grad": sparse}
    kernel = sdpa_context(args.sdpa_kernel)

    def step() -> float:
        with kernel(), torch.autocast(device.type, torch.bfloat16, args.precision == "bf16"):
            states = model(batch).states.reshape(B * T, -1)  # (N, D)
            items_ = model.embeddings.item_vectors()
            value = next_item_loss(states, items_, targets, kind=kind, **extra)
        optimizer.zero_grad(set_to_none=True)
        value.mean().backward()
        optimizer.step()
        return float(value.mean())  # reading the value waits for the step to finish

    for _ in range(args.warmup):
        step()
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        last = step()
    seconds = time.perf_counter() - start
    row = {"items": items, "loss": loss, "max_len": T, "batch": B, "device": args.device,
           "precision": args.precision, "sdpa_kernel": args.sdpa_kernel,
           "events_per_s": B * T * args.steps / seconds, "peak_rss_mib": peak_rss_mib(),
           "seconds_per_step": seconds / args.steps, "final_loss": last}  # fmt: skip
    if on_gpu:
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        row["device_name"] = torch.cuda.get_device_name(device)
    print(json.dumps(row))


def sdpa_context(kernel: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory forcing SDPA's ``kernel`` (``default``: PyTorch's own choice)."""
    if kernel == "default":
        return contextlib.nullcontext
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "math": SDPBackend.MATH}[kernel]  # fmt: skip
    return lambda: sdpa_kernel(backend)


def memory_key(rows: list[dict]) -> str:
    """The memory a table reports: the card's peak where the steps ran on a GPU, else RSS."""
    return "peak_gpu_mib" if any("peak_gpu_mib" in r for r in rows) else "peak_rss_mib"


def run_all(args: argparse.Namespace) -> list[dict]:
    """Every configuration in its own process (a clean peak-RSS reading each)."""
    rows = []
    positions = args.batch * args.max_len
    for items in args.items:
        for loss in args.losses:
            gib = positions * (items + 3) * 4 / 2**30
            if loss == "full" and gib > args.max_logits_gib:
                rows.append({"items": items, "loss": loss, "skipped": f"logits need {gib:.0f} GiB"})
                print(
                    f"{items:>9,} {loss:<8} skipped: its (N, V) logits need {gib:.0f} GiB",
                    flush=True,
                )
                continue
            row = run_one(args, items, loss, args.batch, args.max_len)
            rows.append(row)
            if "skipped" in row:
                print(f"{items:>9,} {loss:<8} {row['skipped']}", flush=True)
                continue
            print(f"{items:>9,} {loss:<8} {row['events_per_s']:>10,.0f} events/s  "
                  f"{row[memory_key([row])]:>8,.0f} MiB peak", flush=True)  # fmt: skip
    return rows


def run_one(
    args: argparse.Namespace,
    items: int,
    loss: str,
    batch: int,
    max_len: int,
    kernel: str = "default",
) -> dict:
    """One configuration in a fresh process (a clean peak-RSS reading): its JSON row, or a
    row with ``skipped`` naming the failure."""
    flags = ["--batch", str(batch), "--max-len", str(max_len), "--chunk", str(args.chunk),
             "--negatives", str(args.negatives), "--steps", str(args.steps), "--warmup",
             str(args.warmup), "--device", args.device, "--precision", args.precision,
             "--sdpa-kernel", kernel]  # fmt: skip
    row = run_child([sys.executable, __file__, "--child", str(items), loss, *flags], cwd=ROOT)
    if "failed" in row:
        return {"items": items, "loss": loss, "max_len": max_len, "batch": batch,
                "sdpa_kernel": kernel, "skipped": f"failed ({row['failed']})"}  # fmt: skip
    return row


def run_lengths(args: argparse.Namespace) -> list[dict]:
    """The ``sparse`` step at ``--lengths`` positions per user over ``--length-items`` items,
    with users per step cut so every step holds the same positions (``--batch`` x 50): the
    events/s and memory the history length itself costs (attention grows with its square)."""
    positions = args.batch * 50
    rows = []
    for kernel in args.sdpa_kernels:
        for length in args.lengths:
            users = max(1, positions // length)
            row = run_one(args, args.length_items, "sparse", users, length, kernel)
            rows.append(row)
            said = row.get("skipped") or (f"{row['events_per_s']:>10,.0f} events/s  "
                                          f"{row[memory_key([row])]:>8,.0f} MiB peak")  # fmt: skip
            print(f"max_len {length:>5,} ({users} users/step, SDPA {kernel}) {said}", flush=True)
    return rows


def length_table(rows: list[dict]) -> list[str]:
    """Markdown table of `run_lengths`: events/s and peak RSS, ratios to the shortest."""
    kernels = len({r.get("sdpa_kernel", "default") for r in rows}) > 1
    return ratio_table(
        rows,
        head="| SDPA kernel | max_len | users / step |"
        if kernels
        else "| max_len | users / step |",
        align="|---|---:|---:|" if kernels else "|---:|---:|",
        label=lambda r: (
            (f"{r.get('sdpa_kernel', 'default')} | " if kernels else "")
            + f"{r['max_len']:,} | {r.get('batch', '')}"
        ),
        group=lambda r: r.get("sdpa_kernel", "default"),
        base_name="shortest",
    )


def length_summary(rows: list[dict]) -> dict[str, float]:
    """Headline ratios of `run_lengths`: each length's events/s against the shortest of the
    same SDPA kernel (the kernel named in the key unless it is PyTorch's default)."""
    out: dict[str, float] = {}
    base: dict[str, dict] = {}
    for r in rows:
        if "skipped" in r:
            continue
        kernel = r.get("sdpa_kernel", "default")
        b = base.setdefault(kernel, r)
        if b is not r:
            suffix = "" if kernel == "default" else f"_{kernel}"
            key = f"events_per_s_len{r['max_len']}_vs_len{b['max_len']}{suffix}"
            out[key] = round(r["events_per_s"] / b["events_per_s"], 3)
    return out


#: the key prefix of a loss's models scored given another user's input (`quality`)
ANOTHER_USER = "another_user_"


def quality(args: argparse.Namespace) -> dict[str, list[float]]:
    """Validation NDCG@10 per loss and seed after the same training budget; each model also
    given another user's input (``another_user_<loss>``, `OtherUsersInput`), and most popular
    (``most_popular``): what a model that does not read its user scores."""
    import lightning as L

    from userfm.eval import OtherUsersInput
    from userfm.eval.baselines import MostPopular
    from userfm.eval.retrieval import evaluate_retrieval
    from userfm.pretrain.data import EventDataModule
    from userfm.pretrain.module import PretrainModule
    from userfm.quiet import quiet_library_noise

    quiet_library_noise()
    synthetic = {"num_users": args.quality_users, "num_items": args.quality_items, "seed": 0}
    out: dict[str, list[float]] = {}
    for loss in args.losses:
        for seed in range(args.seeds):
            L.seed_everything(seed, verbose=False)
            dm = EventDataModule(source="synthetic", synthetic=synthetic, max_len=args.max_len,
                                 batch_size=args.batch, seed=seed)  # fmt: skip
            sampled = {"loss": "sampled", "num_negatives": args.negatives, "sampler": "uniform"}
            kind = {"chunked": {"chunk_size": args.chunk}, "sampled": sampled,
                    "sparse": {**sampled, "sparse_items": True}}.get(loss, {})  # fmt: skip
            module = PretrainModule(encoder={"hidden_size": 64, "num_heads": 2}, lr=2e-3,
                                    warmup_steps=20, **kind)  # fmt: skip
            trainer = L.Trainer(max_epochs=args.quality_epochs, devices=1,
                                accelerator="gpu" if args.device == "cuda" else "cpu",
                                logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, num_sanity_val_steps=0,
                                check_val_every_n_epoch=args.quality_epochs)  # fmt: skip
            trainer.fit(module, dm)
            value = float(trainer.callback_metrics["valid/ndcg@10"])
            out.setdefault(loss, []).append(value)
            control = evaluate_retrieval(OtherUsersInput(module.encoder), dm.log_, split="valid")
            out.setdefault(ANOTHER_USER + loss, []).append(control.metrics["NDCG@10"])
            print(f"quality: {loss:<8} seed {seed}: valid NDCG@10 {value:.4f} "
                  f"({len(dm.vocabs.items) - 3:,} items in the log)", flush=True)  # fmt: skip
    log = dm.log_  # the same synthetic log for every loss and seed
    popular = evaluate_retrieval(MostPopular().fit(log, split="valid"), log, split="valid")
    out["most_popular"] = [popular.metrics["NDCG@10"]]
    return out


def table(rows: list[dict], losses: list[str]) -> list[str]:
    """Markdown table: events/s and peak RSS per loss, ratios to the smallest catalogue."""
    return ratio_table(
        rows,
        head="| items | loss |",
        align="|---:|---|",
        label=lambda r: f"{r['items']:,} | {r['loss']}",
        group=lambda r: r["loss"],
        base_name="smallest",
    )


def ratio_table(
    rows: list[dict],
    *,
    head: str,
    align: str,
    label: Callable[[dict], str],
    group: Callable[[dict], object],
    base_name: str,
) -> list[str]:
    """Markdown rows: ``label``'s cells, then events/s and peak RSS, each also as a ratio to
    the first measured row of the same ``group``; a skipped row says why."""
    base: dict[object, dict] = {}
    for r in rows:
        if "skipped" not in r:
            base.setdefault(group(r), r)
    mem = memory_key(rows)
    mem_name = "peak GPU MiB" if mem == "peak_gpu_mib" else "peak RSS MiB"
    lines = [f"{head} events/s | x {base_name} | {mem_name} | x {base_name} |",
             f"{align}---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {label(r)} | {r['skipped']} | | | |")
            continue
        b = base[group(r)]
        lines.append(
            f"| {label(r)} | {r['events_per_s']:,.0f} | "
            f"{r['events_per_s'] / b['events_per_s']:.2f} | {r[mem]:,.0f} | "
            f"{r[mem] / b[mem]:.2f} |"
        )
    return lines


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem = memory_key(rows)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for loss in LOSSES:
        done = [r for r in rows if r["loss"] == loss and "skipped" not in r]
        if done:
            x = [r["items"] for r in done]
            a.plot(x, [r["events_per_s"] for r in done], marker="o", label=loss)
            b.plot(x, [r[mem] for r in done], marker="o", label=loss)
    memory = "peak GPU memory (MiB)" if mem == "peak_gpu_mib" else "peak RSS (MiB)"
    for ax, label in ((a, "events / s"), (b, memory)):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("items in the catalogue")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(rows: list[dict], args: argparse.Namespace, scores: dict | None = None) -> dict:
    done = {(r["items"], r["loss"]): r for r in rows if "skipped" not in r}
    largest, ref = max(args.items), 10**4
    ratios = {
        f"events_per_s_{loss}_{largest}_vs_{ref}": round(
            done[(largest, loss)]["events_per_s"] / done[(ref, loss)]["events_per_s"], 3
        )
        for loss in args.losses
        if (largest, loss) in done and (ref, loss) in done
    }
    mem = memory_key(rows)
    configs = {
        f"{r['loss']}_{r['items']}": {"events_per_s": round(r["events_per_s"]),
                                      mem: round(r[mem])}
        for r in rows if "skipped" not in r
    }  # fmt: skip
    out = {"benchmark": "catalogue_scale", "quick": args.quick, **ratios, "configs": configs}
    if scores and "full" in scores:
        full = sum(scores["full"]) / len(scores["full"])
        for loss, values in scores.items():
            out[f"ndcg10_{loss}"] = round(sum(values) / len(values), 4)
            if not loss.startswith(ANOTHER_USER):
                out[f"ndcg10_{loss}_vs_full"] = round(sum(values) / len(values) / full, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; steps on {args.device} "
          f"({args.precision}); batch {args.batch} users x "
          f"{args.max_len} positions; chunk {args.chunk}; {args.negatives} sampled negatives; "
          f"{args.steps} timed steps after {args.warmup}")  # fmt: skip
    rows = run_all(args)
    print("\n".join(["", *table(rows, args.losses)]))
    lengths = run_lengths(args)
    if lengths:
        print("\n".join(["", *length_table(lengths)]))
    if args.out is not None:
        chart(rows, args.out)
        print(f"chart: {args.out}")
    scores = quality(args) if args.quality else None
    if scores:
        full = scores.get("full")
        for loss, values in scores.items():
            mean, sd = statistics.fmean(values), statistics.pstdev(values)
            ratio = f", {mean / statistics.fmean(full):.3f}x full" if full else ""
            if loss.startswith(ANOTHER_USER):
                loss, ratio = f"{loss.removeprefix(ANOTHER_USER)}, another user's input", ""
            runs = "no model" if loss == "most_popular" else f"{len(values)} seed(s)"
            print(f"quality: {loss:<12} valid NDCG@10 {mean:.4f} ± {sd:.4f} ({runs}){ratio}")
    out = summary(rows, args, scores)
    out.update(length_summary(lengths))
    names = {r["device_name"] for r in rows + lengths if "device_name" in r}
    if names:
        out["device_name"] = ", ".join(sorted(names))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
