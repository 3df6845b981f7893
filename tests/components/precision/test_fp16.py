"""fp16 as a precision: autocast float16 with fp32 masters, kept-fp32 Linears, the dynamic loss
scale's rule and unscaling, and the weight bytes read per parameter. Training runs under fp16
(skipped overflows, resumes): test_fp16_runs.py."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ablate.core.model import Transformer
from ablate.nn.mixed_precision import HighPrecisionLinear
from components.precision.fp16 import FP16
from tests.conftest import tiny_model_config

CPU = torch.device("cpu")
FP16_REL = 5e-3  # fp16 matmul vs fp32, relative (11 significant bits, K = 64)


def _batch():
    idx = torch.randint(0, 37, (2, 17), generator=torch.Generator().manual_seed(1))
    return idx[:, :-1], idx[:, 1:]


def _fp16_valued(t: torch.Tensor) -> bool:
    return bool(torch.equal(t.float(), t.half().float()))


@pytest.mark.parametrize("backend", ["autocast", "emulation"])
def test_float16_compute_with_fp32_masters_and_kept_head(backend):
    prec = FP16(FP16.Config(backend=backend), CPU)
    model = prec.apply(Transformer(tiny_model_config()))
    x, y = _batch()
    with prec.autocast():
        logits, loss = model(x, y)
    assert logits.dtype == (torch.float16 if backend == "autocast" else torch.float32)
    assert _fp16_valued(logits) and loss.dtype == torch.float32
    plain = Transformer(tiny_model_config())
    plain.load_state_dict(model.state_dict())
    ref, _ = plain(x, y)
    rel = (logits.float() - ref).norm() / ref.norm()
    assert 0 < rel < FP16_REL
    loss.backward()
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in model.parameters())
    if backend == "emulation":  # every Wgrad is an fp16 GEMM's output
        assert all(
            _fp16_valued(m.weight.grad) for m in model.blocks.modules() if isinstance(m, nn.Linear)
        )

    kept = FP16(FP16.Config(skip=("head",), backend=backend), CPU)
    fresh = Transformer(tiny_model_config())
    keys = list(fresh.state_dict())
    model = kept.apply(fresh)
    assert kept.kept == ["head"] and isinstance(model.head, nn.Linear)
    assert isinstance(model.head, HighPrecisionLinear) == (backend == "autocast")
    assert list(model.state_dict()) == keys and model.head.weight is model.tok_emb.weight
    with kept.autocast():
        logits, _ = model(x, y)
    assert logits.dtype == torch.float32 and not _fp16_valued(logits)  # the head ran in fp32
    assert kept.summary()["compute_dtype"] == "float16"


def test_auto_backend_is_emulation_on_cpu():
    assert FP16(FP16.Config(), CPU).backend == "emulation"
    assert FP16(FP16.Config(), torch.device("cuda")).backend == "autocast"


def test_scale_rule_backoff_and_growth():
    prec = FP16(FP16.Config(initial_scale=8.0, growth_interval=3), CPU)
    seen = []
    for overflow in (False, False, True, False, False, False, False):
        prec.update(overflow)
        seen.append((prec.scale, prec.num_skipped))
    # grows only after 3 clean steps in a row; an overflow halves S and restarts the count
    assert seen == [(8, 0), (8, 0), (4, 1), (4, 1), (4, 1), (8, 1), (8, 1)]
    state = prec.state_dict()
    other = FP16(FP16.Config(), CPU)
    other.load_state_dict(state)
    assert other.state_dict() == state == {"scale": 8.0, "growth_tracker": 1, "num_skipped": 1}


TINY_LOSS = 1e-3


def _grads(model, prec, scaled: bool) -> list[torch.Tensor]:
    model.zero_grad()
    x, y = _batch()
    with prec.autocast():
        loss = model(x, y)[1] * TINY_LOSS  # gradients near fp16's smallest normal (6.1e-5)
    (prec.scale_loss(loss) if scaled else loss).backward()
    if scaled:
        assert not prec.unscale_grads(model)
    return [p.grad.clone() for p in model.parameters()]


def _err(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    return float(sum((g - w).norm() ** 2 for g, w in zip(got, want, strict=True)) ** 0.5)


@pytest.mark.parametrize("backend", ["autocast", "emulation"])
def test_unscale_restores_gradients_and_detects_inf(backend):
    prec = FP16(FP16.Config(backend=backend), CPU)
    model = prec.apply(Transformer(tiny_model_config()))
    fp32 = Transformer(tiny_model_config())
    fp32.load_state_dict(model.state_dict())
    no_autocast = FP16(FP16.Config(backend="emulation"), CPU)  # its autocast() does nothing
    ref = _grads(fp32, no_autocast, scaled=False)
    # in fp32, scaling by a power of two and unscaling is exact
    assert _err(_grads(fp32, no_autocast, scaled=True), ref) == 0
    # in fp16, the scale lifts small gradients out of fp16's subnormals and zero: closer to fp32
    unscaled = _err(_grads(model, prec, scaled=False), ref)
    scaled = _err(_grads(model, prec, scaled=True), ref)
    assert 0 < scaled < unscaled / 2
    model.head.weight.grad[0, 0] = math.inf
    assert prec.unscale_grads(model)
    model.head.weight.grad.fill_(0)
    model.head.weight.grad[0, 0] = math.nan
    assert prec.unscale_grads(model)


@pytest.mark.parametrize("backend", ["autocast", "emulation"])
def test_weight_bytes_per_param_as_read(backend):
    """Linear weights read in 16 bits count 2 bytes (the tied head's too), the rest 4; a kept
    Linear reads fp32."""
    plain = Transformer(tiny_model_config())
    linears = {id(m.weight): m.weight.numel() for m in plain.modules() if type(m) is nn.Linear}
    total = sum(p.numel() for p in plain.parameters())
    low = sum(linears.values())
    prec = FP16(FP16.Config(backend=backend), CPU)
    prec.apply(plain)
    assert prec.summary()["weight_bytes_per_param"] == (2 * low + 4 * (total - low)) / total
    kept = FP16(FP16.Config(skip=("head",), backend=backend), CPU)
    model = kept.apply(Transformer(tiny_model_config()))
    head = model.head.weight.numel()
    assert kept.bytes_per_param == (2 * (low - head) + 4 * (total - low + head)) / total
