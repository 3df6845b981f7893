"""The ablation table's compute columns: activated parameters, FLOPs per token, achieved FLOP/s
and MFU, from each trial's summary; MFU only where a trial recorded one (a known device peak)."""

from __future__ import annotations

from ablate.report.table import ablation_table


def _trials(mfu: float | None) -> list[dict]:
    out = []
    for arm, active, flops in (("mha", 1000, 6.0e3), ("mla", 800, 5.0e3)):
        for seed in (0, 1):
            achieved = flops * (2000 + 100 * seed)
            out.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "state": "done",
                    "trial_id": f"{arm}{seed}",
                    "overrides": {},
                    "config": {"model": {"attention": {"name": arm}}, "train": {"seed": seed}},
                    "summary": {
                        "val_loss": 2.0 + 0.01 * seed,
                        "activated_params": active,
                        "train_flops_per_token": flops,
                        "achieved_flops_per_s": achieved,
                        "mfu": None if mfu is None else achieved / 1e9,
                    },
                    "metrics": {},
                    "attempts": 1,
                    "path": "",
                }
            )
    return out


def test_compute_columns_come_from_the_summary():
    meta = {"arms": ["mha", "mla"], "baseline": "mha", "report": {}}
    table = ablation_table(meta, _trials(mfu=None))
    cols = table["metric_cols"]
    assert cols[:3] == ["activated_params", "train_flops_per_token", "achieved_flops_per_s"]
    assert "mfu" not in cols  # the CPU: no known peak, no column
    assert table["metric_labels"][0] == "activated parameters / token"
    mla = table["rows"][1]["metrics"]
    assert mla[0].startswith("800") and mla[1] == "5,000"
    assert "mfu" in ablation_table(meta, _trials(mfu=1.0))["metric_cols"]
