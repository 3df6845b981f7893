"""Triton kernels, each file: kernel(s) + checked launcher + plain-PyTorch reference."""
