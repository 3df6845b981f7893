"""RMSNorm's written-out backward rounds every element exactly as autograd on F.rms_norm does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from components.norm.rmsnorm import _RMSNormFn


@pytest.mark.parametrize("shape", [(12, 64, 128), (3, 7, 96), (5, 48), (2, 3, 4, 64), (1, 1, 1000)])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
def test_output_and_gradients_are_bit_identical_to_torch(shape, scale):
    gen = torch.Generator().manual_seed(hash((shape, scale)) % 2**31)
    x0 = torch.randn(*shape, generator=gen) * scale
    w0, g = torch.randn(shape[-1], generator=gen), torch.randn(*shape, generator=gen)
    got, want = [], []
    for fn, out in ((lambda x, w: _RMSNormFn.apply(x, x, w, 1e-6), got), (None, want)):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        y = fn(x, w) if fn else F.rms_norm(x, (shape[-1],), w, 1e-6)
        y.backward(g)
        out += [y, x.grad, w.grad]
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_non_contiguous_input_and_frozen_gain():
    x0 = torch.randn(4, 16, 96)[..., 16:80]  # a slice, as MLA's latent can be
    g = torch.randn(x0.shape)
    w = torch.randn(64)
    xa, xb = x0.detach().requires_grad_(), x0.detach().requires_grad_()
    assert not xa.is_contiguous()
    F.rms_norm(xa, (64,), w, 1e-6).backward(g)
    _RMSNormFn.apply(xb, xb, w, 1e-6).backward(g)  # the gain needs no gradient here
    assert torch.equal(xa.grad, xb.grad)


@pytest.mark.parametrize("seed", range(4))
def test_gradient_reaches_a_residual_stream_with_the_same_rounding(seed):
    """x also feeds a residual: its three gradient terms must add up in autograd's order."""
    gen = torch.Generator().manual_seed(seed)
    x0, w0 = torch.randn(8, 32, 128, generator=gen), torch.randn(128, generator=gen)
    proj, g = torch.randn(128, 128, generator=gen), torch.randn(8, 32, 128, generator=gen)
    grads = []
    for norm in (
        lambda x, w: F.rms_norm(x, (128,), w, 1e-6),
        lambda x, w: _RMSNormFn.apply(x, x, w, 1e-6),
    ):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        (x + norm(x, w) @ proj).backward(g)
        grads.append((x.grad, w.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
