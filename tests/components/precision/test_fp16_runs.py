"""fp16 in training runs: none skipped in a normal run, a forced overflow skipped and recovered
from, the loss scale carried through a checkpoint resume, in pre-training and post-training;
and config errors naming the key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ablate.core.checkpoint import read_checkpoint
from ablate.core.config import load_config
from ablate.core.trainer import train
from components.precision.fp16 import FP16
from tests.conftest import REPO, TINY_RUN

CPU = torch.device("cpu")
TINY = REPO / "sweeps" / "base" / "tiny.yaml"
STEPS = 12
OVERRIDES = [
    *TINY_RUN,
    f"train.steps={STEPS}",
    "train.checkpoint_every=6",
    "train.eval_every=6",
    "train.warmup_steps=3",
    "train.log_every=1",
    "train.threads=1",
    "train.precision.name=fp16",
]


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
