"""Peak FLOP/s of known GPUs by device name, the dtype a trial counts against, and MFU."""

from __future__ import annotations

import pytest

from ablate.accounting.peaks import PEAKS, device_peak, gpu_of, mfu, peak_dtype


@pytest.mark.parametrize(
    ("name", "gpu"),
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H800", "h800"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A100-PCIE-40GB", "a100"),  # the A100's PCIe part has the SXM's peaks
        ("NVIDIA H100 PCIe", None),  # lower clocks: not the SXM's peak
        ("NVIDIA H100 NVL", None),
        ("NVIDIA GH200 480GB", None),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_device_names_match_listed_gpus_only(name, gpu):
    assert gpu_of(name) == gpu


def test_the_peak_follows_the_compute_dtype_and_tf32():
    h200 = "NVIDIA H200"
    assert device_peak(h200, "bfloat16", None) == 989.4e12
    assert device_peak(h200, "float16", None) == PEAKS["h200"]["bf16"]
    assert device_peak(h200, "float32", True) == PEAKS["h200"]["tf32"]
    assert device_peak(h200, "float32", False) == PEAKS["h200"]["fp32"]
    assert device_peak("NVIDIA A100-SXM4-80GB", "bfloat16", True) == 312e12
    assert peak_dtype("int8", True) is None
    assert device_peak(h200, None, True) is None  # a precision that states no compute dtype
    assert device_peak(None, "bfloat16", None) is None  # the CPU: no peak is known


def test_mfu_is_achieved_over_peak_and_none_when_either_is_unknown():
    assert mfu(494.7e12, 989.4e12) == pytest.approx(0.5)
    assert mfu(1e12, None) is None
    assert mfu(None, 989.4e12) is None
