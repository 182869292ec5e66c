"""DROWeighting: λ = ∞ is the plain mean, weights ∝ p·exp(l/λ), EMA state, class helpers."""

from __future__ import annotations

import math

import pytest
import torch

from userfm.errors import ConfigError
from userfm.pretrain.dro import DROWeighting, class_prior, event_classes, frequency_buckets

PRIOR = torch.tensor([0.6, 0.3, 0.1])


def batch(seed: int = 0, n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    classes = torch.multinomial(PRIOR, n, replacement=True, generator=g)
    losses = torch.rand(n, generator=g) + classes.float()  # rarer class = higher loss
    return losses, classes


def test_infinite_temperature_is_exactly_the_plain_mean():
    dro = DROWeighting(num_classes=3, class_prior=PRIOR, temperature=math.inf, ema=0.5)
    for seed in range(3):
        losses, classes = batch(seed)
        assert torch.equal(dro(losses, classes), losses.mean())
    torch.testing.assert_close(dro.weights, PRIOR)
    huge = DROWeighting(num_classes=3, class_prior=PRIOR, temperature=1e9, ema=0.5)
    for seed in range(3):
        losses, classes = batch(seed)
        torch.testing.assert_close(huge(losses, classes), losses.mean(), rtol=1e-6, atol=1e-7)


def test_weights_are_normalised_and_follow_the_dual():
    lam = 0.7
    dro = DROWeighting(num_classes=3, class_prior=PRIOR, temperature=lam, ema=0.0)
    losses, classes = batch()
    out = dro(losses, classes)
    l_c = torch.stack([losses[classes == c].mean() for c in range(3)])
    w = PRIOR * torch.exp(l_c / lam)
    w = w / w.sum()
    torch.testing.assert_close(dro.weights, w)
    torch.testing.assert_close(dro.weights.sum(), torch.tensor(1.0))
    expected = (w[classes] / PRIOR[classes] * losses).mean()
    torch.testing.assert_close(out, expected)


def test_rare_high_loss_class_outweighs_common_low_loss_class():
    prior = torch.tensor([0.9, 0.1])
    dro = DROWeighting(num_classes=2, class_prior=prior, temperature=0.1, ema=0.0)
    dro(torch.tensor([0.1, 0.1, 0.1, 2.0]), torch.tensor([0, 0, 0, 1]))
    w = dro.weights
    assert w[1] > w[0]
    assert w[1] > prior[1]  # up-weighted relative to ERM


def test_ema_update_and_absent_classes_keep_their_value():
    dro = DROWeighting(num_classes=3, class_prior=PRIOR, temperature=1.0, ema=0.8)
    dro(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0, 0, 1]))
    # first sighting takes the batch mean directly; class 2 not yet seen
    torch.testing.assert_close(dro.class_loss, torch.tensor([2.0, 2.0, 0.0]))
    assert dro.seen.tolist() == [True, True, False]
    dro(torch.tensor([4.0, 5.0]), torch.tensor([0, 2]))
    torch.testing.assert_close(dro.class_loss, torch.tensor([0.8 * 2 + 0.2 * 4, 2.0, 5.0]))
    # eval mode uses the weights without updating the state
    before = dro.class_loss.clone()
    dro.eval()
    dro(torch.tensor([100.0]), torch.tensor([1]))
    assert torch.equal(dro.class_loss, before)


def test_forward_without_update_weights_by_losses_fed_elsewhere():
    """``update=False``: the class losses come from :meth:`update` (held-out examples), and a
    training batch is weighted by them without moving them."""
    dro = DROWeighting(num_classes=3, class_prior=PRIOR, temperature=2.0, ema=0.0)
    dro.update(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 1, 2]))  # held-out losses
    before = dro.class_loss.clone()
    losses, classes = batch()
    out = dro(losses, classes, update=False)
    assert torch.equal(dro.class_loss, before)
    ratio = torch.exp(before / 2) / (PRIOR * torch.exp(before / 2)).sum()  # w_c / p_c
    torch.testing.assert_close(dro.log_ratio, ratio.log())
    torch.testing.assert_close(out, (ratio[classes] * losses).mean())
    assert torch.equal(
        DROWeighting(num_classes=3, class_prior=PRIOR, temperature=math.inf).log_ratio,
        torch.zeros(3),
    )


def test_unseen_classes_get_a_neutral_loss():
    dro = DROWeighting(num_classes=3, class_prior=PRIOR, temperature=1.0, ema=0.0)
    assert torch.allclose(dro.weights, PRIOR)  # nothing seen: ERM
    dro(torch.tensor([1.0, 3.0]), torch.tensor([0, 1]))
    neutral = (0.6 * 1.0 + 0.3 * 3.0) / 0.9
    torch.testing.assert_close(dro.effective_class_loss, torch.tensor([1.0, 3.0, neutral]))


