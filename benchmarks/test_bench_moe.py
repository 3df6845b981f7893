"""MoE layer forward + backward (routing, dispatch to experts, combine) against the dense SwiGLU
with the same activated parameters, at the aux_vs_bias sweep's size (width 128, 8 routed
experts, top-2, 1 shared)."""

from __future__ import annotations

import pytest
import torch

from ablate import registry
from ablate.core.config import ModelConfig
from ablate.interfaces import BuildContext
from ablate.nn.swiglu import SwiGLU

DIM, EXPERTS, TOPK, SHARED, EXPERT_DIM = 128, 8, 2, 1, 64
SHAPE = (16, 128, DIM)  # windows x tokens x width of one training step


def _step(layer, x_BTD, grad_BTD):
    layer(x_BTD).backward(grad_BTD)
    for m in layer.modules():  # routing-bias counts are reset after each step, as in training
        hook = getattr(m, "after_optimizer_step", None)
        if callable(hook):
            hook()


def _moe():
    import components  # noqa: F401  (registers the components)

    cls = registry.get("ffn", "moe")
    cfg = cls.Config(
        num_routed_experts=EXPERTS,
        topk=TOPK,
        num_shared_experts=SHARED,
        expert_dim=EXPERT_DIM,
        router=registry.get("router", "softmax_aux").Config(),
    )
    return cls(cfg, BuildContext(ModelConfig(dim=DIM), 1)).train()


@pytest.mark.parametrize("layer", ["moe", "dense"])
def test_ffn_forward_backward(benchmark, layer):
    module = _moe() if layer == "moe" else SwiGLU(DIM, (SHARED + TOPK) * EXPERT_DIM)
    x_BTD = torch.randn(*SHAPE, requires_grad=True)
    grad_BTD = torch.randn(*SHAPE)
    benchmark(_step, module, x_BTD, grad_BTD)
    assert x_BTD.grad is not None and torch.isfinite(x_BTD.grad).all()
