"""Micro-benchmarks (pytest-benchmark): `pytest benchmarks --benchmark-only --benchmark-autosave`
saves a baseline under .benchmarks/; `--benchmark-compare` shows a later run against it.
The default `pytest` (testpaths = tests) does not collect this folder."""

from __future__ import annotations

import os

import pytest
import torch

# Triton chooses interpreted vs compiled at its first import: decide before anything imports it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared machine it is the least noisy, comparable figure."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
