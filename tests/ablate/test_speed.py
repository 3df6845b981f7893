"""Speed benchmark: interleaving order, median and spread, the refusal to rank, `ablate bench`.

Timing is faked wherever a number is asserted: no test depends on how fast this machine is.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from ablate.cli import main
from ablate.core.config import ConfigError
from ablate.report import speed as rs
from ablate.study import speed as study_speed
from ablate.study.speed import Clock, contexts_for, interleave, schedule
from ablate.study.speed_spec import BenchSpec, bench_spec
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep


class FakeClock:
    """Wall time advances only when work runs; CPU time is half of it (a busy machine)."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> Clock:
        return Clock(wall=lambda: self.now, cpu=lambda: self.now / 2)


def test_arms_are_warmed_up_then_timed_in_interleaved_turns():
    fake, calls = FakeClock(), []
    cost = {"A": 1.0, "B": 2.0, "C": 4.0}

    def work(arm: str) -> None:
        calls.append(arm)
        fake.now += cost[arm]

    out = interleave(["A", "B", "C"], work, BenchSpec(repetitions=3, warmup=1), fake.clock())
    assert calls == ["A", "B", "C"] + ["A", "B", "C"] * 3  # warm-up, then A B C A B C ...
    assert schedule(["A", "B"], 2) == ["A", "B", "A", "B"]
    assert out["B"] == {"wall_s": [2.0] * 3, "cpu_s": [1.0] * 3}  # warm-up not timed
    assert out["C"]["wall_s"] == [4.0] * 3


def test_median_and_spread():
    s = rs.summarize([5.0, 1.0, 100.0, 2.0, 3.0])  # one outlier: the median ignores it
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"], s["n"]) == (3, 2, 5, 1, 100, 5)
    assert rs.summarize([2.0, 4.0])["median"] == 3.0
    assert rs.spread_pct(s) == pytest.approx(50.0)  # (5 - 2) / 2 / 3
    assert rs.summarize([])["n"] == 0 and rs.cell(rs.summarize([])) == "–"
    assert rs.cell(rs.summarize([1000.0, 1100.0, 1200.0])) == "1,100 [1,050–1,150]"


def test_arms_inside_the_spread_are_not_ranked():
    mha = rs.summarize([100.0, 104.0, 96.0, 101.0, 99.0])
    mla = rs.summarize([102.0, 106.0, 98.0, 103.0, 101.0])  # medians 100 and 102, ranges overlap
    assert rs.within_spread(mha, mla)
    line = rs.compare("MHA", mha, "MLA", mla)
    assert line == "speed: MHA and MLA within measurement spread (±1.0%)"
    assert "faster" not in line
    fast = rs.summarize([200.0, 204.0, 196.0, 201.0, 199.0])
    line = rs.compare("MHA", mha, "MLA", fast, "training speed")
    assert line == "training speed: MLA 2.00x faster than MHA (outside measurement spread ±1.0%)"


def test_report_cells_say_not_measured_without_a_benchmark():
    assert rs.throughput_cell(None, "a", {"id"}, "sweeps/x.yaml") == (
        "not measured (run `ablate bench sweeps/x.yaml`)"
    )
    entry = {"trial_id": "old", "tokens_per_s": rs.summarize([1.0])}
    stale = {"arms": {"a": entry}}  # measured a trial the sweep no longer has
    assert rs.throughput_cell(stale, "a", {"new"}, "s.yaml").startswith("not measured")
    assert rs.speed_section(None, ["a"], "a", {"a": {"id"}}) == {}


def test_speed_section_ranks_only_outside_the_spread():
    def entry(tid: str, tps: list[float]) -> dict:
        ms = rs.summarize([1.0])
        s = rs.summarize(tps)
        return {"trial_id": tid, "weights": "fresh", "tokens_per_s": s, "step_ms": ms}

    arms = {"base": entry("1", [10.0, 11.0, 12.0]), "x": entry("2", [10.5, 11.5, 12.5])}
    arms["y"] = entry("3", [30.0, 31.0, 32.0])
    for e in arms.values():
        e.update(cpu_step_ms=e["step_ms"], decode={})
    bench = {"arms": arms, "threads": 1, "cpus": 2, "load_before": [1.0] * 3}
    bench.update(load_after=[2.0] * 3, spec={"repetitions": 3, "steps": 1})
    out = rs.speed_section(
        bench, ["base", "x", "y"], "base", {"base": {"1"}, "x": {"2"}, "y": {"3"}}
    )
    assert out["claims"][0].startswith("training speed: base and x within measurement spread")
    assert out["claims"][1].startswith("training speed: y 2.82x faster than base")
    assert out["load"] == [1.0, 2.0] and [r["arm"] for r in out["rows"]] == ["base", "x", "y"]


