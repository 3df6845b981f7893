"""The report's layout rules: metric labels with units, common settings, resolved configs."""

from __future__ import annotations

import pytest

from ablate.report.html import resolved_configs
from ablate.report.labels import label, move_common


@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("kv_cache_bytes_per_token", "KV cache (bytes / token)"),
        ("kv_cache_bytes_per_token_per_layer", "KV cache (bytes / token / layer)"),
        ("kv_cache_bf16_bytes_per_token", "KV cache BF16 (bytes / token)"),
        ("peak_rss_trial_mb", "peak RSS during the trial (MiB)"),
        ("maxvio_global", "MaxVio global"),
        ("loss/aux", "loss: aux"),
        ("tokens_per_s", "train throughput (tokens / s)"),
        ("s", "s"),  # a unit word alone stays the name
    ],
)
def test_labels_name_the_unit(key, want):
    assert label(key) == want


def _row(values, metrics, params="1,000", precision=""):
    return {"values": values, "metrics": metrics, "num_params": params, "precision": precision}


def test_columns_equal_in_every_row_move_to_common_settings():
    table = {
        "value_cols": ["train.lr", "model.dim"],
        "metric_cols": ["kv_bytes", "maxvio"],
        "metric_labels": ["KV (bytes)", "MaxVio"],
        "rows": [_row(["0.001", "64"], ["256", "1.0"]), _row(["0.002", "64"], ["256", "2.0"])],
        "show_params": True,
        "show_precision": False,
    }
    out = move_common(table)
    assert out["value_cols"] == ["train.lr"] and out["metric_cols"] == ["maxvio"]
    assert out["metric_labels"] == ["MaxVio"]
    assert out["rows"][1]["values"] == ["0.002"] and out["rows"][1]["metrics"] == ["2.0"]
    assert out["rows"][0]["settings"] == [("train.lr", "0.001")]
    assert out["common"] == [("model.dim", "64"), ("KV (bytes)", "256"), ("parameters", "1,000")]
    assert not out["show_params"]


def test_one_row_keeps_every_column():
    table = {
        "value_cols": ["a"],
        "metric_cols": [],
        "metric_labels": [],
        "rows": [_row(["1"], [])],
        "show_params": True,
        "show_precision": False,
    }
    assert move_common(dict(table))["common"] == [] and table["value_cols"] == ["a"]


def test_resolved_configs_are_the_trials_own():
    cfg = {"model": {"dim": 64}, "train": {"steps": 30, "seed": 0}}
    other = {"model": {"dim": 96}, "train": {"steps": 30, "seed": 1}}
    trials = [{"arm": "a", "config": cfg}, {"arm": "b", "config": other}]
    (arm_a, full), (arm_b, diff) = resolved_configs({"arms": ["a", "b"], "baseline": "a"}, trials)
    assert (arm_a, arm_b) == ("a", "b")
    assert "steps: 30" in full and "dim: 64" in full
    assert diff.strip() == "model.dim: 96"


def test_pareto_front_by_hand():
    from ablate.report.charts_study import pareto

    # (cost, perplexity): (3, 9) is beaten by (2, 8); (1, 10) and (2, 8) and (4, 7) are not
    pts = [(1.0, 10.0), (2.0, 8.0), (3.0, 9.0), (4.0, 7.0)]
    assert pareto(pts, higher_x_better=False) == [0, 1, 3]
    # throughput (higher better): (4, 7) beats everything with a higher perplexity
    assert pareto(pts, higher_x_better=True) == [3]
    assert pareto([(1.0, 1.0), (1.0, 1.0)], False) == [0, 1]  # ties beat nobody


def test_loss_curves_use_tokens_and_training_time():
    from ablate.report.charts_study import _series

    trial = {
        "config": {"data": {"batch_size": 4, "seq_len": 8}, "train": {"grad_accum": 2}},
        "records": [
            {"step": 10, "loss": 3.0, "train_s": 1.5},
            {"step": 10, "val_loss": 2.9, "train_s": 1.5},
            {"step": 20, "loss": float("nan"), "train_s": 3.0},
        ],
    }
    assert _series(trial, "loss", "tokens") == {10: (640.0, 3.0)}
    assert _series(trial, "val_loss", "train_s") == {10: (1.5, 2.9)}
