"""bf16: autocast forward with fp32 master weights and gradients, optimizer moment dtype."""

from __future__ import annotations

import pytest
import torch

from ablate.core.model import Transformer
from ablate.nn.optim import AdamW
from components.precision.bf16 import BF16
from tests.conftest import tiny_model_config

CPU = torch.device("cpu")
BF16_REL = 2e-2  # bf16 matmul vs fp32 matmul, relative (8 significant bits, K = 64)


def _batch():
    idx = torch.randint(0, 37, (2, 17), generator=torch.Generator().manual_seed(1))
    return idx[:, :-1], idx[:, 1:]


def test_autocast_runs_matmuls_in_bf16_with_fp32_masters():
    prec = BF16(BF16.Config(), CPU)
    model = prec.apply(Transformer(tiny_model_config()))
    x, y = _batch()
    with prec.autocast():
        logits, loss = model(x, y)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
    ref_logits, _ = model(x, y)
    rel = (logits.float() - ref_logits).norm() / ref_logits.norm()
    assert 0 < rel < BF16_REL  # really rounded, and only by bf16 rounding
    assert prec.summary()["compute_dtype"] == "bfloat16"


def test_refuses_non_fp32_master_weights():
    model = Transformer(tiny_model_config())
    model.head.weight.data = model.head.weight.data.bfloat16()
    with pytest.raises(ValueError, match="fp32 master weights"):
        BF16(BF16.Config(), CPU).apply(model)


@pytest.mark.parametrize("moments", ["float32", "bfloat16"])
def test_optimizer_moment_dtype(moments):
    prec = BF16(BF16.Config(moment_dtype=moments), CPU)
    model = prec.apply(Transformer(tiny_model_config()))
    opt = prec.build_optimizer([{"params": list(model.parameters())}], lr=1e-3)
    assert isinstance(opt, AdamW) == (moments == "bfloat16")
    x, y = _batch()
    model(x, y)[1].backward()
    opt.step()
    state = opt.state[model.head.weight]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == getattr(torch, moments)
