"""The summary's compute figures (ablate.core.throughput): activated parameters, FLOPs per
token, achieved FLOP/s from the summary's own throughput, MFU only where a peak is known."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ablate.accounting.flops import trial_flops
from ablate.accounting.peaks import PEAKS
from ablate.core import throughput
from ablate.core.config import load_config, replace
from ablate.core.trainer import train
from tests.ablate.test_trainer import FAST, TINY

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(scope="module")
def cpu_summary(tmp_path_factory):
    cfg = load_config(TINY, [*FAST, "train.steps=10"])
    return train(cfg, tmp_path_factory.mktemp("cpu"))


def test_achieved_flops_per_s_is_flops_per_token_times_tokens_per_s(cpu_summary):
    s = cpu_summary
    assert s["tokens_per_s"] > 0 and s["train_flops_per_token"] > 0
    assert s["achieved_flops_per_s"] == pytest.approx(
        s["train_flops_per_token"] * s["tokens_per_s"], rel=1e-12
    )
    assert s["activated_params"] > 0


def test_no_mfu_on_the_cpu(cpu_summary):
    assert cpu_summary["device"] == "cpu"
    assert cpu_summary["peak_flops_per_s"] is None and cpu_summary["mfu"] is None


def test_mfu_against_a_known_peak(tmp_path, monkeypatch):
    monkeypatch.setattr(throughput, "device_name", lambda device: H100)
    s = train(load_config(TINY, [*FAST, "train.steps=10"]), tmp_path)
    # fp32 compute, TF32 not applicable off CUDA: the CUDA-core fp32 peak
    assert s["peak_flops_per_s"] == PEAKS["h100"]["fp32"]
    assert s["mfu"] == pytest.approx(s["achieved_flops_per_s"] / PEAKS["h100"]["fp32"])


def test_peak_and_mfu_cover_every_rank_in_bf16(monkeypatch):
    monkeypatch.setattr(throughput, "device_name", lambda device: H100)
    cfg = load_config(TINY, [*FAST, "model.vocab_size=100"])
    run = SimpleNamespace(
        cfg=cfg,
        model=SimpleNamespace(cfg=cfg.model),
        precision=SimpleNamespace(summary=lambda: {"compute_dtype": "bfloat16"}),
        runtime={"tf32": True},
        device="cuda:0",
        ranks=SimpleNamespace(world=4),
    )
    got = throughput.figures(run, tokens=1000, tokens_per_s=2e6)
    counted = trial_flops(replace(cfg, model=cfg.model), 1000)
    assert got["train_flops"] == counted["train_flops"]
    assert got["achieved_flops_per_s"] == counted["train_flops_per_token"] * 2e6
    assert got["peak_flops_per_s"] == 4 * PEAKS["h100"]["bf16"]
    assert got["mfu"] == pytest.approx(got["achieved_flops_per_s"] / (4 * 989.4e12))


def test_no_throughput_when_no_step_was_timed(tmp_path):
    s = train(load_config(TINY, [*FAST, "train.steps=3"]), tmp_path)  # all within TIMING_SKIP
    assert s["tokens_per_s"] is None
    assert s["achieved_flops_per_s"] is None and s["mfu"] is None
