"""FP8 references (PyTorch, CPU): 1x128 activation and 128x128 weight quantization, and the
block-scaled GEMM reference at a training-step shape (256 tokens x 512 wide)."""

from __future__ import annotations

import pytest
import torch

from kernels.fp8_gemm import fp8_gemm_ref
from kernels.fp8_quant import act_quant_ref, weight_quant_ref

TOKENS, DIM = 256, 512


@pytest.fixture
def x_TD():
    return torch.randn(TOKENS, DIM)


@pytest.fixture
def w_OD():
    return torch.randn(DIM, DIM) * 0.02


def test_act_quant_ref(benchmark, x_TD):
    q, s = benchmark(act_quant_ref, x_TD)
    assert q.shape == x_TD.shape and s.shape == (TOKENS, DIM // 128)


def test_weight_quant_ref(benchmark, w_OD):
    q, s = benchmark(weight_quant_ref, w_OD)
    assert s.shape == (DIM // 128, DIM // 128)


def test_fp8_gemm_ref(benchmark, x_TD, w_OD):
    a, a_s = act_quant_ref(x_TD)
    b, b_s = weight_quant_ref(w_OD)
    y = benchmark(fp8_gemm_ref, a, a_s, b, b_s)
    ref = x_TD @ w_OD.t()
    assert y.shape == (TOKENS, DIM)
    assert (y.float() - ref).norm() / ref.norm() < 0.1  # FP8 error, not a wrong product
