"""Image-set aggregation strategies: hand-computed examples, shapes, set sizes, aggregate_set."""

from __future__ import annotations

import pytest
import torch

from facerecon.aggregate import (
    STRATEGIES,
    aggregate,
    aggregate_set,
    average,
    image_confidence,
    s1_global_score,
    s2_summed_score,
    s3_max_pick,
    s4_elementwise,
)
from facerecon.morphable.layout import CoeffLayout

# 3 images, 2 identity coefficients.
X = torch.tensor([[1.0, 10.0], [3.0, 20.0], [8.0, 60.0]], dtype=torch.float64)
C = torch.tensor([[1.0, 0.5], [1.0, 0.25], [0.5, 0.25]], dtype=torch.float64)


def test_average_by_hand():
    assert torch.allclose(average(X), torch.tensor([4.0, 30.0], dtype=torch.float64))
    assert torch.allclose(average(X, C), average(X))  # confidences are ignored


def test_s1_global_score_by_hand():
    # g = mean_k c = [0.75, 0.625, 0.375]; sum 1.75 -> w = [3/7, 2.5/7, 1.5/7]
    w = torch.tensor([3.0, 2.5, 1.5], dtype=torch.float64) / 7.0
    want = torch.tensor([(3 + 7.5 + 12) / 7, (30 + 50 + 90) / 7], dtype=torch.float64)
    assert torch.allclose(s1_global_score(X, C), want)
    assert torch.allclose(want, (w[:, None] * X).sum(0))
    # a one-output C-Net (conf (M, 1)) gives the same aggregate as its broadcast
    g = C.mean(-1, keepdim=True)
    assert torch.allclose(s1_global_score(X, g), want)


def test_s2_summed_score_by_hand():
    # s = [1.5, 1.25, 0.75]; sum 3.5 -> w = [3/7, 2.5/7, 1.5/7]: same as S1 for the same conf
    want = torch.tensor([22.5 / 7, 170.0 / 7], dtype=torch.float64)
    assert torch.allclose(s2_summed_score(X, C), want)
    assert torch.allclose(s2_summed_score(X, C), s1_global_score(X, C))
    # with scores of different ranking S2 moves towards the more confident image
    c2 = torch.tensor([[0.1, 0.1], [0.1, 0.1], [0.8, 0.8]], dtype=torch.float64)
    assert torch.allclose(s2_summed_score(X, c2), torch.tensor([6.8, 51.0], dtype=torch.float64))


def test_s3_max_pick_by_hand():
    assert torch.equal(s3_max_pick(X, C), X[0])  # sums 1.5, 1.25, 0.75
    c = torch.tensor([[0.1, 0.1], [0.9, 0.2], [0.3, 0.3]], dtype=torch.float64)
    assert torch.equal(s3_max_pick(X, c), X[1])
    assert torch.equal(s3_max_pick(X), X[0])  # uniform: first image


def test_s4_elementwise_by_hand():
    # k=0: (1 + 3 + 4) / 2.5 = 3.2 ; k=1: (5 + 5 + 15) / 1.0 = 25
    assert torch.allclose(s4_elementwise(X, C), torch.tensor([3.2, 25.0], dtype=torch.float64))
    # constant confidences (any value) -> plain average
    assert torch.allclose(s4_elementwise(X, torch.full_like(X, 0.5)), average(X), atol=1e-12)


def test_registry_and_errors():
    assert set(STRATEGIES) == {"avg", "s1", "s2", "s3", "s4"}
    for name, fn in STRATEGIES.items():
        assert torch.equal(aggregate(X, C, name), fn(X, C))
    assert torch.equal(aggregate(X, C), s4_elementwise(X, C))  # default s4
    with pytest.raises(ValueError, match="unknown aggregation strategy"):
        aggregate(X, C, "s5")
    with pytest.raises(ValueError, match="conf must be"):
        aggregate(X, C[:, :1].expand(3, 3).contiguous(), "s4")
    with pytest.raises(ValueError, match="id_coeff must be"):
        aggregate(X[0], None, "avg")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_all_sizes_and_batched(name):
    g = torch.Generator().manual_seed(0)
    for m in range(1, 6):
        x = torch.randn(4, m, 7, generator=g)
        c = torch.rand(4, m, 7, generator=g) + 0.05
        out = aggregate(x, c, name)
        assert out.shape == (4, 7)
        # batched == per set
        for s in range(4):
            assert torch.allclose(out[s], aggregate(x[s], c[s], name), atol=1e-6)
        # each output lies within the set's range of values (convex combination / pick)
        assert bool((out >= x.amin(1) - 1e-5).all() and (out <= x.amax(1) + 1e-5).all())
        if m == 1:  # a set of one image returns that image's identity
            assert torch.allclose(out, x[:, 0], atol=1e-6)


def test_s4_gradient_reaches_confidences():
    c = C.clone().requires_grad_(True)
    s4_elementwise(X, c).sum().backward()
    assert c.grad is not None and float(c.grad.abs().sum()) > 0


def test_aggregate_set_keeps_other_parts():
    layout = CoeffLayout(4, 3, 2)
    g = torch.Generator().manual_seed(1)
    coeffs = torch.randn(2, 5, layout.size, generator=g)
    conf = torch.rand(2, 5, 4, generator=g) + 0.1
    out = aggregate_set(coeffs, conf, layout, "s4")
    assert out.shape == coeffs.shape
    before, after = layout.split(coeffs), layout.split(out)
    for name in ("exp_coeff", "tex_coeff", "angles", "gamma", "trans"):
        assert torch.equal(after[name], before[name])
    want = s4_elementwise(before["id_coeff"], conf)  # (2, 4)
    assert torch.allclose(after["id_coeff"], want[:, None].expand(2, 5, 4))
    # one set (M, size), uniform confidences
    one = aggregate_set(coeffs[0], None, layout, "avg")
    assert torch.allclose(layout.split(one)["id_coeff"][3], before["id_coeff"][0].mean(0))


def test_image_confidence():
    assert torch.allclose(image_confidence(C), torch.tensor([1.5, 1.25, 0.75], dtype=C.dtype))
    assert image_confidence(torch.ones(2, 3, 4)).shape == (2, 3)
