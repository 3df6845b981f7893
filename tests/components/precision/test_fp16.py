"""fp16: autocast float16 with fp32 masters, kept-fp32 Linears, dynamic loss scaling (the scale
rule, unscaling, a forced overflow skipped and recovered from in a real run, none in a normal
run) and the loss scale carried through a checkpoint resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from ablate.core.checkpoint import read_checkpoint
from ablate.core.config import load_config
from ablate.core.model import Transformer
from ablate.core.trainer import train
from ablate.nn.mixed_precision import HighPrecisionLinear
from components.precision.fp16 import FP16
from tests.conftest import REPO, tiny_model_config

CPU = torch.device("cpu")
FP16_REL = 5e-3  # fp16 matmul vs fp32, relative (11 significant bits, K = 64)
TINY = REPO / "sweeps" / "base" / "tiny.yaml"
STEPS = 12
OVERRIDES = [
    "model.dim=32",
    "model.num_layers=1",
    "data.batch_size=4",
    "data.seq_len=32",
    "data.dataset.max_chars=50000",
    "data.eval_windows=8",
    f"train.steps={STEPS}",
    "train.checkpoint_every=6",
    "train.eval_every=6",
    "train.warmup_steps=3",
    "train.log_every=1",
    "train.threads=1",
    "train.precision.name=fp16",
]


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


def test_bad_config_names_the_key():
    with pytest.raises(ValueError, match="train.precision.backoff_factor"):
        load_config(TINY, [*OVERRIDES, "train.precision.backoff_factor=1.5"])
    with pytest.raises(ValueError, match="train.precision.growth_interval"):
        load_config(TINY, [*OVERRIDES, "train.precision.growth_interval=0"])


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r]


def _adam_steps(out: Path) -> set[int]:
    ckpt_hash = torch.load(out / "checkpoint.pt", weights_only=False)["config_hash"]
    ckpt = read_checkpoint(out / "checkpoint.pt", ckpt_hash, CPU)
    return {int(s["step"]) for s in ckpt["optimizer"]["state"].values()}


def test_normal_run_skips_no_step(tmp_path):
    summary = train(load_config(TINY, OVERRIDES), tmp_path)
    assert summary["status"] == "done"
    rows = _rows(tmp_path)
    assert [r["num_skipped_steps"] for r in rows] == [0] * STEPS
    assert all(r["loss_scale"] == 65536.0 for r in rows)
    assert all(math.isfinite(r["grad_norm"]) for r in rows)
    assert summary["precision"]["num_skipped_steps"] == 0
    assert summary["metrics"]["loss_scale"] == 65536.0
    assert _adam_steps(tmp_path) == {STEPS}  # every step reached the optimizer
    assert rows[-1]["loss"] < rows[0]["loss"]


INJECT_AT = 4  # the backward of this step gets an inf gradient


def test_forced_overflow_skips_the_step_backs_off_and_recovers(tmp_path, monkeypatch):
    apply = FP16.apply
    calls = []

    def apply_with_hook(self, model):
        model = apply(self, model)

        def inject(grad):  # a gradient hook: inf at one backward only
            calls.append(1)
            return torch.full_like(grad, math.inf) if len(calls) == INJECT_AT else grad

        model.blocks[0].ffn_norm.weight.register_hook(inject)
        return model

    monkeypatch.setattr(FP16, "apply", apply_with_hook)
    summary = train(load_config(TINY, OVERRIDES), tmp_path)
    assert summary["status"] == "done" and summary["steps"] == STEPS
    rows = _rows(tmp_path)
    skipped = [r["num_skipped_steps"] for r in rows]
    assert skipped == [0] * (INJECT_AT - 1) + [1] * (STEPS - INJECT_AT + 1)
    scales = [r["loss_scale"] for r in rows]
    assert scales == [65536.0] * (INJECT_AT - 1) + [32768.0] * (STEPS - INJECT_AT + 1)
    assert math.isnan(rows[INJECT_AT - 1]["grad_norm"])  # no clipping of the skipped step
    assert all(math.isfinite(r["grad_norm"]) for i, r in enumerate(rows) if i != INJECT_AT - 1)
    assert _adam_steps(tmp_path) == {STEPS - 1}  # one optimizer step fewer
    assert all(math.isfinite(r["loss"]) for r in rows) and rows[-1]["loss"] < rows[0]["loss"]
    assert math.isfinite(summary["val_loss"])
    assert summary["precision"]["num_skipped_steps"] == 1


def test_resume_restores_the_loss_scale(tmp_path):
    """A scale that grew mid-run (growth_interval 4) comes back from the checkpoint: the resumed
    run's losses, scales and skips equal those of a run that never stopped."""
    cfg = load_config(TINY, [*OVERRIDES, "train.precision.growth_interval=4"])
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(cfg, straight)
    assert train(cfg, resumed, stop_after=6)["status"] == "stopped"
    train(cfg, resumed)
    keys = ("step", "loss", "grad_norm", "loss_scale", "num_skipped_steps")
    assert [[r[k] for k in keys] for r in _rows(resumed)] == [
        [r[k] for k in keys] for r in _rows(straight)
    ]
    # the scale grew after 4 clean steps and, past fp16's range, a real overflow backed it off
    rows = _rows(straight)
    assert rows[5]["loss_scale"] == 2 * 65536.0  # in the checkpoint at step 6
    assert rows[-1]["num_skipped_steps"] >= 1


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


