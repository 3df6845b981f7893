"""Peak memory per trial: trials run in one process each report their own peak, named by how it
was measured; the fallback says it is not per trial; the report column says what it shows."""

from __future__ import annotations

import pytest
import torch

from ablate.core import memory
from ablate.core.config import load_config
from ablate.core.trainer import train
from ablate.report.labels import label
from ablate.report.table import ablation_table
from tests.conftest import REPO

TINY = REPO / "sweeps" / "base" / "tiny.yaml"
COMMON = [
    "train.steps=2",
    "train.warmup_steps=1",
    "train.eval_every=2",
    "train.log_every=1",
    "train.checkpoint_every=0",
    "data.dataset.max_chars=50000",
    "data.eval_windows=4",
    "model.num_layers=1",
    "tracking.wandb=disabled",
]
# activations of 64 x 256 tokens at width 128 against 2 x 16 at width 32: measured here, the big
# trial's peak RSS is ~780 MiB and the small one's ~400 MiB (interpreter and torch included)
BIG = ["model.dim=128", "data.batch_size=64", "data.seq_len=256", "model.max_seq_len=256"]
SMALL = ["model.dim=32", "data.batch_size=2", "data.seq_len=16", "model.max_seq_len=16"]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
]


def _peak(summary: dict) -> tuple[str, float]:
    [key] = memory.recorded([summary])  # exactly one figure per trial
    return key, summary[key]


@pytest.mark.parametrize("device", DEVICES)
def test_later_smaller_trial_reports_its_own_peak(tmp_path, device):
    if device == "cpu" and not memory.PeakMemory.start().rss_reset:
        pytest.skip("this kernel cannot reset the peak RSS (/proc/self/clear_refs)")
    dev = [f"train.device={device}"]
    big = train(load_config(TINY, COMMON + BIG + dev), tmp_path / "big")
    small = train(load_config(TINY, COMMON + SMALL + dev), tmp_path / "small")
    want = memory.GPU_KEY if device == "cuda" else memory.TRIAL_RSS_KEY
    (big_key, big_mb), (small_key, small_mb) = _peak(big), _peak(small)
    assert big_key == small_key == want
    # a process-lifetime high-water mark would give small_mb >= big_mb
    assert 0 < small_mb < big_mb


def test_without_a_reset_the_figure_is_named_process_wide(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "absent" / "clear_refs")
    meter = memory.PeakMemory.start()
    assert not meter.rss_reset
    [(key, mib)] = meter.summary(torch.device("cpu")).items()
    assert key == memory.PROCESS_RSS_KEY and mib > 0
    assert "not per trial" in label(key)


def test_a_reset_that_leaves_the_old_peak_is_not_trusted(tmp_path, monkeypatch):
    status = tmp_path / "status"
    status.write_text("VmHWM:\t  900000 kB\nVmRSS:\t  400000 kB\n")  # peak left at 900 MB
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "clear_refs")
    monkeypatch.setattr(memory, "STATUS", status)
    assert not memory.PeakMemory.start().rss_reset


def test_labels_say_what_was_measured():
    assert label(memory.GPU_KEY) == "peak allocated, GPU (MiB)"
    assert label(memory.TRIAL_RSS_KEY) == "peak RSS during the trial (MiB)"
    assert label(memory.PROCESS_RSS_KEY) == "peak RSS of the process, not per trial (MiB)"


def test_report_table_has_the_memory_column():
    cfg = {"model": {"attention": {"name": "mha"}}}
    trials = [
        {
            "arm": arm,
            "seed": 0,
            "state": "done",
            "trial_id": arm,
            "config": cfg,
            "overrides": {},
            "metrics": {},
            "summary": {"val_loss": 2.0, memory.TRIAL_RSS_KEY: mib, "metrics": {}},
        }
        for arm, mib in (("base", 500.0), ("other", 700.0))
    ]
    meta = {"arms": ["base", "other"], "baseline": "base"}
    table = ablation_table(meta, trials)
    col = table["metric_cols"].index(memory.TRIAL_RSS_KEY)
    assert table["metric_labels"][col] == "peak RSS during the trial (MiB)"
    assert [r["metrics"][col] for r in table["rows"]] == ["500", "700"]
