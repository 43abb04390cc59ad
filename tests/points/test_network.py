"""The set network: exact permutation equivariance, conditioning and clear errors."""
from __future__ import annotations

import pytest
import torch

from polydiff.domains.points.network import PointSetTransformer


def _net(num_classes: int = 0) -> PointSetTransformer:
    torch.manual_seed(0)
    net = PointSetTransformer(dim=32, depth=2, latents=8, heads=4, num_classes=num_classes, fourier=8)
    with torch.no_grad():  # the output layer and gates start at zero: give every weight a value
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net.eval()


def test_permuting_points_permutes_the_output() -> None:
    net = _net(num_classes=3)
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(2, 50, 3, generator=g), torch.randn(2, generator=g)
    perm = torch.randperm(50, generator=g)
    cond = {"label": torch.tensor([0, 3])}
    y = net(x, c, cond)
    assert y.shape == x.shape and y.abs().mean() > 1e-2
    assert torch.allclose(net(x[:, perm], c, cond), y[:, perm], atol=1e-5)


def test_samples_in_a_batch_are_independent_and_label_matters() -> None:
    net = _net(num_classes=3)
    g = torch.Generator().manual_seed(2)
    x, c = torch.randn(3, 20, 3, generator=g), torch.randn(3, generator=g)
    labels = torch.tensor([0, 1, 2])
    full = net(x, c, {"label": labels})
    assert torch.allclose(net(x[1:2], c[1:2], {"label": labels[1:2]}), full[1:2], atol=1e-5)
    other = net(x, c, {"label": torch.tensor([1, 1, 1])})
    assert (other[0] - full[0]).abs().max() > 1e-3
    assert torch.allclose(net(x, c, None), net(x, c, {"label": torch.full((3,), 3)}), atol=1e-6)
    assert torch.allclose(net(x, c, None), net(x, c, {"label": torch.full((3,), -1)}), atol=1e-6)


def test_unconditional_network_and_bad_inputs() -> None:
    net = _net()
    x, c = torch.randn(2, 10, 3), torch.randn(2)
    assert net(x, c).shape == (2, 10, 3)
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        net(torch.randn(2, 10, 2), c)
    with pytest.raises(ValueError, match="c_noise"):
        net(x, torch.randn(3))
    with pytest.raises(ValueError, match="class indices"):
        _net(num_classes=3)(x, c, {"label": torch.tensor([0, 4])})
