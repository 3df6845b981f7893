"""Ladder report: trained end to end, the compute chart, fits, sentences and results.csv columns."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

from ablate.report import html as report
from ablate.report.ladder import ladder_section
from ablate.report.powerlaw import fit
from ablate.study import launch
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep

ARMS = {"a": {}, "b": {"model.ffn.hidden_dim": 64}}  # a: 8/3 D rounded up to 32s
RUNGS = {"w32": {}, "w48": {"model.dim": 48}, "w64": {"scale.width": 2}}


def test_ladder_sweep_trains_and_reports_loss_against_compute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, arms=ARMS, ladder=RUNGS, steps=4))
    assert launch.run_sweep(sweep) == 0
    html = report.render(sweep.run_dir, sweep.report_dir).read_text()
    assert 'id="ladder"' in html and "Validation loss vs training compute" in html
    # the ladder chart is one more figure than the plain sweep's report draws
    assert html.count('<img alt="Validation loss vs training compute"') == 1
    png = html.split('alt="Validation loss vs training compute" src="data:image/png;base64,')[1]
    assert base64.b64decode(png.split('"', 1)[0]).startswith(b"\x89PNG")
    assert (
        "t-test against <b>a at the arm's own rung</b> is Holm-corrected over the\n3 arm(s)" in html
    )
    with (sweep.report_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["scale"] for r in rows} == {"w32", "w48", "w64"}
    trials_table = html.split("<h3>Trials</h3>")[1]
    assert '<th class="l">scale</th>' in trials_table and trials_table.count(">w48</td>") == 4
    assert f"<td>{float(rows[0]['train_flops']):.4g}</td>" in trials_table
    flops = {}
    for r in rows:
        summary = json.loads((Path(r["path"]) / "summary.json").read_text())
        assert float(r["train_flops"]) == summary["train_flops"] > 0
        flops.setdefault(r["arm"], set()).add(summary["train_flops"])
    assert all(len(v) == 1 for v in flops.values())  # seeds of a cell train the same compute
    c = {arm: v.pop() for arm, v in flops.items()}
    assert c["a@w32"] < c["a@w48"] < c["a@w64"]  # wider: more compute
    assert c["b@w32"] < c["a@w32"]  # a narrower FFN: less compute at the same width


def test_ladder_section_fits_each_arm_over_every_seed_point():
    meta = {
        "baseline": "m@s",
        "report": {
            "ladder": {
                "rungs": ["s", "l"],
                "arms": ["m", "x"],
                "baseline": "m",
                "cells": {
                    "m@s": ["m", "s"],
                    "x@s": ["x", "s"],
                    "m@l": ["m", "l"],
                    "x@l": ["x", "l"],
                },
            }
        },
    }
    loss = {"m@s": (3.0, 3.1), "x@s": (2.9, 3.0), "m@l": (2.5, 2.6), "x@l": (2.3, 2.4)}
    compute = {"m@s": 1e12, "x@s": 1.1e12, "m@l": 1e13, "x@l": 1.1e13}
    trials = [
        {
            "arm": a,
            "seed": s,
            "state": "done",
            "metrics": {},
            "summary": {"val_loss": v, "train_flops": compute[a]},
        }
        for a, vs in loss.items()
        for s, v in enumerate(vs)
    ]
    trials.append({"arm": "x@l", "seed": 2, "state": "failed", "metrics": {}, "summary": {}})
    section = ladder_section(meta, trials)
    want = fit([(compute[a], v) for a in ("x@s", "x@l") for v in loss[a]])
    row = section["rows"][1]
    assert row["arm"] == "x" and row["b"].startswith(f"{want.b:.4g} ± ")
    assert row["cells"] == ["2.95 at 1.1e+12 (2)", "2.35 at 1.1e+13 (2)"]
    assert len(section["sentences"]) == 1 and section["sentences"][0].startswith("x: fitted loss")
    assert "1.1e+13 FLOPs" in section["sentences"][0] and section["png"]
    assert ladder_section({"baseline": "m", "report": {}}, trials) == {}


def test_speed_claims_compare_each_arm_with_the_baseline_at_its_rung():
    from ablate.report.speed import claims

    def tps(median):
        return {"tokens_per_s": {"median": median, "q1": median - 1, "q3": median + 1, "n": 5}}

    entries = {"m@s": tps(100.0), "x@s": tps(50.0), "m@l": tps(20.0), "x@l": tps(40.0), "y@l": {}}
    entries = {a: {**e, "decode": {}} for a, e in entries.items() if e}
    lines = claims(entries, {"x@s": "m@s", "x@l": "m@l", "y@l": "m@l"}, [])
    assert lines == [
        "training speed: m@s 2.00x faster than x@s (outside measurement spread ±2.0%)",
        "training speed: x@l 2.00x faster than m@l (outside measurement spread ±5.0%)",
    ]
