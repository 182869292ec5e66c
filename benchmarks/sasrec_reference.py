"""SASRec as published (Kang & McAuley, ICDM 2018), the throughput baseline of
`pretrain_quality.py`.

A from-the-paper re-implementation of the model and training step the SASRec authors
released, kept independent of userfm's encoder so that the benchmark compares our training
pipeline with the usual way this model is trained:

- every sequence is left-padded to ``max_len`` (the paper's fixed-length input);
- item embeddings scaled by sqrt(d), learned positions, dropout, a timeline mask that
  zeroes padded positions after every sub-layer;
- per block: LayerNorm on the queries only, ``nn.MultiheadAttention`` with an explicit
  (T, T) causal mask, residual, LayerNorm, point-wise feed-forward (two 1x1 convolutions);
- final LayerNorm; the loss is binary cross-entropy of the target item against one
  uniformly sampled negative per position (the paper's loss); Adam (0.9, 0.98).

The benchmark times its training step on the same examples as userfm's SASRec-BCE run, and
(issue 20 §2: a baseline at least as strong as its reference code) trains it for quality with
the paper's recipe: Adam lr 1e-3, 200 epochs, validation every 20 epochs and the best
validation checkpoint kept (`reference_quality`); `ReferenceRecommender` ranks every item for
a history, so `userfm.eval.evaluate_retrieval` scores it on the same protocol as every other
row (leave-one-out full ranking, the user's items filtered).

    python benchmarks/sasrec_reference.py [--quick] [--data PATH] [--seeds N] [--epochs N]

trains and scores the reference recipe alone on MovieLens-100K (``--quick``: 10 epochs, one
seed); the last line is one JSON object with the test NDCG@10 per seed.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class PointWiseFeedForward(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(hidden, hidden, kernel_size=1)
        self.conv2 = nn.Conv1d(hidden, hidden, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        y = x.transpose(1, 2)  # (B, D, T): Conv1d wants channels first
        y = self.dropout(self.conv2(self.dropout(torch.relu(self.conv1(self.dropout(y))))))
        return x + y.transpose(1, 2)


class SASRecReference(nn.Module):
    """The SASRec model: (B, T) left-padded item indices (0 = padding) -> (B, T, D) states."""

    def __init__(
        self,
        *,
        num_items: int,
        max_len: int,
        hidden: int,
        num_blocks: int,
        heads: int,
        dropout: float,
    ):
        super().__init__()
        self.item_emb = nn.Embedding(num_items, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_dropout = nn.Dropout(dropout)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(num_blocks))
        self.attns = nn.ModuleList(
            nn.MultiheadAttention(hidden, heads, dropout=dropout) for _ in range(num_blocks)
        )
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(num_blocks))
        self.ffns = nn.ModuleList(PointWiseFeedForward(hidden, dropout) for _ in range(num_blocks))
        self.last_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.hidden = hidden
        for param in self.parameters():  # the released code's initialisation
            if param.dim() > 1:
                nn.init.xavier_normal_(param)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        B, T = items.shape
        x = self.item_emb(items) * self.hidden**0.5  # (B, T, D)
        x = x + self.pos_emb(torch.arange(T, device=items.device))[None]
        x = self.emb_dropout(x)
        keep = (items != 0).unsqueeze(-1)  # (B, T, 1) timeline mask
        x = x * keep
        causal = ~torch.tril(torch.ones(T, T, dtype=torch.bool, device=items.device))  # (T, T)
        for norm, attn, ffn_norm, ffn in zip(
            self.attn_norms, self.attns, self.ffn_norms, self.ffns, strict=True
        ):
            seq = x.transpose(0, 1)  # (T, B, D): MultiheadAttention's default layout
            q = norm(seq)
            out, _ = attn(q, seq, seq, attn_mask=causal, need_weights=False)
            x = (q + out).transpose(0, 1)  # (B, T, D)
            x = ffn(ffn_norm(x)) * keep
        return self.last_norm(x)

    def bce_loss(self, items: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Mean BCE over non-padding positions; ``pos`` / ``neg`` (B, T), 0 = no target."""
        h = self(items)  # (B, T, D)
        pos_logits = (h * self.item_emb(pos)).sum(-1)  # (B, T)
        neg_logits = (h * self.item_emb(neg)).sum(-1)
        valid = pos != 0
        loss = nn.functional.binary_cross_entropy_with_logits(
            pos_logits[valid], torch.ones_like(pos_logits[valid])
        ) + nn.functional.binary_cross_entropy_with_logits(
            neg_logits[valid], torch.zeros_like(neg_logits[valid])
        )
        return loss