ADDITION = REPO / "sweeps" / "base" / "addition.yaml"
POST_INJECT_AT = 3  # the post-training backward that gets an inf gradient


def test_post_training_in_fp16_skips_an_overflow_and_resumes_its_scale(tmp_path, monkeypatch):
    """SFT after pre-training, in fp16: the loss is scaled, a forced inf gradient skips that
    update and halves the scale, and a resume from the post checkpoint keeps the scale."""
    overrides = [
        "model.dim=32",
        "model.num_layers=1",
        "data.dataset.num_train=500",
        "train.steps=4",
        "train.eval_every=4",
        "train.threads=1",
        "tracking.wandb=disabled",
        "train.precision.name=fp16",
        "post.stages=[{name: sft, steps: 6, batch_size: 4}]",
        "post.log_every=1",
        "post.eval_every=6",
        "post.checkpoint_every=2",
        "post.eval_prompts=4",
        "post.eval_samples=1",
        "post.max_new_tokens=8",
    ]
    cfg = load_config(ADDITION, overrides)
    apply, calls = FP16.apply, []

    def apply_with_hook(self, model):
        model = apply(self, model)

        def inject(grad):  # backwards 1-4 pre-train; the hook counts post-training's from 5
            calls.append(1)
            return torch.full_like(grad, math.inf) if len(calls) == 4 + POST_INJECT_AT else grad

        model.blocks[0].ffn_norm.weight.register_hook(inject)
        return model

    monkeypatch.setattr(FP16, "apply", apply_with_hook)
    summary = train(cfg, tmp_path / "a")
    assert summary["status"] == "done" and summary["metrics"]["post_steps"] == 6
    rows = _post_rows(tmp_path / "a")
    assert [r["post_num_skipped_steps"] for r in rows] == [0, 0, 1, 1, 1, 1]
    assert [r["post_loss_scale"] for r in rows] == [65536.0] * 2 + [32768.0] * 4
    assert math.isnan(rows[2]["post_grad_norm"]) and math.isfinite(rows[3]["post_grad_norm"])
    assert all(math.isfinite(r["post_loss"]) for r in rows)
    # the same trial crashing after the post checkpoint at step 4 resumes with its scale
    import components.posttrain.sft as sft

    real, steps = sft.SFT.step, []

    def crash_once(self, step):
        steps.append(step)
        if len(steps) == 5:
            raise RuntimeError("simulated crash")
        return real(self, step)

    calls.clear()
    monkeypatch.setattr(sft.SFT, "step", crash_once)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "b")
    calls[:] = [1] * 99  # the resumed run injects nothing more; its rows must still match
    train(cfg, tmp_path / "b")
    keys = ("post_step", "post_loss", "post_loss_scale", "post_num_skipped_steps")
    assert [[r[k] for k in keys] for r in _post_rows(tmp_path / "b")] == [
        [r[k] for k in keys] for r in rows
    ]


def _post_rows(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "post_loss" in r]
