"""fp8_block: model transform, DeepSeek-V3 tilings per GEMM (docs/design.md check 19), gradients vs
fp32 autograd and vs the Triton kernels, optimizer state dtypes, and a short training run."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablate.core.config import from_dict, load_config, to_dict
from ablate.core.model import Transformer
from ablate.core.trainer import train
from ablate.nn.optim import AdamW
from components.precision.fp8_block import FP8Block, FP8Linear, QuantStats, _ops
from tests.conftest import REPO, tiny_model_config

FP8_REL = (0.01, 0.06)  # relative Frobenius error of each FP8 GEMM vs fp32 (two E4M3 operands)
EXACT_REL = 1e-6  # same quantized operands, different fp32 accumulation order
LOSS_TOL = 0.01  # FP8 vs BF16 final losses; measured gap 0.16% (train), 0.19% (val)
CPU = torch.device("cpu")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _fp8(**changes) -> FP8Block:
    return FP8Block(dataclasses.replace(FP8Block.Config(backend="emulation"), **changes), CPU)


def _layer(lin: nn.Linear, backend: str = "emulation", ops=None, cache: bool = True, fmt=None):
    return FP8Linear(
        lin,
        ops or _ops(backend),
        backend=backend,
        scale_fmt=fmt,
        cache_fp8=cache,
        stats=QuantStats(),
        stats_every=1,
    )


def _fwd_bwd(module: nn.Module, x: torch.Tensor, lin: nn.Linear):
    """Output, input gradient and weight gradient of `module` for a fixed output gradient."""
    lin.weight.grad = None
    x = x.detach().clone().requires_grad_()
    y = module(x)
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(1)))
    return y.detach(), x.grad, lin.weight.grad.clone()


def test_transform_swaps_eligible_linears_and_warns_once():
    model = Transformer(tiny_model_config(dim=128))
    keys = set(model.state_dict())
    prec = _fp8()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prec.apply(model)
    assert len(caught) == 1 and "head" in str(caught[0].message)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert {n for n, m in linears.items() if not isinstance(m, FP8Linear)} == {"head"}
    assert all(n.startswith("blocks.") for n, m in linears.items() if isinstance(m, FP8Linear))
    assert type(model.tok_emb) is nn.Embedding and type(model.final_norm) is not FP8Linear
    assert set(model.state_dict()) == keys  # checkpoints stay compatible
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    summary = prec.summary()
    assert summary["skipped"] == ["head"] and summary["backend"] == "emulation"
    assert summary["num_fp8_linears"] == 4 * model.cfg.num_layers


def test_skip_patterns_are_a_config_field():
    model = Transformer(tiny_model_config(dim=128))
    with pytest.warns(UserWarning, match="wo"):
        _fp8(skip=("*.wo",)).apply(model)
    assert type(model.blocks[0].attn.wo) is nn.Linear
    assert isinstance(model.head, FP8Linear)  # not skipped once the default patterns are gone
    cfg = from_dict({"train": {"precision": {"name": "fp8_block", "skip": ["*.wo"]}}})
    assert cfg.train.precision.skip == ("*.wo",)
    assert to_dict(cfg)["train"]["precision"]["skip"] == ["*.wo"]
    with pytest.raises(ValueError, match="stats_every"):
        from_dict({"train": {"precision": {"name": "fp8_block", "stats_every": -1}}})


class _Spy:
    """Records every quantizer / GEMM call of the emulation backend."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        base = _ops("emulation")
        self.ops = dataclasses.replace(
            base,
            act_quant=self._wrap("1x128", base.act_quant),
            act_quant_t=self._wrap("128x1", base.act_quant_t),
            weight_quant=self._wrap("128x128", base.weight_quant),
            gemm=self._gemm(base.gemm),
        )

    def _wrap(self, tiling, fn):
        def call(x, fmt, *floor):
            q, s = fn(x, fmt, *floor)
            self.calls.append((tiling, tuple(x.shape), tuple(s.shape), q.dtype))
            return q, s

        return call

    def _gemm(self, fn):
        def call(a, a_s, b, b_s, b_block, out_dtype):
            self.calls.append(
                (
                    "gemm",
                    tuple(a.shape),
                    tuple(b.shape),
                    tuple(b_s.shape),
                    b_block,
                    a.dtype,
                    b.dtype,
                )
            )
            return fn(a, a_s, b, b_s, b_block, out_dtype)

        return call


