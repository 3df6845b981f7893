"""Block-scaled FP8 GEMM: Triton kernel vs "dequantize, then fp32 matmul" (docs/design.md check 17),
per-K-block scale placement, odd shapes, and launcher validation."""

from __future__ import annotations

import pytest
import torch

from kernels.fp8_gemm import fp8_gemm, fp8_gemm_ref
from kernels.fp8_quant import act_quant, weight_quant

REF_REL = 1e-6  # design.md check 17: kernel vs dequantize-then-fp32-matmul, fp32 output
BF16_ULP_REL = 2.0**-8  # bf16 keeps 8 significant bits: RNE adds <= 2^-8 relative per element


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _operands(m: int, n: int, k: int, b_block: int):
    x, w = torch.randn(m, k), torch.randn(n, k) * 0.02
    a, a_s = act_quant(x)
    b, b_s = weight_quant(w) if b_block == 128 else act_quant(w)
    return x, w, (a, a_s, b, b_s, b_block)


@pytest.mark.parametrize("b_block", [128, 1])
@pytest.mark.parametrize("mnk", [(256, 384, 384), (200, 130, 300), (17, 64, 100)])
def test_gemm_matches_dequantized_matmul(mnk, b_block):
    _, _, ops = _operands(*mnk, b_block)
    out = fp8_gemm(*ops, out_dtype=torch.float32)
    ref = fp8_gemm_ref(*ops, out_dtype=torch.float32)
    assert out.dtype == torch.float32 and out.shape == mnk[:2]
    assert _rel(out, ref) <= REF_REL


def test_bf16_output_adds_only_rounding():
    _, _, ops = _operands(128, 256, 256, 128)
    out = fp8_gemm(*ops, out_dtype=torch.bfloat16)
    ref = fp8_gemm_ref(*ops, out_dtype=torch.float32)
    assert out.dtype == torch.bfloat16
    # same fp32 accumulator, rounded to nearest even (the interpreter's own cast truncates)
    assert torch.equal(out, fp8_gemm(*ops, out_dtype=torch.float32).to(torch.bfloat16))
    assert ((out.float() - ref).abs() <= BF16_ULP_REL * ref.abs() + 1e-6 * ref.abs().max()).all()


def test_scales_applied_per_k_block_and_per_n_block():
    # scales that differ by decades between K-blocks and between 128-row blocks of B: a
    # kernel applying them after the K loop or indexing B's scale by n instead of n//128
    # cannot meet the 1e-6 bound
    x = torch.randn(64, 384) * torch.tensor([1.0, 1e3, 1e-3]).repeat_interleave(128)
    w = torch.randn(256, 384) * torch.tensor([1.0, 1e2]).repeat_interleave(128)[:, None]
    a, a_s = act_quant(x)
    b, b_s = weight_quant(w)
    out = fp8_gemm(a, a_s, b, b_s, 128, torch.float32)
    assert _rel(out, fp8_gemm_ref(a, a_s, b, b_s, 128, torch.float32)) <= REF_REL
    scales_outside = (a.float() @ b.float().t()) * a_s.mean(1, keepdim=True) * b_s.mean()
    assert _rel(scales_outside, out) > 0.1


def test_gemm_vs_unquantized_check_17():
    x, w, ops = _operands(64, 128, 4096, 128)
    out = fp8_gemm(*ops, out_dtype=torch.float32)
    assert 0.03 < _rel(out, x @ w.t()) < 0.045  # design.md check 17: ~0.037 at K = 4096


def test_zero_operand_gives_zeros():
    a, a_s = act_quant(torch.zeros(32, 256))
    b, b_s = weight_quant(torch.randn(64, 256))
    assert (fp8_gemm(a, a_s, b, b_s, 128, torch.float32) == 0).all()


def _bad_calls():
    _, _, (a, a_s, b, b_s, _) = _operands(32, 64, 256, 128)
    return [
        (lambda: fp8_gemm(a.float(), a_s, b, b_s), "float8_e4m3fn"),
        (lambda: fp8_gemm(a, a_s, b[:, :128].contiguous(), b_s[:, :1].contiguous()), "inner"),
        (lambda: fp8_gemm(a, a_s[:, :1].contiguous(), b, b_s), "a_s must"),
        (lambda: fp8_gemm(a, a_s, b, b_s, b_block=1), "b_s must"),
        (lambda: fp8_gemm(a, a_s, b, b_s, b_block=64), "b_block"),
        (lambda: fp8_gemm(a, a_s, b, b_s, out_dtype=torch.float16), "out_dtype"),
        (lambda: fp8_gemm(a.t(), a_s, b, b_s), "contiguous"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_launcher_rejects_bad_inputs(case):
    call, match = _bad_calls()[case]
    with pytest.raises(ValueError, match=match):
        call()
