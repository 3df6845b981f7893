"""Report: ablation-table columns and statistics, escaping, self-contained HTML, results.csv."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
from pathlib import Path

import pytest
from scipy import stats as sps

from ablate.report import html as report
from ablate.report.speed import FORMAT, SPEED_FILE, summarize
from ablate.report.table import ablation_table
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep

BASE_PPL = {0: 10.0, 1: 11.0, 2: 12.0}
MLA_PPL = {0: 9.0, 1: 10.5, 2: 10.6}
EVIL = "x<script>alert('hi')</script>"


def _trial(arm, seed, attention, ppl, kv_bytes, state="done"):
    att = {"name": attention, **({"kv_lora_rank": 64} if attention == "mla" else {})}
    return {
        "arm": arm,
        "seed": seed,
        "state": state,
        "metrics": {},
        "records": [],
        "overrides": {
            "model.attention.name": attention,
            **({"model.attention.kv_lora_rank": 64} if attention == "mla" else {}),
        },
        "config": {
            "model": {"dim": 64, "attention": att, "norm": {"name": "rmsnorm"}},
            "train": {"seed": seed, "lr": 0.001 if attention == "mha" else 0.002},
        },
        "summary": {
            "val_ppl": ppl,
            "val_loss": 1 + ppl / 100,
            "tokens_per_s": 1000.0 + seed,
            "num_params": 123456,
            "precision": {"backend": "torch"},
            "metrics": {"kv_bytes_per_token": kv_bytes, "expert_load/3": 0.5, "val_loss": 2.0},
        },
    }


def test_ablation_table_columns_and_statistics():
    trials = [_trial("mha", s, "mha", p, 512.0) for s, p in BASE_PPL.items()]
    trials += [_trial("mla", s, "mla", p, 160.0) for s, p in MLA_PPL.items()]
    trials.append(_trial("mla", 3, "mla", 99.0, 160.0, state="diverged"))  # not in the stats
    table = ablation_table({"arms": ["mha", "mla"], "baseline": "mha"}, trials)
    assert table["component_cols"] == ["attention: mha", "attention: mla"]
    assert table["value_cols"] == ["model.attention.kv_lora_rank", "train.lr"]
    assert table["metric_cols"] == ["kv_bytes_per_token"]  # no family key, no duplicate val_loss
    base, mla = table["rows"]
    assert (base["components"], mla["components"]) == ([True, False], [False, True])
    assert base["values"] == ["—", "0.001"] and mla["values"] == ["64", "0.002"]
    base_loss = [1 + v / 100 for v in BASE_PPL.values()]
    mla_loss = [1 + v / 100 for v in MLA_PPL.values()]
    half = sps.t.ppf(0.975, 2) * 0.01 / 3**0.5  # sd of 1.10, 1.11, 1.12 is 0.01
    assert base["val_loss"] == f"1.11 ± {half:.2g}"
    assert base["val_ppl"].startswith(f"{math.exp(1.11):.4g} [")  # exp of the mean loss
    assert (base["delta"], base["seeds"], mla["seeds"]) == ("baseline", "3/3", "3/4")
    assert mla["excluded"] == "seed 3: diverged" and base["excluded"] == ""
    # the test, the difference and its interval: all on per-seed validation loss
    p = sps.ttest_rel(mla_loss, base_loss).pvalue
    diffs = [m - b for m, b in zip(mla_loss, base_loss)]
    d = sum(diffs) / 3
    assert mla["delta"].startswith(f"{d:+.4g} ± ")
    assert mla["p"] == f"p={p:.3g}" and mla["significant"] == (p < 0.05)
    assert mla["gap"].startswith(f"{100 * math.expm1(d):+.3g} % [")
    assert (base["metrics"], mla["metrics"]) == (["512"], ["160"])  # no spread, no "± 0"
    assert base["num_params"] == "123,456" and mla["precision"] == "torch"


def _fake_outputs(path: Path, seed: int, arm_index: int) -> dict:
    path.mkdir(parents=True, exist_ok=True)
    records = []
    for step in (5, 10):
        row = {"step": step, "loss": 3.0 - step / 10, "tokens_per_s": 900.0 + seed}
        row.update({f"expert_load/{i}": (i + step + arm_index) / 10 for i in range(4)})
        records += [row, {"step": step, "val_loss": 2.5 - step / 20 + seed / 50}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "status": "done",
        "reason": "",
        "val_loss": 2.0 + seed / 50 - arm_index / 10,
        "val_ppl": 7.0 + seed / 10 - arm_index,
        "tokens_per_s": 900.0 + seed,
        "num_params": 1000 + arm_index,
        "precision": {"backend": "fake<fp8>", "quant_error": {"w_err": 0.025}},
        "metrics": {"kv_bytes_per_token": 256.0 * (arm_index + 1)},
        "git_rev": "abc123",
        "git_dirty": True,
        "versions": {"torch": "9.9"},
        "hardware": {"cpu": "test-cpu"},
    }
    (path / "summary.json").write_text(json.dumps(summary))
    return summary


def _fake_bench(sweep) -> None:
    """A speed.json as `ablate bench` writes it, for the seed-0 trial of each arm."""
    arms = {}
    for i, t in enumerate(t for t in sweep.trials if t.seed == 0):
        tps = summarize([1000.0 + 10 * i, 1010.0 + 10 * i, 1020.0 + 10 * i])
        step = summarize([1.0, 1.1, 1.2])
        arms[t.arm] = {"trial_id": t.trial_id, "weights": "checkpoint", "tokens_per_s": tps}
        arms[t.arm].update({"step_ms": step, "cpu_step_ms": step, "decode": {}})
    bench = {"format": FORMAT, "arms": arms, "threads": 1, "cpus": 2, "load_before": [0.5] * 3}
    bench.update({"load_after": [0.7] * 3, "spec": {"repetitions": 3, "steps": 1}})
    (sweep.run_dir / SPEED_FILE).write_text(json.dumps(bench))


def test_rendered_report_is_self_contained_and_escaped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(
        write_sweep(
            tmp_path,
            name="rep",
            seeds=(0, 1, 2),
            baseline="a",
            arms={"a": {}, EVIL: {"model.ffn.hidden_dim": 96}},
            report={"title": "<b>Bold & co</b>"},
        )
    )
    ledger = Ledger(sweep.run_dir / "ledger.sqlite")
    ledger.sync(sweep, extra_meta={"base_config": "model: {dim: 32}"})
    for _ in range(len(sweep.trials) - 1):  # the last trial stays pending: a partial sweep
        row = ledger.claim(max_attempts=1)
        if (row["arm"], row["seed"]) == (EVIL, 1):
            ledger.finish(row["trial_id"], "failed", reason="ValueError: <oops> & more")
            continue
        summary = _fake_outputs(Path(row["path"]), row["seed"], int(row["arm"] != "a"))
        ledger.finish(row["trial_id"], "done", metrics=summary)
    ledger.close()
    _fake_bench(sweep)
    html_path = report.render(sweep.run_dir, sweep.report_dir, sweep.report["title"])
    assert html_path == Path("reports/rep/index.html")
    html = html_path.read_text()
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;Bold &amp; co&lt;/b&gt;" in html and "<b>Bold" not in html
    assert "&lt;oops&gt; &amp; more" in html and "fake&lt;fp8&gt;" in html
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]*)""", html)
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"https?:|url\(|<link|@import|//[a-z]", text), "loads from the network"
    # loss curves, per-seed dots, quality vs cost (tokens/s, activated parameters),
    # throughput, expert_load
    assert len(links) == 5
    for link in links:
        assert b"http" not in base64.b64decode(link.split(",", 1)[1])
    assert "expert_load (per index, one colour scale)" in html
    plain = html.replace("<wbr>", "")  # long headers may break after underscores
    for header in (
        "val loss",
        "val ppl = exp(loss)",
        "p (paired, val loss)",
        "&Delta; val ppl vs baseline",
        "training tokens / s (benchmark: median [IQR])",
        "train-loop tokens/s (wall, uncontrolled)",
        "parameters",
        "KV (bytes / token)",  # the label of kv_bytes_per_token, the raw key in its tooltip
        "settings",
    ):
        assert f"<th>{header}" in plain or f">{header}<" in plain, header
    assert 'title="kv_bytes_per_token"' in html
    # the same backend in every arm: on the common-settings line, not a column
    assert "precision backend = fake&lt;fp8&gt;" in html and "<th>precision backend" not in html
    assert "model.ffn.hidden_dim=" in html
    assert 'id="precision"' in html and "quant_error.w_err" in plain and ">0.025<" in html
    assert "abc123 (dirty)" in html and "test-cpu" in html and sweep.trials[0].trial_id in html
    assert "<b>Warning:</b> the code had uncommitted changes" in html
    assert "n=1, no test" in html  # one seed of the second arm finished
    with (sweep.report_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    assert sorted(r["state"] for r in rows) == ["done"] * 4 + ["failed", "pending"]
    done = [r for r in rows if r["state"] == "done"]
    assert all(float(r["kv_bytes_per_token"]) in (256.0, 512.0) for r in done)
    assert {r["arm"] for r in rows} == {"a", EVIL}


def test_report_without_ledger_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no ledger"):
        report.render(tmp_path / "runs" / "none", tmp_path / "out")


def test_row_columns_share_the_seeds_both_arms_finished():
    """An arm that diverges on the hardest seed shows no better mean than the baseline."""
    trials = [_trial("mha", s, "mha", p, 512.0) for s, p in {0: 10.0, 1: 11.0, 2: 30.0}.items()]
    trials += [_trial("mla", s, "mla", p, 160.0) for s, p in {0: 10.5, 1: 11.5}.items()]
    trials.append(_trial("mla", 2, "mla", 99.0, 160.0, state="diverged"))
    nan_trial = _trial("mha", 3, "mha", 10.0, 512.0)
    nan_trial["summary"]["val_loss"] = math.nan  # a NaN result is no result
    trials += [nan_trial, _trial("mla", 3, "mla", 10.0, 160.0)]
    base, mla = ablation_table({"arms": ["mha", "mla"], "baseline": "mha"}, trials)["rows"]
    assert mla["used_seeds"] == [0, 1] and base["used_seeds"] == [0, 1, 2]
    assert mla["excluded"] == "seed 2: diverged; seed 3: baseline non-finite val_loss"
    assert base["excluded"] == "seed 3: non-finite val_loss"
    assert mla["val_loss"].startswith("1.11 ± ")  # seeds 0 and 1 only
    assert mla["delta"].startswith("+0.005 ± ") and "nan" not in mla["gap"]
