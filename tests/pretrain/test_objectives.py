"""Next-item losses pinned on small hand-checkable cases."""

from __future__ import annotations

import math

import pytest
import torch

from userfm.errors import ConfigError
from userfm.pretrain.objectives import (
    bce_loss,
    candidate_softmax_loss,
    draw_negatives,
    full_softmax_loss,
    future_targets,
    log_q_from_counts,
    log_uniform_log_q,
    next_item_loss,
    proposal_log_q,
    sample_negatives,
    sampled_softmax_loss,
    seen_items,
    uniform_log_q,
)

V, D, N = 12, 4, 5


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(N, D, generator=g, dtype=torch.float64)
    item_emb = torch.randn(V, D, generator=g, dtype=torch.float64)
    targets = torch.tensor([3, 5, 11, 5, 7])
    return h, item_emb, targets


def manual_full(h: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    out = []
    for i in range(len(targets)):
        s = [float(h[i] @ item_emb[j]) for j in range(3, V)]
        log_z = math.log(sum(math.exp(x) for x in s))
        out.append(log_z - s[int(targets[i]) - 3])
    return torch.tensor(out, dtype=torch.float64)


def test_full_softmax_equals_manual(data):
    h, item_emb, targets = data
    loss = full_softmax_loss(h, item_emb, targets)
    assert loss.shape == (N,)
    torch.testing.assert_close(
        loss.double(), manual_full(h, item_emb, targets), rtol=1e-5, atol=1e-5
    )


def test_future_targets_slot_j_holds_the_item_j_after_the_next():
    targets = torch.tensor([[4, 5, 6, 7], [0, 8, 9, 0]])  # 0 = no target at that position
    window = future_targets(targets, 3)
    assert window.shape == (2, 4, 3)
    assert window[0].tolist() == [[4, 5, 6], [5, 6, 7], [6, 7, 0], [7, 0, 0]]
    assert window[1].tolist() == [[0, 0, 0], [8, 9, 0], [9, 0, 0], [0, 0, 0]]
    assert torch.equal(future_targets(targets, 1), targets[..., None])
    with pytest.raises(ConfigError, match="window"):
        future_targets(targets, 0)
    with pytest.raises(ConfigError, match="targets"):
        future_targets(targets[0], 2)


def test_full_softmax_with_several_targets_scores_each_filled_slot(data):
    h, item_emb, targets = data
    second = torch.tensor([4, 0, 3, 0, 9])  # rows 1 and 3 have one target only
    loss = full_softmax_loss(h, item_emb, torch.stack([targets, second], dim=1))
    assert loss.shape == (N, 2)
    torch.testing.assert_close(loss[:, 0].double(), manual_full(h, item_emb, targets))
    two = manual_full(h, item_emb, second.clamp(min=3))
    expected = torch.where(second > 0, two, torch.zeros_like(two))  # empty slots: 0
    torch.testing.assert_close(loss[:, 1].double(), expected, rtol=1e-5, atol=1e-5)


def test_seen_items_lists_the_items_at_or_before_each_position():
    items = torch.tensor([[5, 6, 5, 0], [7, 8, 9, 4]])  # 0 = PAD
    valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
    seen = seen_items(items, valid)
    assert seen.tolist() == [  # one row per True of `valid`, row-major; 0 after the position
        [5, 0, 0, 0],
        [5, 6, 0, 0],
        [5, 6, 5, 0],
        [7, 0, 0, 0],
        [7, 8, 0, 0],
    ]


def test_full_softmax_leaves_excluded_items_out_but_never_a_target(data):
    h, item_emb, targets = data  # targets [3, 5, 11, 5, 7]
    exclude = torch.tensor([[4, 0], [4, 5], [4, 4], [4, 0], [4, 0]])  # row 1 lists its target
    loss = full_softmax_loss(h, item_emb, targets, exclude)
    kept = [j for j in range(3, V) if j != 4]
    for i in range(N):
        s = {j: float(h[i] @ item_emb[j]) for j in kept}
        expected = math.log(sum(math.exp(x) for x in s.values())) - s[int(targets[i])]
        assert loss[i].item() == pytest.approx(expected, rel=1e-5)
    assert (loss < full_softmax_loss(h, item_emb, targets)).all()
    multi = full_softmax_loss(h, item_emb, torch.stack([targets, targets], 1), exclude)
    torch.testing.assert_close(multi[:, 1], loss)
    with pytest.raises(ConfigError, match="exclude"):
        full_softmax_loss(h, item_emb, targets, exclude[:3])


def test_full_softmax_logit_offset_is_added_to_every_logit(data):
    """A logit adjustment: item j's logit is h·e_j + offset_j, the target's too, with or
    without exclusions."""
    h, item_emb, targets = data  # targets [3, 5, 11, 5, 7]
    offset = torch.linspace(-1.0, 1.0, V, dtype=torch.float64)
    exclude = torch.tensor([[4, 0]] * N)
    for ex in (None, exclude):
        loss = full_softmax_loss(h, item_emb, targets, ex, offset)
        kept = [j for j in range(3, V) if ex is None or j != 4]
        for i in range(N):
            s = {j: float(h[i] @ item_emb[j] + offset[j]) for j in kept}
            expected = math.log(sum(math.exp(x) for x in s.values())) - s[int(targets[i])]
            assert loss[i].item() == pytest.approx(expected, rel=1e-5)
    # a constant offset changes nothing: only differences between items matter
    torch.testing.assert_close(
        full_softmax_loss(h, item_emb, targets, exclude, torch.full((V,), 3.0)),
        full_softmax_loss(h, item_emb, targets, exclude),
    )
    with pytest.raises(ConfigError, match="logit_offset"):
        full_softmax_loss(h, item_emb, targets, None, offset[:-1])


def test_sampled_with_all_items_equals_full(data):
    h, item_emb, targets = data
    full = full_softmax_loss(h, item_emb, targets)
    sampled = sampled_softmax_loss(h, item_emb, targets, sampler="all")
    torch.testing.assert_close(sampled, full, rtol=1e-5, atol=1e-5)
    # uniform q is a constant: the logQ correction changes nothing
    corrected = sampled_softmax_loss(
        h, item_emb, targets, sampler="all", item_log_q=uniform_log_q(V)
    )
    torch.testing.assert_close(corrected, full, rtol=1e-5, atol=1e-5)
    dispatched = next_item_loss(h, item_emb, targets, kind="sampled", sampler="all")
    torch.testing.assert_close(dispatched, full)


def test_accidental_hits_are_masked(data):
    h, item_emb, targets = data
    negatives = torch.tensor([4, 6])
    base = candidate_softmax_loss(h, item_emb, targets, negatives)
    # row 0 (target 3): the two 3's among the negatives are accidental hits, masked out
    with_hits = candidate_softmax_loss(h, item_emb, targets, torch.tensor([4, 6, 3, 3]))
    assert torch.isclose(with_hits[0], base[0])
    # manual: row 1 (target 5) with negatives {4, 6, 5} counts its target once
    hits_5 = candidate_softmax_loss(h, item_emb, targets, torch.tensor([4, 6, 5]))
    s = {j: float(h[1] @ item_emb[j]) for j in (4, 5, 6)}
    expected = math.log(sum(math.exp(x) for x in s.values())) - s[5]
    assert math.isclose(float(hits_5[1]), expected, rel_tol=1e-6)
    torch.testing.assert_close(hits_5[1], base[1])


def test_in_batch_negatives_and_log_q(data):
    h, item_emb, targets = data
    loss = sampled_softmax_loss(h, item_emb, targets, sampler="in_batch")
    # manual: candidates = other rows' targets != own target (duplicates count twice)
    for i in range(N):
        t = int(targets[i])
        s_pos = float(h[i] @ item_emb[t])
        negs = [int(x) for x in targets if int(x) != t]
        z = math.exp(s_pos) + sum(math.exp(float(h[i] @ item_emb[j])) for j in negs)
        assert math.isclose(float(loss[i]), math.log(z) - s_pos, rel_tol=1e-6)
    counts = torch.tensor([0, 0, 0, 10, 1, 5, 1, 3, 1, 1, 1, 2], dtype=torch.float)
    log_q = log_q_from_counts(counts, smoothing=0.0)
    corrected = sampled_softmax_loss(h, item_emb, targets, sampler="in_batch", item_log_q=log_q)
    # row 0 (target 3): candidates 3 (positive), 5, 11, 5, 7, each logit minus its log q
    s = {j: float(h[0] @ item_emb[j]) - float(log_q[j]) for j in (3, 5, 11, 7)}
    expected = math.log(sum(math.exp(s[j]) for j in (3, 5, 11, 5, 7))) - s[3]
    assert math.isclose(float(corrected[0]), expected, rel_tol=1e-5)


def test_log_q_helpers():
    for log_q in (uniform_log_q(V), log_uniform_log_q(V), log_q_from_counts(torch.arange(V))):
        assert log_q.shape == (V,)
        assert torch.isinf(log_q[:3]).all()
        assert math.isclose(float(log_q[3:].exp().sum()), 1.0, rel_tol=1e-5)
    lu = log_uniform_log_q(V)
    assert (lu[3:-1] > lu[4:]).all()  # decreasing with rank
    with pytest.raises(ConfigError, match="counts"):
        log_q_from_counts(torch.tensor([0, 0, 0, -1.0]))


def test_draw_negatives_ranges_and_log_uniform_frequencies():
    g = torch.Generator().manual_seed(0)
    for sampler in ("uniform", "log_uniform"):
        neg = draw_negatives(V, 20000, sampler=sampler, generator=g)
        assert neg.shape == (20000,) and neg.min() >= 3 and neg.max() < V
    freq = torch.bincount(neg, minlength=V)[3:].double() / len(neg)
    torch.testing.assert_close(freq, log_uniform_log_q(V)[3:].double().exp(), atol=0.01, rtol=0)
    assert torch.equal(draw_negatives(V, 0, sampler="all"), torch.arange(3, V))
    with pytest.raises(ConfigError, match="num_negatives"):
        draw_negatives(V, 0, sampler="uniform")
    with pytest.raises(ConfigError, match="sampler"):
        sampled_softmax_loss(torch.zeros(1, D), torch.zeros(V, D), torch.tensor([3]), sampler="x")


def test_sampled_is_seeded_and_finite(data):
    h, item_emb, targets = data
    for sampler in ("uniform", "log_uniform", "mixed"):
        a = sampled_softmax_loss(
            h,
            item_emb,
            targets,
            num_negatives=8,
            sampler=sampler,
            generator=torch.Generator().manual_seed(1),
        )
        b = sampled_softmax_loss(
            h,
            item_emb,
            targets,
            num_negatives=8,
            sampler=sampler,
            generator=torch.Generator().manual_seed(1),
        )
        assert torch.equal(a, b) and torch.isfinite(a).all() and (a >= 0).all()


def test_bce_equals_manual_formula(data):
    h, item_emb, targets = data
    negatives = torch.tensor([4, 4, 3, 6, 10])
    loss = bce_loss(h, item_emb, targets, negatives)
    for i in range(N):
        sp = float(h[i] @ item_emb[targets[i]])
        sn = float(h[i] @ item_emb[negatives[i]])
        sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
        expected = -math.log(sig(sp)) - math.log(1 - sig(sn))
        assert math.isclose(float(loss[i]), expected, rel_tol=1e-6)
    # (N, K) negatives: the K negative terms are summed
    two = bce_loss(h, item_emb, targets, torch.stack([negatives, negatives], 1))
    s_neg = (h * item_emb[negatives]).sum(-1)
    torch.testing.assert_close(two.double(), loss.double() + torch.nn.functional.softplus(s_neg))


def test_sample_negatives_excludes_target_and_seen():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(3, V, (2000,), generator=g)
    neg = sample_negatives(targets, V, generator=g)
    assert (neg != targets).all() and neg.min() >= 3 and neg.max() < V
    assert set(neg.tolist()) == set(range(3, V))  # every real item can be drawn
    seen = torch.tensor([[4, 5, 6, 0], [3, 0, 0, 0]])
    t = torch.tensor([7, 4])
    for _ in range(20):
        n = sample_negatives(t, V, exclude=seen, generator=g)
        assert int(n[0]) not in (4, 5, 6, 7) and int(n[1]) not in (3, 4)
    # a row that bans all but one item gets it (exact fallback after rejection)
    only = sample_negatives(torch.tensor([3]), V, exclude=[set(range(4, V - 1))], generator=g)
    assert only.tolist() == [V - 1]
    with pytest.raises(ConfigError, match="exclude"):
        sample_negatives(torch.tensor([3]), V, exclude=[set(range(4, V))])


@pytest.mark.parametrize("kind", ["full", "sampled", "bce"])
def test_gradients_flow(data, kind):
    h, item_emb, targets = (x.clone() for x in data)
    h.requires_grad_(True)
    item_emb.requires_grad_(True)
    loss = next_item_loss(
        h, item_emb, targets, kind=kind, num_negatives=4, generator=torch.Generator().manual_seed(0)
    )
    assert loss.shape == (N,)
    loss.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    assert item_emb.grad is not None and item_emb.grad[targets].abs().sum() > 0
    if kind == "full":
        assert item_emb.grad[:3].abs().sum() == 0  # specials get no gradient


def test_the_full_kind_passes_exclusions_and_a_logit_offset_through(data):
    """The pretraining module trains through `next_item_loss` alone (issue 19): the full
    softmax's `exclude` (mask_seen) and `logit_offset` (DRO logits) reach it unchanged."""
    h, item_emb, targets = data
    exclude = torch.stack([targets + 1, torch.zeros_like(targets)], dim=1).clamp(
        max=len(item_emb) - 1
    )
    offset = torch.linspace(-1, 1, len(item_emb))
    plain = next_item_loss(h, item_emb, targets, kind="full")
    both = next_item_loss(h, item_emb, targets, kind="full", exclude=exclude, logit_offset=offset)
    torch.testing.assert_close(both, full_softmax_loss(h, item_emb, targets, exclude, offset))
    assert not torch.allclose(both, plain)


def test_bad_arguments_name_the_field(data):
    h, item_emb, targets = data
    with pytest.raises(ConfigError, match="item_emb"):
        full_softmax_loss(h, item_emb[:, :2], targets)
    with pytest.raises(ConfigError, match="targets"):
        full_softmax_loss(h, item_emb, targets[:2])
    with pytest.raises(ConfigError, match="item_log_q"):
        sampled_softmax_loss(h, item_emb, targets, sampler="all", item_log_q=torch.zeros(3))
    with pytest.raises(ConfigError, match="kind"):
        next_item_loss(h, item_emb, targets, kind="nope")


def test_proposal_log_q_matches_the_sampler():
    counts = torch.tensor([0, 0, 0, 10, 1, 5, 1, 3, 1, 1, 1, 2], dtype=torch.float)
    assert torch.equal(proposal_log_q("uniform", V), uniform_log_q(V))
    assert torch.equal(proposal_log_q("log_uniform", V), log_uniform_log_q(V))
    assert torch.equal(proposal_log_q("in_batch", V, counts=counts), log_q_from_counts(counts))
    mixed = proposal_log_q("mixed", V, counts=counts, num_negatives=9, batch_size=4)
    pop = log_q_from_counts(counts).exp()
    torch.testing.assert_close(mixed[3:].exp(), 9 / (V - 3) + 4 * pop[3:])
    assert torch.isinf(mixed[:3]).all()
    with pytest.raises(ConfigError, match="counts"):
        proposal_log_q("in_batch", V)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_the_chunked_softmax_equals_the_full_one_with_its_gradients(multi, chunk):
    """Issue 20: the softmax over item blocks (never the (N, V) logits at once) gives the
    full softmax's losses and gradients, exclusions and a logit offset included; a block
    whose items are all left out (chunk 1) stays finite."""
    g = torch.Generator().manual_seed(0)
    n, v, d = 6, 23, 8
    h = torch.randn(n, d, generator=g, dtype=torch.float64).float()
    emb = torch.randn(v, d, generator=g)
    targets = torch.randint(3, v, (n, 2) if multi else (n,), generator=g)
    if multi:
        targets[0, 1] = 0  # an empty slot
    exclude = torch.randint(0, v, (n, 5), generator=g)
    exclude[:, 0] = targets if not multi else targets[:, 0]  # a target is never left out
    offset = torch.randn(v, generator=g)
    out = {}
    for size in (None, chunk):
        hh, ee = h.clone().requires_grad_(True), emb.clone().requires_grad_(True)
        loss = full_softmax_loss(hh, ee, targets, exclude, offset, chunk_size=size)
        (loss * torch.arange(1, loss.numel() + 1).reshape(loss.shape)).sum().backward()
        out[size] = (loss.detach(), hh.grad, ee.grad)
    for full, chunked in zip(out[None], out[chunk], strict=True):
        assert torch.isfinite(chunked).all()
        torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [None, 5])
