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

Only the training step is here (no evaluation): the benchmark times it on the same
examples as userfm's SASRec-BCE run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

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
) -> dict[str, float]:
    """Train SASRec on (input, target) index sequences; returns wall / CPU seconds, target
    positions seen and the last loss. Negatives are uniform over 1..num_items-1 and not among
    the user's items (the paper's sampler, vectorised: its released code samples in
    background processes, so sampling is not what a fit waits for)."""
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
    model.train()
    events, loss = 0, float("nan")
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
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
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "events": events,
        "loss": loss,
    }
