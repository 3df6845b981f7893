"""Resume in-process: a trial stopped at its checkpoint and resumed continues from the
checkpoint's step with its optimizer state, bit-identical to a run that never stopped.

The SIGKILL test in test_trainer.py covers a real crash through the CLI; this one is direct
and fast, and also checks what was restored (step counter, AdamW moments).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ablate.core.checkpoint import read_checkpoint
from ablate.core.config import load_config
from ablate.core.trainer import train
from tests.conftest import REPO, TINY_RUN

TINY = REPO / "sweeps" / "base" / "tiny.yaml"
STOP, STEPS = 6, 12  # checkpoint and stop at STOP, resume to STEPS
OVERRIDES = [
    *TINY_RUN,
    f"train.steps={STEPS}",
    f"train.checkpoint_every={STOP}",
    f"train.eval_every={STOP}",
    "train.warmup_steps=3",
    "train.log_every=1",
    "train.threads=1",
]


def _losses(out: Path) -> list[tuple[int, float | None, float | None]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in rows]


def _checkpoint(out: Path) -> dict:
    """The checkpoint with its weights (model.safetensors beside it)."""
    ckpt_hash = torch.load(out / "checkpoint.pt", weights_only=False)["config_hash"]
    return read_checkpoint(out / "checkpoint.pt", ckpt_hash, torch.device("cpu"))


def test_resume_continues_from_the_checkpoint_bit_for_bit(tmp_path):
    cfg = load_config(TINY, OVERRIDES)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(cfg, straight)
    assert train(cfg, resumed, stop_after=STOP)["status"] == "stopped"
    assert _checkpoint(resumed)["step"] == STOP
    stopped_opt = _checkpoint(resumed)["optimizer"]["state"]
    assert stopped_opt and all(s["step"] == STOP for s in stopped_opt.values())

    steps_seen: list[int] = []
    summary = train(cfg, resumed, callbacks=[lambda r: steps_seen.append(r.get("step"))])
    assert summary["resumed_from"] == STOP
    assert steps_seen[0] == STOP + 1  # the first step run after resuming
    assert _losses(resumed) == _losses(straight)  # every loss, exactly, each step once

    want, got = _checkpoint(straight), _checkpoint(resumed)
    assert got["step"] == want["step"] == STEPS
    for key, tensor in want["model"].items():
        assert torch.equal(got["model"][key], tensor), key
    # AdamW state continued from the checkpoint: STEPS updates counted, same moments
    for idx, state in want["optimizer"]["state"].items():
        mine = got["optimizer"]["state"][idx]
        assert mine["step"] == state["step"] == STEPS
        assert torch.equal(mine["exp_avg"], state["exp_avg"])
        assert torch.equal(mine["exp_avg_sq"], state["exp_avg_sq"])