def left_padded(
    sequences: Sequence[np.ndarray], targets: Sequence[np.ndarray], max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """(U, max_len) inputs and targets, left-padded with 0 as in the SASRec code."""
    inputs = np.zeros((len(sequences), max_len), dtype=np.int64)
    pos = np.zeros_like(inputs)
    for u, (seq, tgt) in enumerate(zip(sequences, targets, strict=True)):
        n = min(len(seq), max_len)
        inputs[u, max_len - n :] = seq[-n:]
        pos[u, max_len - n :] = tgt[-n:]
    return inputs, pos


def train(
    sequences: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    *,
    num_items: int,
    max_len: int = 200,
    hidden: int = 50,
    num_blocks: int = 2,
    heads: int = 1,
    dropout: float = 0.2,
    batch_size: int = 128,
    epochs: int = 1,
    lr: float = 1e-3,
    seed: int = 0,
    evaluate: Callable[[SASRecReference], float] | None = None,
    eval_every: int = 20,
) -> dict[str, Any]:
    """Train SASRec on (input, target) index sequences; returns wall / CPU seconds, target
    positions seen and the last loss. Negatives are uniform over 1..num_items-1 and not among
    the user's items (the paper's sampler, vectorised: its released code samples in
    background processes, so sampling is not what a fit waits for).

    With ``evaluate`` (model -> validation score, higher is better), the model is scored every
    ``eval_every`` epochs and after the last, and ends with the weights of its best score (the
    best validation checkpoint); the result adds ``model``, ``best_epoch`` and ``curve``
    ((epoch, score) pairs). Evaluation time is not in the timings."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    inputs, pos = left_padded(sequences, targets, max_len)
    seen = np.zeros((len(sequences), num_items), dtype=bool)  # (U, V) the user's items
    for u, (seq, tgt) in enumerate(zip(sequences, targets, strict=True)):
        seen[u, seq] = seen[u, tgt] = True
    seen[:, 0] = False
    model = SASRecReference(
        num_items=num_items,
        max_len=max_len,
        hidden=hidden,
        num_blocks=num_blocks,
        heads=heads,
        dropout=dropout,
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    events, loss = 0, float("nan")
    wall = cpu = 0.0
    curve: list[tuple[int, float]] = []
    best: tuple[float, int, dict] | None = None  # (score, epoch, state)
    for epoch in range(1, epochs + 1):
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        order = rng.permutation(len(inputs))
        for lo in range(0, len(order), batch_size):
            rows = order[lo : lo + batch_size]
            p = pos[rows]
            neg = rng.integers(1, num_items, size=p.shape)
            while (bad := seen[rows[:, None], neg] & (p != 0)).any():  # resample seen items
                neg[bad] = rng.integers(1, num_items, size=int(bad.sum()))
            neg[p == 0] = 0
            step_loss = model.bce_loss(
                torch.from_numpy(inputs[rows]), torch.from_numpy(p), torch.from_numpy(neg)
            )
            opt.zero_grad()
            step_loss.backward()
            opt.step()
            events += int((p != 0).sum())
            loss = float(step_loss)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        if evaluate is not None and (epoch % eval_every == 0 or epoch == epochs):
            model.eval()
            score = float(evaluate(model))
            curve.append((epoch, score))
            if best is None or score > best[0]:
                best = (score, epoch, copy.deepcopy(model.state_dict()))
    out: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu, "events": events, "loss": loss}
    if best is not None:
        model.load_state_dict(best[2])
        model.eval()
        out.update(model=model, best_epoch=best[1], curve=curve)
    return out


class ReferenceRecommender:
    """A trained `SASRecReference` behind the `userfm.eval.retrieval.Recommender` protocol:
    each history (its item ids through the training vocabulary, the ``max_len`` most recent,
    left-padded) is scored against every item by its last state, as the SASRec code predicts.

    Args:
        model: the trained model (its index space is ``vocab``'s: 0 = padding).
        vocab: the item vocabulary the training sequences were encoded with.
        max_len: the model's input length.
    """

    def __init__(self, model: SASRecReference, vocab: Any, max_len: int):
        from userfm.data.vocab import NUM_SPECIALS

        self.model, self.vocab, self.max_len = model, vocab, max_len
        self.first = NUM_SPECIALS  # the real items' first index (PAD, MASK, OOV before it)

    @torch.no_grad()
    def recommend(
        self,
        histories: Iterable[Any],
        *,
        k: int | None = None,
        exclude_seen: bool = True,
        batch_size: int = 256,
        **ignored: Any,
    ) -> Any:
        """Every real item (or the k best) per history, best first; seen items left out."""
        from userfm.api.recommend import Recommendations, stable_topk
        from userfm.item_blocks import block_positions, fill_positions_

        self.model.eval()
        real = len(self.vocab.tokens)
        width = real if k is None else min(k, real)
        tokens = np.asarray(self.vocab.tokens, dtype=object)
        users, ids, scores = [], [], []
        histories = list(histories)
        for lo in range(0, len(histories), batch_size):
            batch = histories[lo : lo + batch_size]
            codes = [self.vocab.encode(h.items)[0] for h in batch]
            inputs, _ = left_padded(codes, codes, self.max_len)
            h = self.model(torch.from_numpy(inputs))[:, -1]  # (B, D) the most recent state
            s = (h @ self.model.item_emb.weight[self.first : self.first + real].T).float()
            if exclude_seen:  # (B, real): specials never ranked; the full histories left out
                seen, _ = left_padded(codes, codes, max(map(len, codes)))  # (B, S), 0 = none
                where = block_positions(torch.from_numpy(seen), self.first, real)
                fill_positions_(s, where, -torch.inf)
            values, cols = stable_topk(s, width)
            item_ids = tokens[cols.numpy()]
            item_ids[np.isneginf(values.numpy())] = None
            users += [x.user for x in batch]
            ids.append(item_ids)
            scores.append(values.numpy())
        return Recommendations(
            users, np.concatenate(ids), np.concatenate(scores).astype(np.float32),
            {"users": len(users), "events": int(sum(len(x) for x in histories))},
        )  # fmt: skip


def reference_quality(
    dm: Any,
    *,
    seed: int,
    epochs: int = 200,
    lr: float = 1e-3,
    eval_every: int = 20,
    batch_size: int = 128,
    **shape: Any,
) -> dict[str, Any]:
    """The paper's recipe on a prepared `EventDataModule` (its training examples, its item
    vocabulary, its log): train, keep the best validation NDCG@10 checkpoint, and score it on
    the test split. Returns ``train``'s result, ``valid`` (the best score) and ``test`` (a
    `RetrievalReport`)."""
    from userfm.eval.retrieval import evaluate_retrieval

    examples = dm.datasets["train"].examples
    max_len = dm.hparams.max_len
    vocab, log = dm.vocabs.items, dm.log_

    def valid_ndcg(model: SASRecReference) -> float:
        rec = ReferenceRecommender(model, vocab, max_len)
        return evaluate_retrieval(rec, log, split="valid", sampled_negatives=None).metrics[
            "NDCG@10"
        ]

    r = train(
        [e.inputs.items for e in examples],
        [e.targets for e in examples],
        num_items=len(dm.vocabs.items),
        max_len=max_len,
        batch_size=batch_size,
        epochs=epochs,
        lr=lr,
        seed=seed,
        evaluate=valid_ndcg,
        eval_every=eval_every,
        **shape,
    )
    r["valid"] = max(score for _, score in r["curve"])
    r["test"] = evaluate_retrieval(ReferenceRecommender(r["model"], vocab, max_len), log)
    return r


def main(argv: list[str] | None = None) -> int:
    """The reference recipe alone on MovieLens-100K, with pretrain_quality's data and shape."""
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    import pretrain_quality as pq

    p = argparse.ArgumentParser(description="SASRec's reference recipe, scored for quality.")
    p.add_argument("--data", type=Path, default=pq.DEFAULT_DATA, help="MovieLens-100K folder")
    p.add_argument("--quick", action="store_true", help="10 epochs, one seed")
    p.add_argument("--epochs", type=int, default=None, help="default 200 (10 with --quick)")
    p.add_argument("--seeds", type=int, default=None, help="default 3 (1 with --quick)")
    args = p.parse_args(argv)
    pq.quiet()
    if not (args.data / "u.data").is_file():
        print(f"SKIP: MovieLens-100K not found at {args.data}")
        print(json.dumps({"benchmark": "sasrec_reference", "skipped": True}))
        return 0
    epochs = args.epochs or (10 if args.quick else 200)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    data = argparse.Namespace(data=args.data, max_len=200, batch_size=128, seed=0)
    per_seed = []
    for seed, r in zip(seeds, pq.reference_fits(data, seeds, epochs), strict=True):
        m = r["test"].metrics
        per_seed.append(m["NDCG@10"])
        print(f"seed {seed}: best valid NDCG@10 {r['valid']:.4f} at epoch {r['best_epoch']}; "
              f"test NDCG@10 {m['NDCG@10']:.4f}, HR@10 {m['HR@10']:.4f} ({r['wall_s']:.0f} s "
              f"training); {r['test'].protocol}", flush=True)  # fmt: skip
    print(f"machine: {pq.machine_description()}; {epochs} epochs, lr {pq.REFERENCE_LR:g}, best of every "
          f"{min(pq.REFERENCE_EVAL_EVERY, epochs)} epochs on valid NDCG@10")  # fmt: skip
    sd = f" ± {np.std(per_seed, ddof=1):.4f} (sample sd)" if len(per_seed) > 1 else ""
    print(f"test NDCG@10 mean {np.mean(per_seed):.4f}{sd} over seeds {seeds}")
    print(json.dumps({"benchmark": "sasrec_reference", "quick": args.quick, "epochs": epochs,
                      "ndcg10_per_seed": [round(x, 4) for x in per_seed],
                      "ndcg10_mean": round(float(np.mean(per_seed)), 4)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