def test_recipe_tilings_check_19():
    spy, e4m3 = _Spy(), torch.float8_e4m3fn
    lin = nn.Linear(256, 384, bias=False)
    _fwd_bwd(_layer(lin, ops=spy.ops), torch.randn(2, 100, 256), lin)
    m, k, n = 200, 256, 384
    assert spy.calls == [
        ("1x128", (m, k), (m, 2), e4m3),  # fprop: x in 1x128 tiles
        ("128x128", (n, k), (3, 2), e4m3),  # W in 128x128 blocks
        ("gemm", (m, k), (n, k), (3, 2), 128, e4m3, e4m3),
        ("1x128", (m, n), (m, 3), e4m3),  # dgrad: dy in 1x128 tiles along N
        ("gemm", (m, n), (k, n), (2, 3), 128, e4m3, e4m3),  # x W^T blocks, transposed scales
        ("128x1", (m, n), (n, 2), e4m3),  # wgrad: dy and x in 128x1 tiles over tokens
        ("128x1", (m, k), (k, 2), e4m3),
        ("gemm", (n, m), (k, m), (k, 2), 1, e4m3, e4m3),
    ]


@pytest.mark.parametrize("bias,fmt", [(False, None), (True, None), (False, "ue8m0")])
def test_gradients_vs_fp32_autograd(bias, fmt):
    lin = nn.Linear(256, 384, bias=bias)
    x = torch.randn(2, 96, 256)
    y, dx, dw = _fwd_bwd(_layer(lin, fmt=fmt), x, lin)
    db = lin.bias.grad.clone() if bias else None
    if bias:
        lin.bias.grad = None
    y_ref, dx_ref, dw_ref = _fwd_bwd(lambda t: F.linear(t, lin.weight, lin.bias), x, lin)
    for got, want in ((y, y_ref), (dx, dx_ref), (dw, dw_ref)):
        assert FP8_REL[0] < _rel(got, want) < FP8_REL[1]
    if bias:
        torch.testing.assert_close(db, lin.bias.grad, rtol=1e-6, atol=1e-6)


def test_wgrad_retiling_of_cached_fp8_adds_error():
    lin, x = nn.Linear(256, 256, bias=False), torch.randn(192, 256)
    dw_ref = _fwd_bwd(lambda t: F.linear(t, lin.weight), x, lin)[2]
    err_cached = _rel(_fwd_bwd(_layer(lin, cache=True), x, lin)[2], dw_ref)
    err_hp = _rel(_fwd_bwd(_layer(lin, cache=False), x, lin)[2], dw_ref)
    assert err_hp < err_cached < FP8_REL[1]


def test_triton_kernels_match_emulation():
    lin = nn.Linear(256, 128, bias=False)
    x = torch.randn(1, 136, 256)  # 136 tokens: a partial 128-token tile in the wgrad pass
    emulated = _fwd_bwd(_layer(lin, "emulation"), x, lin)
    kernels = _fwd_bwd(_layer(lin, "triton"), x, lin)
    for got, want in zip(kernels, emulated):
        assert _rel(got, want) <= EXACT_REL


def test_autocast_dtypes_and_bf16_moments():
    prec = _fp8()
    with pytest.warns(UserWarning, match="head"):
        model = prec.apply(Transformer(tiny_model_config(dim=128)))
    layer = model.blocks[0].ffn.mlp.w2
    x = torch.randn(2, 8, layer.in_features, requires_grad=True)
    with prec.autocast():
        y = layer(x)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and x.grad.dtype == torch.float32
    assert layer.weight.grad.dtype == torch.float32
    opt = prec.build_optimizer([{"params": list(model.parameters())}], lr=1e-3)
    assert isinstance(opt, AdamW)
    opt.step()
    states = [opt.state[p] for p in model.parameters() if p.grad is not None]
    assert states and all(s["exp_avg"].dtype == torch.bfloat16 for s in states)
    assert all(s["exp_avg_sq"].dtype == torch.bfloat16 for s in states)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_short_fp8_run_tracks_bf16(tmp_path):
    tiny = REPO / "sweeps" / "base" / "tiny.yaml"
    common = [
        "model.dim=128",
        "model.num_layers=1",
        "data.batch_size=8",
        "data.seq_len=32",
        "data.dataset.max_chars=50000",
        "data.eval_windows=16",
        "train.steps=30",
        "train.eval_every=30",
        "train.checkpoint_every=0",
        "train.threads=1",
    ]
    runs = {}
    for name in ("bf16", "fp8_block"):
        cfg = load_config(tiny, [*common, f"train.precision.name={name}"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs[name] = train(cfg, tmp_path / name)
    bf16, fp8 = runs["bf16"], runs["fp8_block"]
    assert fp8["status"] == bf16["status"] == "done"
    assert abs(fp8["train_loss"] - bf16["train_loss"]) / bf16["train_loss"] < LOSS_TOL
    assert abs(fp8["val_loss"] - bf16["val_loss"]) / bf16["val_loss"] < LOSS_TOL
    prec = fp8["precision"]
    assert prec["backend"] == "emulation" and prec["moment_dtype"] == "bfloat16"
    assert 0.01 < prec["quant_error"]["act_rel_err_mean"] < 0.05
    assert 0.01 < prec["quant_error"]["grad_rel_err_mean"] < 0.05