def test_bench_section_is_validated(tmp_path):
    assert bench_spec({"repetitions": 2, "contexts": [8]}, "s") == BenchSpec(
        repetitions=2, contexts=(8,)
    )
    with pytest.raises(ConfigError, match="bench.repetition.*repetitions"):
        bench_spec({"repetition": 2}, "s")
    with pytest.raises(ConfigError, match="bench.steps"):
        bench_spec({"steps": 0}, "s")
    with pytest.raises(ConfigError, match="bench.enabled"):
        bench_spec({"enabled": "no"}, "s")
    with pytest.raises(ValueError, match="bench.contexts"):
        contexts_for(BenchSpec(contexts=(60,), decode_tokens=8), 64)
    assert contexts_for(BenchSpec(decode_tokens=8), 64) == [8, 32]
    sweep = load_sweep(write_sweep(tmp_path, bench={"enabled": False}))
    assert not sweep.bench.enabled


def test_ablate_bench_writes_speed_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = {"repetitions": 2, "warmup": 0, "steps": 1, "contexts": [4], "decode_tokens": 2}
    path = write_sweep(tmp_path, bench=bench)
    assert main(["bench", str(path)]) == 0
    out = json.loads((tmp_path / "runs" / "t" / rs.SPEED_FILE).read_text())
    assert out["order"] == ["a", "b", "a", "b"] and out["threads"] == 1
    assert len(out["load_before"]) == 3 and len(out["load_after"]) == 3
    sweep = load_sweep(path)
    for arm in ("a", "b"):
        e = out["arms"][arm]
        assert e["weights"] == "fresh"  # no trial has run: seed-0 initial weights
        assert e["trial_id"] == next(t.trial_id for t in sweep.trials if t.arm == arm)
        assert e["tokens_per_s"]["n"] == 2 and len(e["step_cpu_s"]) == 2
        assert e["decode"]["4"]["decode_tokens_per_s"]["n"] == 2
    assert rs.load_speed(tmp_path / "runs" / "t")["sweep"] == "t"


def test_ablate_run_ends_with_the_benchmark_and_the_report_uses_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bench = {"repetitions": 2, "warmup": 0, "steps": 1}
    path = write_sweep(tmp_path, seeds=(0,), steps=5, bench=bench)
    assert main(["run", str(path)]) == 0
    out = json.loads((tmp_path / "runs" / "t" / rs.SPEED_FILE).read_text())
    assert {e["weights"] for e in out["arms"].values()} == {"checkpoint"}  # the trained weights
    assert out["arms"]["a"]["decode"] == {"speculative": False}  # same attention: no decode
    html = (tmp_path / "reports" / "t" / "index.html").read_text()
    assert 'id="speed"' in html and "train-loop tokens/s (wall, uncontrolled)" in html
    ranked = r"training speed: (a and b within measurement spread|[ab] [\d.]+x faster than [ab])"
    assert re.search(ranked, html)  # one sentence per arm against the baseline
    (tmp_path / "runs" / "t" / rs.SPEED_FILE).unlink()
    assert main(["report", str(path)]) == 0
    html = (tmp_path / "reports" / "t" / "index.html").read_text()
    assert f"not measured (run `ablate bench {path}`)" in html and 'id="speed"' not in html


def test_no_bench_skips_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(write_sweep(tmp_path, seeds=(0,), steps=2)), "--no-bench"]) == 0
    assert not (tmp_path / "runs" / "t" / rs.SPEED_FILE).exists()


def test_busy_machine_note_goes_to_the_current_stderr(tmp_path, monkeypatch):
    """The note is written to sys.stderr as it is at the call (a default bound at import time
    wrote to a stream closed since: "I/O operation on closed file")."""
    monkeypatch.chdir(tmp_path)
    bench = {"repetitions": 1, "warmup": 0, "steps": 1, "contexts": [4], "decode_tokens": 2}
    sweep = load_sweep(write_sweep(tmp_path, bench=bench))
    monkeypatch.setattr(study_speed.os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    now = io.StringIO()
    monkeypatch.setattr(study_speed.sys, "stderr", now)
    study_speed.run_bench(sweep)
    assert "note: load average 99.0 -> 99.0" in now.getvalue()
