"""Shared fixtures: tiny configs that build and train in a fraction of a second."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import pytest
import torch

# Triton chooses interpreted vs compiled at its first import: decide before any test imports it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# `ablate run` without --workers takes as many workers as the cores hold; tests run sweeps in
# this process (monkeypatches reach them) unless they pass --workers themselves.
os.environ.setdefault("ABLATE_WORKERS", "1")

# caches (the `ablate list` text) go to a directory of this test session, not the user's
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ablate-test-cache-")

from ablate.core.config import ModelConfig  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

TINY_MODEL = dict(vocab_size=37, dim=64, num_layers=2, num_heads=4, max_seq_len=32)
# overrides of a seconds-long run of sweeps/base/tiny.yaml: one layer of width 32, a small corpus
TINY_RUN = (
    "model.dim=32",
    "model.num_layers=1",
    "data.batch_size=4",
    "data.seq_len=32",
    "data.dataset.max_chars=50000",
    "data.eval_windows=8",
)


def tiny_model_config(**changes) -> ModelConfig:
    return dataclasses.replace(ModelConfig(**TINY_MODEL), **changes)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