def test_a_target_repeated_in_a_window_gets_its_gradient_once(chunk):
    """Regression (found by the chunked softmax, issue 20): with exclusions, the full softmax
    wrote each slot's target logit back into the logits, so a target repeated in a row's
    window (repeat events) received its gradient once per copy. Reference: a plain mask."""
    g = torch.Generator().manual_seed(1)
    n, v, d = 5, 17, 6
    h, emb = torch.randn(n, d, generator=g), torch.randn(v, d, generator=g)
    targets = torch.randint(3, v, (n, 3), generator=g)
    targets[:, 1] = targets[:, 0]  # the same item twice in each window
    targets[0, 2] = 0
    exclude = torch.cat([targets[:, :1], torch.randint(0, v, (n, 4), generator=g)], dim=1)

    def reference(hh, ee):
        logits = hh @ ee.T
        left_out = torch.zeros(n, v, dtype=torch.bool).scatter(1, exclude, True)
        left_out &= ~torch.zeros(n, v, dtype=torch.bool).scatter(1, targets, True)
        left_out[:, :3] = True
        log_p = logits.masked_fill(left_out, -math.inf).log_softmax(-1).gather(1, targets)
        return torch.where(targets > 0, -log_p, torch.zeros_like(log_p))

    grads = []
    for fn in (reference, lambda a, b: full_softmax_loss(a, b, targets, exclude, chunk_size=chunk)):
        hh, ee = h.clone().requires_grad_(True), emb.clone().requires_grad_(True)
        fn(hh, ee).sum().backward()
        grads.append((hh.grad, ee.grad))
    for want, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
