"""Post-training inside a trial: GRPO raises the reward of a tiny base, resume after a crash
continues bit-identically, rejection sampling and distillation run, identity is unchanged."""

from __future__ import annotations

import json

import pytest
import torch

from ablate.core.config import config_hash, load_config
from ablate.core.trainer import train
from ablate.posttrain.stage import POST_CHECKPOINT, final_weights
from tests.conftest import REPO

BASE = REPO / "sweeps" / "base" / "addition.yaml"
TINY = [
    "model.dim=64",
    "model.num_layers=2",
    "data.dataset.num_digits=2",
    "data.dataset.num_train=2000",
    "train.steps=150",
    "train.eval_every=150",
    "tracking.wandb=disabled",
    "post.max_new_tokens=56",
    "post.eval_prompts=16",
    "post.eval_samples=2",
]


def _rows(out) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "post_step" in r]


def _evals(out) -> list[dict]:
    return [r for r in _rows(out) if "post_val_pass1" in r]


def test_grpo_raises_the_reward_of_a_tiny_base(tmp_path):
    stages = "post.stages=[{name: grpo, steps: 12, batch_size: 4, group_size: 6, lr: 1e-3}]"
    cfg = load_config(
        BASE, [*TINY, "data.dataset.trace_fraction=0.2", stages, "post.eval_every=12"]
    )
    summary = train(cfg, tmp_path)
    first, last = _evals(tmp_path)[0], _evals(tmp_path)[-1]
    assert first["post_step"] == 0 and last["post_step"] == 12
    # the base formats a fifth of its answers; the format reward pulls that up
    assert last["post_val_format_frac"] > first["post_val_format_frac"] + 0.2
    assert last["post_val_reward"] > first["post_val_reward"]
    steps = [r for r in _rows(tmp_path) if "post_reward" in r]
    assert len(steps) == 6  # one sampled batch per mu = 2 updates
    for key in ("post_accuracy", "post_response_len", "post_format_frac", "post_kl"):
        assert all(key in r for r in steps)
    assert summary["metrics"]["post_val_pass1"] == last["post_val_pass1"]
    assert summary["metrics"]["post_steps"] == 12


def test_a_crash_in_post_training_resumes_bit_identically(tmp_path, monkeypatch):
    import components.posttrain.grpo as grpo

    over = [
        *TINY,
        "train.steps=40",
        "post.stages=[{name: sft, steps: 3, batch_size: 4}, "
        "{name: grpo, steps: 4, batch_size: 2, group_size: 3}]",
        "post.checkpoint_every=2",
        "post.eval_every=3",
    ]
    cfg = load_config(BASE, over)
    train(cfg, tmp_path / "whole")
    real, calls = grpo.GRPO.step, []

    def crash_once(self, step):
        calls.append(step)
        if len(calls) == 2:  # post step 5: after the checkpoint at post step 4
            raise RuntimeError("simulated crash")
        return real(self, step)

    monkeypatch.setattr(grpo.GRPO, "step", crash_once)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "crashed")
    pre = (tmp_path / "crashed" / "model.safetensors").read_bytes()
    train(cfg, tmp_path / "crashed")  # resumes: pre-training checkpoint, then post step 4
    assert (tmp_path / "crashed" / "model.safetensors").read_bytes() == pre  # untouched
    a, b = final_weights(tmp_path / "whole"), final_weights(tmp_path / "crashed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "post_grad_norm"} for r in rows]  # noqa: E731
    assert strip(_rows(tmp_path / "whole")) == strip(_rows(tmp_path / "crashed"))


@pytest.mark.slow
def test_rejection_sampling_then_distillation_into_a_student(tmp_path):
    one_digit = [*TINY, "data.dataset.num_digits=1", "train.steps=300", "post.max_new_tokens=40"]
    rs = "post.stages=[{name: rejection_sampling_sft, steps: 3, num_prompts: 16, batch_size: 4}]"
    teacher = load_config(BASE, [*one_digit, "data.dataset.trace_fraction=1.0", rs])
    train(teacher, tmp_path / "teacher")
    kept = [r["post_pool_size"] for r in _rows(tmp_path / "teacher") if "post_pool_size" in r]
    assert kept and kept[0] > 0
    distill = (
        "post.stages=[{name: distill, steps: 6, num_prompts: 16, batch_size: 8, "
        f"teacher: '{tmp_path / 'teacher'}'}}]"
    )
    student = load_config(
        BASE,
        [*one_digit, "data.dataset.trace_fraction=1.0", "train.steps=0", "model.dim=32", distill],
    )
    train(student, tmp_path / "student")
    losses = [r["post_loss"] for r in _rows(tmp_path / "student") if "post_loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert (tmp_path / "student" / POST_CHECKPOINT).exists()


def test_identity_counts_post_only_when_a_stage_trains():
    base = load_config(BASE, TINY)
    none = load_config(BASE, [*TINY, "post.stages=[none]", "post.eval_every=3"])
    grpo = load_config(BASE, [*TINY, "post.stages=[{name: grpo, steps: 5}]"])
    grpo_eval = load_config(
        BASE, [*TINY, "post.stages=[{name: grpo, steps: 5}]", "post.eval_every=3"]
    )
    assert config_hash(base) == config_hash(none)
    assert config_hash(grpo) != config_hash(base)
    assert config_hash(grpo) == config_hash(grpo_eval)  # evaluation cadence is operational
