"""Cost model: DeepSeek-V3's published GPU-hours imply an MFU that reproduces them."""

from __future__ import annotations

import pytest

from ablate.accounting import cost
from ablate.accounting.inspect import inspect
from ablate.cli import main
from ablate.core.config import load_config
from tests.conftest import REPO

V3 = REPO / "sweeps" / "presets" / "deepseek_v3.yaml"
PRETRAIN_HOURS, ALL_HOURS = 2.664e6, 2.788e6  # DeepSeek-V3 README / report Table 1


def test_parse_count():
    assert cost.parse_count("14.8T") == pytest.approx(14.8e12)
    assert cost.parse_count("2.664M") == pytest.approx(2.664e6)
    assert cost.parse_count("300B") == cost.parse_count("3e11")
    with pytest.raises(ValueError, match="not a count"):
        cost.parse_count("14.8X")


def test_v3_hours_imply_an_mfu_that_reproduces_them():
    r = inspect(load_config(V3), tokens=14.8e12, gpu="h800", hours=PRETRAIN_HOURS)
    mfu = r["cost"]["implied_mfu"]
    # 14.8T tokens x ~287 GFLOP/token over 2.664M hours at 989 TFLOP/s: about 45% (BF16 peak)
    assert 0.40 < mfu < 0.50
    again = inspect(load_config(V3), tokens=14.8e12, gpu="h800", mfu=mfu)
    assert again["cost"]["gpu_hours"] == pytest.approx(PRETRAIN_HOURS, rel=1e-12)
    fp8 = inspect(
        load_config(V3), tokens=14.8e12, gpu="h800", peak_dtype="fp8", hours=PRETRAIN_HOURS
    )
    assert fp8["cost"]["implied_mfu"] == pytest.approx(mfu * 989.4 / 1978.9)


def test_price(capsys):
    args = ["inspect", str(V3), "--tokens", "14.8T", "--gpu", "h800", "--gpu-hours", "2.788M"]
    assert main([*args, "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["cost"]["cost"] == pytest.approx(5.576e6)
    assert main([*args[:-2], "--mfu", "1.5"]) == 2  # out of range: a ValueError, exit 2
    assert main([*args[:4], "--gpu", "tpu"]) == 2
