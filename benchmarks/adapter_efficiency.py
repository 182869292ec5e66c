"""Adapter efficiency: prompt tokens, prefill time and prefill FLOPs of a frozen LLM reading a
user's history as a soft prompt (K = 8, 32) or through cross-attention, versus the same
history written into the prompt as text.

Protocol:

- LLM: SmolLM2-135M-Instruct (`userfm.llm.load_llm`, float32, CPU), frozen; its chat
  template wraps every prompt.
- users: synthetic log (`SyntheticConfig(max_events=400)`) or MovieLens-100K (``--data``),
  users with at least 200 events; each measured with their 50 and 200 most recent events.
- text prompt: one line per event, most recent first: ``- <title> [<category>] (<action>,
  <date>)`` (`userfm.data.history_text`), then the question, no truncation.
- soft prompt: K vectors + the question's tokens; cross-attention: the question's tokens,
  K = 8 latents read by gated blocks before every 4th of the 30 decoder layers. Both include
  the behaviour encoder (2 blocks, hidden 64, untrained: weights do not change the cost) and
  the Perceiver (2 layers) in their time and FLOPs.
- the question: a 4-option multiple-choice question about the user (the same for all).
- prefill = one forward pass over the whole prompt with the KV cache on and logits for the
  last position only (what ``generate`` does before the first answer token), batch size 1, ``torch.no_grad``. Methods are interleaved
  within each repetition (shared machine noise hits all alike); the median of the
  repetitions per user and method, then the mean over users. FLOPs by
  ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and attention) on one call.
- ratios are text / method (higher = the method is cheaper).

Targets at 200 events: soft prompt >= 50x fewer prompt tokens and >= 20x faster prefill;
cross-attention >= 10x faster prefill.

Run: python benchmarks/adapter_efficiency.py [--quick] [--data PATH] [--llm NAME_OR_DIR]
``--quick``: 2 users, 3 repetitions (about 3 minutes on 2 idle cores once the LLM is cached;
the first use of the SmolLM2 alias converts its GGUF once, ~30 s). Default: 4 users, 5
repetitions (about 8 minutes). Prints a
table and ends with one JSON line {"benchmark": "adapter_efficiency", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"soft_tokens": 50.0, "soft_prefill": 20.0, "xattn_prefill": 10.0}
QUESTION = (
    "Which category does this user interact with most?\nA. books\nB. games\nC. garden\n"
    "D. music\nAnswer with the letter of the correct option (A, B, C or D)."
)


def load_users(args, min_events: int):
    from userfm.data.readers import read_events
    from userfm.data.schema import EventSchema
    from userfm.data.synthetic import SyntheticConfig, generate_synthetic_log

    if args.data:
        from userfm.data.formats import load_movielens_100k

        log = load_movielens_100k(args.data)
    else:
        cfg = SyntheticConfig(num_users=300, mean_events=150, max_events=400, seed=0)
        log = read_events(
            generate_synthetic_log(cfg),
            EventSchema(action="action", category="category", title="title"),
        )
    long = [i for i, n in enumerate(log.lengths) if n >= min_events][: args.users]
    if len(long) < args.users:
        raise SystemExit(f"only {len(long)} users have >= {min_events} events")
    return log, [log.history_at(i) for i in long]


def build_models(args, log):
    import torch

    from userfm.adapters import AdapterConfig, UserConditionedLM
    from userfm.encoder import UserEncoder
    from userfm.llm import load_llm

    llm, tokenizer = load_llm(args.llm, progress=False)
    torch.manual_seed(0)
    encoder = UserEncoder.from_log(log, hidden_size=64, num_layers=2, num_heads=2, max_len=200)
    models = {}
    for name, cfg in (
        ("soft K=8", AdapterConfig(mode="soft_prompt", num_latents=8)),
        ("soft K=32", AdapterConfig(mode="soft_prompt", num_latents=32)),
        ("cross-attn K=8", AdapterConfig(mode="cross_attn", num_latents=8, cross_attn_every=4)),
    ):
        model = UserConditionedLM(encoder, llm, tokenizer, cfg).eval()
        models[name] = model.requires_grad_(False)  # inference only (and FLOP counting)
    # one LLM is shared: the cross-attention hooks stay silent while no user context is set
    return llm, tokenizer, models


def prefill_fn(method: str, model, llm, tokenizer, history, n_events: int, attributes):
    """A zero-argument callable running one prefill, and its prompt token count."""
    import torch

    from userfm.adapters.text import prompt_tokens
    from userfm.data.history_text import history_lines, history_prompt

    recent = history[len(history) - n_events :]
    if method == "text":
        lines = history_lines(recent, attributes)
        text = history_prompt(tokenizer, lines, QUESTION, max_tokens=None)
        ids = torch.tensor([prompt_tokens(tokenizer, text).ids])
        return (lambda: llm(input_ids=ids, use_cache=True, logits_to_keep=1)), ids.shape[1]
    batch = model.encode([recent], [QUESTION])  # soft prompt: K slots inside the user turn
    if model.config.mode == "soft_prompt":

        def run():
            latents = model.user_latents([recent])  # encoder + Perceiver, (1, K, H)
            embeds = model.with_soft_prompt(batch.input_ids, latents, batch.user_slots)
            return llm(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)

        return run, batch.input_ids.shape[1]

    def run():
        latents = model.user_latents([recent])
        with model.user_context(latents):
            return llm(input_ids=batch.input_ids, use_cache=True, logits_to_keep=1)

    return run, batch.input_ids.shape[1]


def slug(method: str) -> str:
    """ "soft K=8" -> "soft_k8" (JSON keys)."""
    return method.lower().replace("-", "").replace(" k=", "_k").replace(" ", "_")


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def main(argv: list[str] | None = None) -> int:
    from userfm.llm import DEFAULT_LLM

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="2 users, 3 repetitions")
    p.add_argument("--users", type=int, default=None, help="users per length (default 4, 2 quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed prefills per user and method")
    p.add_argument(
        "--data", type=Path, default=None, help="MovieLens-100K folder (default: synthetic)"
    )
    p.add_argument("--llm", default=DEFAULT_LLM, help="LLM alias, directory or name")
    p.add_argument("--lengths", default="50,200", help="history lengths, comma-separated")
    args = p.parse_args(argv)
    args.users = args.users or (2 if args.quick else 4)
    repeats = args.repeats or (3 if args.quick else 5)
    lengths = [int(x) for x in args.lengths.split(",")]
    warnings.filterwarnings("ignore")

    import torch

    start = time.perf_counter()
    log, users = load_users(args, max(lengths))
    attributes = log.item_attributes()
    llm, tokenizer, models = build_models(args, log)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {type(llm).__name__} "
        f"{sum(p.numel() for p in llm.parameters()) / 1e6:.0f}M params, float32"
    )
    print(f"machine: {machine}")
    print(
        f"LLM: {args.llm}; users: {len(users)} ({'MovieLens-100K' if args.data else 'synthetic'}), "
        f"{repeats} timed prefills each per method"
    )
    methods = ["text", *models]
    rows: dict[tuple[int, str], dict[str, float]] = {}
    with torch.no_grad():
        for n in lengths:
            tokens = {m: [] for m in methods}
            times = {m: [] for m in methods}
            flops = {}
            for history in users:
                fns = {}
                for m in methods:
                    fns[m], tokens_m = prefill_fn(
                        m, models.get(m), llm, tokenizer, history, n, attributes
                    )
                    tokens[m].append(tokens_m)
                    fns[m]()  # warm-up
                    if m not in flops:
                        flops[m] = count_flops(fns[m])
                samples = {m: [] for m in methods}
                for _ in range(repeats):
                    for m in methods:
                        t0 = time.perf_counter()
                        fns[m]()
                        samples[m].append(time.perf_counter() - t0)
                for m in methods:
                    times[m].append(statistics.median(samples[m]))
            for m in methods:
                rows[n, m] = {
                    "tokens": statistics.mean(tokens[m]),
                    "ms": 1000 * statistics.mean(times[m]),
                    "gflops": flops[m] / 1e9,
                }

    print(
        f"\n{'events':>6}  {'method':<16}{'prompt tokens':>14}{'prefill ms':>12}{'GFLOPs':>9}"
        f"{'tokens ratio':>14}{'time ratio':>12}{'FLOPs ratio':>13}"
    )
    for n in lengths:
        text = rows[n, "text"]
        for m in methods:
            r = rows[n, m]
            print(
                f"{n:>6}  {m:<16}{r['tokens']:>14,.0f}{r['ms']:>12.1f}{r['gflops']:>9.2f}"
                f"{text['tokens'] / r['tokens']:>13.1f}x{text['ms'] / r['ms']:>11.1f}x"
                f"{text['gflops'] / r['gflops']:>12.1f}x"
            )
    print("ratios: text prompt / method (higher = cheaper than writing the history as text)")

    n = max(lengths)
    text = rows[n, "text"]
    soft, xattn = rows[n, "soft K=8"], rows[n, "cross-attn K=8"]
    checks = {
        "soft_tokens": text["tokens"] / soft["tokens"],
        "soft_prefill": text["ms"] / soft["ms"],
        "xattn_prefill": text["ms"] / xattn["ms"],
    }
    met = {k: v >= TARGETS[k] for k, v in checks.items()}
    for k, v in checks.items():
        print(
            f"{k} at {n} events: {v:.1f}x (target >= {TARGETS[k]:g}x) {'MET' if met[k] else 'NOT MET'}"
        )
    summary = {
        "benchmark": "adapter_efficiency",
        "llm": args.llm,
        "data": "movielens-100k" if args.data else "synthetic",
        "users": len(users),
        "repeats": repeats,
        **{
            f"{slug(m)}_{key}_{n_}": round(rows[n_, m][key], 3)
            for n_ in lengths
            for m in methods
            for key in ("tokens", "ms", "gflops")
        },
        **{f"{k}_ratio": round(v, 2) for k, v in checks.items()},
        "targets_met": met,
        "seconds": round(time.perf_counter() - start, 1),
        "quick": args.quick,
        "machine": machine,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
