"""Trainer: golden loss curve, bit-identical resume after SIGKILL, divergence, outputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.core.config import load_config, replace
from ablate.core.trainer import lr_at, train
from tests.conftest import REPO

TINY = REPO / "sweeps" / "base" / "tiny.yaml"
GOLDEN = json.loads((Path(__file__).parent / "golden_tiny.json").read_text())
FAST = [
    "model.dim=32",
    "model.num_layers=1",
    "data.batch_size=4",
    "data.seq_len=32",
    "data.dataset.max_chars=50000",
    "data.eval_windows=20",
]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_golden_tiny_curve(tmp_path):
    summary = train(load_config(TINY), tmp_path)
    if summary["data"]["sha256"] != GOLDEN["sha256"]:
        pytest.skip(
            f"embedded corpus differs (Python {summary['data']['python']} vs "
            f"{GOLDEN['python']}); the golden curve pins {GOLDEN['python']}"
        )
    got = {str(r["step"]): r["loss"] for r in rows(tmp_path) if "loss" in r}
    for step, want in GOLDEN["loss"].items():
        assert got[step] == pytest.approx(want, rel=1e-4), step
    assert summary["val_loss"] == pytest.approx(GOLDEN["val_loss"]["100"], rel=1e-4)
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"):
        assert (tmp_path / name).exists()
    for key in (
        "status",
        "val_loss",
        "val_ppl",
        "tokens_per_s",
        "num_params",
        "steps",
        "seed",
        "config_hash",
        "git_rev",
        "versions",
    ):
        assert summary[key] is not None, key


KILL_SCRIPT = """
import os, signal, sys
from ablate.core.config import load_config, replace
from ablate.core.trainer import train
cfg = load_config(sys.argv[1], sys.argv[3:])
def kill(record):
    if record.get("step") == int(sys.argv[2]) and "loss" in record:
        os.kill(os.getpid(), signal.SIGKILL)
train(cfg, "{out}", callbacks=[kill])
"""


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    overrides = [
        *FAST,
        "train.steps=60",
        "train.checkpoint_every=20",
        "train.eval_every=30",
        "train.log_every=5",
    ]
    straight = tmp_path / "straight"
    train(load_config(TINY, overrides), straight)
    killed = tmp_path / "killed"
    script = KILL_SCRIPT.replace("{out}", str(killed))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(TINY), "35", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -9, proc.stderr  # died by SIGKILL mid-run, after step 20's ckpt
    assert not (killed / "summary.json").exists()
    cli = subprocess.run(
        [sys.executable, "-m", "ablate", "train", str(TINY), *overrides, "--out", str(killed)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    a, b = rows(straight), rows(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "val_loss"):
            assert ra.get(key) == rb.get(key), (ra["step"], key)
    assert json.loads((killed / "summary.json").read_text())["resumed_from"] == 20


def test_huge_learning_rate_ends_as_diverged(tmp_path):
    cfg = load_config(
        TINY, [*FAST, "train.lr=50", "train.steps=60", "train.warmup_steps=2", "train.grad_clip=0"]
    )
    summary = train(cfg, tmp_path)
    assert summary["status"] == "diverged"
    assert "loss" in summary["reason"]
    assert summary["steps"] < 60
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_lr_schedule_warmup_then_cosine():
    tc = load_config(
        TINY, ["train.steps=100", "train.warmup_steps=10", "train.lr=1.0", "train.min_lr=0.1"]
    ).train
    assert lr_at(5, tc) == pytest.approx(0.5)
    assert lr_at(10, tc) == pytest.approx(1.0)
    assert lr_at(55, tc) == pytest.approx(0.55)
    assert lr_at(100, tc) == pytest.approx(0.1)


def test_grad_accum_counts_tokens(tmp_path):
    summary = train(load_config(TINY, [*FAST, "train.steps=12", "train.grad_accum=2"]), tmp_path)
    assert summary["status"] == "done" and summary["tokens_per_s"] > 0


def test_ctrl_c_saves_a_checkpoint_at_the_finished_step(tmp_path):
    script = KILL_SCRIPT.replace("{out}", str(tmp_path)).replace("SIGKILL", "SIGINT")
    overrides = [*FAST, "train.steps=60", "train.checkpoint_every=50", "train.log_every=5"]
    proc = subprocess.run(
        [sys.executable, "-c", script, str(TINY), "25", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "checkpoint saved" in proc.stderr
    import torch

    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 25


def test_resume_at_the_last_step_keeps_results(tmp_path):
    cfg = load_config(TINY, [*FAST, "train.steps=10", "train.eval_every=5"])
    first = train(cfg, tmp_path)
    (tmp_path / "summary.json").unlink()  # killed after the last checkpoint, before the summary
    again = train(cfg, tmp_path)
    for key in ("val_loss", "val_ppl", "train_loss", "tokens_per_s"):
        assert again[key] == first[key], key
    with pytest.raises(ValueError, match="belongs to config"):
        train(load_config(TINY, [*FAST, "train.steps=10", "train.seed=5"]), tmp_path)


def test_summary_keeps_the_last_logged_component_metrics(tmp_path):
    cfg = load_config(TINY, [*FAST, "train.steps=10", "train.log_every=5"])
    summary = train(cfg, tmp_path)
    last = [r for r in rows(tmp_path) if "loss" in r][-1]
    assert summary["metrics"]["kv_cache_bytes_per_token"] == last["kv_cache_bytes_per_token"]
    resumed = train(cfg, tmp_path)  # resuming at the end reads them back from metrics.jsonl
    assert resumed["metrics"]["kv_cache_bytes_per_token"] == last["kv_cache_bytes_per_token"]


def test_nan_validation_loss_marks_the_trial_diverged(tmp_path, monkeypatch):
    """A NaN evaluation is divergence, and a diverged trial reports no validation result."""
    from ablate.core import trainer

    real, calls = trainer.evaluate, []

    def nan_second_time(*args):
        calls.append(1)
        out = real(*args)
        return {**out, "val_loss": math.nan} if len(calls) == 2 else out

    monkeypatch.setattr(trainer, "evaluate", nan_second_time)
    cfg = load_config(TINY, [*FAST, "train.steps=10", "train.eval_every=5"])
    summary = train(cfg, tmp_path)
    evals = [r for r in rows(tmp_path) if "val_loss" in r]
    assert [r["step"] for r in evals] == [5, 10] and math.isnan(evals[1]["val_loss"])
    assert summary["status"] == "diverged" and "validation loss at step 10" in summary["reason"]
    assert summary["val_loss"] is None and summary["val_ppl"] is None
    assert "val_loss" not in summary["metrics"]


def test_summary_records_training_flops(tmp_path):
    """Per-token training FLOPs equal a FLOP counter over one real forward + backward."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ablate.accounting.flops import flop_counter
    from ablate.core.model import Transformer

    cfg = load_config(TINY, [*FAST, "train.steps=3", "train.grad_accum=2"])
    summary = train(cfg, tmp_path)
    B, T = cfg.data.batch_size, cfg.data.seq_len
    assert summary["train_flops"] == summary["train_flops_per_token"] * 3 * 2 * B * T
    model = Transformer(replace(cfg.model, vocab_size=summary["vocab_size"]))
    idx_BT = torch.randint(0, summary["vocab_size"], (B, T + 1))
    with sdpa_kernel(SDPBackend.MATH), flop_counter() as fc:
        model(idx_BT[:, :-1], idx_BT[:, 1:])[1].backward()
    assert summary["train_flops_per_token"] == pytest.approx(
        fc.get_total_flops() / (B * T), rel=1e-9
    )
