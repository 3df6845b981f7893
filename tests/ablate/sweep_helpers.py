"""Helpers for the sweep/ledger/launch/report tests: tiny sweep files in a temp directory."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import REPO

TINY = REPO / "sweeps" / "base" / "tiny.yaml"
# Every trial of these tests trains a 1-layer width-32 model for a few steps (well under 1 s).
FAST = {
    "model.dim": 32,
    "model.num_layers": 1,
    "data.batch_size": 4,
    "data.seq_len": 32,
    "data.dataset.max_chars": 50000,
    "data.eval_windows": 20,
    "train.eval_every": 5,
    "train.log_every": 5,
    "train.checkpoint_every": 5,
    "train.warmup_steps": 2,
    "train.threads": 1,
}


def write_sweep(
    directory: Path,
    *,
    name: str = "t",
    arms: dict | None = None,
    seeds: tuple = (0, 1),
    steps: int = 10,
    baseline: str = "a",
    tracking: str = "disabled",
    **extra,
) -> Path:
    """A sweep file over the tiny base with FAST overrides; returns its path."""
    spec = {
        "name": name,
        "base": str(TINY),
        "seeds": list(seeds),
        "budget": {"steps": steps},
        "baseline": baseline,
        "overrides": dict(FAST),
        "tracking": {"wandb": tracking},
        "arms": arms if arms is not None else {"a": {}, "b": {"model.ffn.hidden_dim": 96}},
        **extra,
    }
    path = Path(directory) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
