"""Kernel tests run Triton's interpreter on CPU-only machines.

Triton picks interpreted vs compiled when `triton` is first imported (its standard library is
decorated at import time), so the variable must be set before anything imports triton.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
