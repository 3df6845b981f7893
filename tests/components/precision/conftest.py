"""Precision tests may run the FP8 Triton kernels: use Triton's interpreter without CUDA.

Triton picks interpreted vs compiled when `triton` is first imported, so the variable must be
set before anything imports triton (the fp8_block component imports the kernels lazily).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
