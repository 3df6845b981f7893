"""AdamW with narrow moment storage: equals torch's AdamW in fp32, keeps bf16 through resume."""

from __future__ import annotations

import pytest
import torch

from ablate.nn.optim import AdamW

HP = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(8, 16, generator=g)),
        torch.nn.Parameter(torch.randn(16, generator=g)),
    ]


def _run(opt: torch.optim.Optimizer, params, steps: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()


def _groups(params):
    return [{"params": params[:1], "weight_decay": 0.1}, {"params": params[1:], "weight_decay": 0}]


def test_fp32_moments_match_torch_adamw():
    ours, ref = _params(), _params()
    _run(AdamW(_groups(ours), moment_dtype=torch.float32, **HP), ours, 20)
    _run(torch.optim.AdamW(_groups(ref), **HP), ref, 20)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_bf16_moments_are_stored_in_bf16_and_stay_close():
    ours, ref = _params(), _params()
    opt = AdamW(_groups(ours), **HP)
    _run(opt, ours, 20)
    _run(torch.optim.AdamW(_groups(ref), **HP), ref, 20)
    assert all(opt.state[p]["exp_avg"].dtype == torch.bfloat16 for p in ours)
    assert all(opt.state[p]["exp_avg_sq"].dtype == torch.bfloat16 for p in ours)
    assert all(p.dtype == torch.float32 for p in ours)
    for a, b in zip(ours, ref):
        assert 0 < (a - b).abs().max() < 1e-2  # different, but only by moment rounding


def test_resume_keeps_bf16_moments_and_is_bit_identical():
    straight = _params()
    _run(AdamW(_groups(straight), **HP), straight, 10)
    resumed = _params()
    first = AdamW(_groups(resumed), **HP)
    _run(first, resumed, 5)
    second = AdamW(_groups(resumed), **HP)
    second.load_state_dict(first.state_dict())
    assert second.state[resumed[0]]["exp_avg"].dtype == torch.bfloat16
    g = torch.Generator().manual_seed(1)
    for _ in range(5):  # replay the first 5 gradients to keep the generator aligned
        for p in resumed:
            torch.randn(p.shape, generator=g)
    for _ in range(5):
        for p in resumed:
            p.grad = torch.randn(p.shape, generator=g)
        second.step()
    for a, b in zip(resumed, straight):
        assert torch.equal(a, b)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="moment_dtype"):
        AdamW(_params(), moment_dtype=torch.float16)
    with pytest.raises(ValueError, match="hyper-parameters"):
        AdamW(_params(), lr=-1.0)