def test_weights_are_detached_and_gradient_is_importance_weighted():
    dro = DROWeighting(num_classes=2, class_prior=torch.tensor([0.5, 0.5]), temperature=1.0, ema=0)
    losses = torch.tensor([1.0, 2.0], requires_grad=True)
    dro(losses, torch.tensor([0, 1])).backward()
    ratio = dro.weights / dro.prior
    torch.testing.assert_close(losses.grad, ratio / 2)


def test_reduce_fn_sees_sums_and_counts():
    seen = []

    def double(stats: torch.Tensor) -> torch.Tensor:  # two identical ranks
        seen.append(stats.clone())
        return 2 * stats

    dro = DROWeighting(num_classes=2, class_prior=torch.tensor([0.5, 0.5]), temperature=1.0, ema=0)
    dro(torch.tensor([1.0, 3.0]), torch.tensor([1, 1]), reduce_fn=double)
    assert seen[0].tolist() == [[0.0, 4.0], [0.0, 2.0]]
    torch.testing.assert_close(dro.class_loss, torch.tensor([0.0, 2.0]))


def test_state_dict_round_trip_resumes_exactly():
    a = DROWeighting(num_classes=3, class_prior=PRIOR, temperature=0.5, ema=0.9)
    for seed in range(3):
        a(*batch(seed))
    b = DROWeighting(num_classes=3, class_prior=torch.ones(3), temperature=0.5, ema=0.9)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"prior", "class_loss", "seen"}
    losses, classes = batch(7)
    assert torch.equal(a(losses, classes), b(losses, classes))
    assert torch.equal(a.weights, b.weights)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"class_prior": torch.ones(2)}, "class_prior"),
        ({"class_prior": torch.tensor([1.0, -1.0, 1.0])}, "class_prior"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"ema": 1.0}, "ema"),
        ({"ema": -0.1}, "ema"),
    ],
)
def test_invalid_arguments_name_the_field(kwargs, field):
    args = {"num_classes": 3, "class_prior": PRIOR, "temperature": 1.0, "ema": 0.9} | kwargs
    with pytest.raises(ConfigError, match=field):
        DROWeighting(**args)


def test_frequency_buckets():
    # specials 0..2, then items with counts 50, 20, 10, 10, 5, 3, 1, 1, 0
    counts = torch.tensor([0, 0, 0, 50, 20, 10, 10, 5, 3, 1, 1, 0])
    mass = frequency_buckets(counts, 3)
    # cumulative mass before each item / 100 * 3: 0, 1.5, 2.1, ... -> 0, 1, 2, ...
    assert mass.tolist() == [2, 2, 2, 0, 1, 2, 2, 2, 2, 2, 2, 2]
    items = frequency_buckets(counts, 3, by="items")
    assert items[3:].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert items[:3].tolist() == [2, 2, 2]
    # rank by count, not index
    shuffled = torch.tensor([0, 0, 0, 1, 100, 1, 1])
    assert frequency_buckets(shuffled, 2, by="items").tolist() == [1, 1, 1, 0, 0, 1, 1]
    with pytest.raises(ConfigError, match="num_buckets"):
        frequency_buckets(counts, 0)
    with pytest.raises(ConfigError, match="by"):
        frequency_buckets(counts, 2, by="x")


def test_event_classes_and_prior():
    targets = torch.tensor([3, 4, 5])
    buckets = torch.tensor([2, 2, 2, 0, 1, 1])
    assert torch.equal(event_classes(targets, by="item"), targets)
    assert event_classes(targets, by="bucket", item_buckets=buckets).tolist() == [0, 1, 1]
    assert event_classes(targets, by="action", actions=torch.tensor([3, 3, 4])).tolist() == [
        3,
        3,
        4,
    ]
    with pytest.raises(ConfigError, match="item_buckets"):
        event_classes(targets, by="bucket")
    counts = torch.tensor([0, 0, 0, 6, 3, 1])
    torch.testing.assert_close(
        class_prior(buckets, 3, counts=counts), torch.tensor([0.6, 0.4, 0.0])
    )
    torch.testing.assert_close(
        class_prior(torch.tensor([0, 0, 1, 2]), 3), torch.tensor([0.5, 0.25, 0.25])
    )


def test_zero_prior_class_has_finite_ratio():
    dro = DROWeighting(
        num_classes=3, class_prior=torch.tensor([0.0, 0.5, 0.5]), temperature=1.0, ema=0
    )
    out = dro(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 1, 2]))
    assert torch.isfinite(out)
    assert dro.weights[0] == 0
