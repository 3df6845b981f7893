"""Report robustness: long and CJK arm names in the figures, a render killed midway."""

from __future__ import annotations

import warnings

import pytest

from ablate.report import charts as ch
from ablate.report import html as report
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep

LONG = "arm_" + "x" * 296  # 300 characters
CJK = "注意力机制"


def _trials(arms: list[str]) -> list[dict]:
    return [
        {
            "arm": a,
            "trial_id": f"t{i}",
            "state": "done",
            "records": [{"step": s, "val_loss": 3.0 - s / 10 - i} for s in (5, 10)],
            "summary": {"tokens_per_s": 1000.0 + i},
            "metrics": {},
        }
        for i, a in enumerate(arms)
    ]


def test_long_names_are_cut_with_an_ellipsis_and_listed_in_a_legend():
    labels, families = ch.chart_labels(["a", LONG])
    assert labels["a"] == "a" and families
    assert len(labels[LONG]) == ch.MAX_LABEL_CHARS and labels[LONG].endswith("…")
    assert labels[LONG].startswith("arm_xxx")
    tps = {"median": 1000.0, "q1": 990.0, "q3": 1010.0}
    bench = {
        "arms": {a: {"trial_id": f"t{i}", "tokens_per_s": tps} for i, a in enumerate(["a", LONG])}
    }
    out = ch.charts({"arms": ["a", LONG]}, _trials(["a", LONG]), bench)
    assert len(out) == 2  # loss curves and the benchmark's throughput
    assert all(c["legend"] == [(labels[LONG], LONG)] for c in out)


def test_short_drawable_names_have_no_legend():
    out = ch.charts({"arms": ["a", "b"]}, _trials(["a", "b"]))
    assert out and all("legend" not in c for c in out)


def test_font_families_know_which_glyphs_are_installed():
    assert ch.font_families("abc") is not None
    assert ch.font_families("\U000f0001") is None  # a private-use code point no font draws


def test_names_no_font_draws_become_indices_with_a_warning(monkeypatch):
    real = ch.font_families
    has_cjk = real(CJK) is not None  # a machine with a CJK font draws the real names
    monkeypatch.setattr(ch, "font_families", lambda text: None)
    with pytest.warns(UserWarning, match="no installed font draws every arm name"):
        out = ch.charts({"arms": ["a", CJK]}, _trials(["a", CJK]))
    assert all(c["legend"] == [("A1", "a"), ("A2", CJK)] for c in out)
    monkeypatch.setattr(ch, "font_families", real)
    with warnings.catch_warnings():  # warns here when the machine has no CJK font
        warnings.simplefilter("ignore")
        labels, families = ch.chart_labels(["a", CJK])
    assert (labels[CJK] == CJK) == has_cjk
    if has_cjk:
        assert len(families) > 1  # the default font plus the one with the glyphs


def test_report_shows_the_legend_with_real_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ch, "font_families", lambda text: None)
    sweep = load_sweep(write_sweep(tmp_path, seeds=(0,), arms={"a": {}, CJK: {"model.dim": 48}}))
    ledger = Ledger(sweep.run_dir / "ledger.sqlite")
    ledger.sync(sweep, extra_meta={"base_config": "{}"})
    ledger.close()
    monkeypatch.setattr(
        report,
        "charts",
        lambda meta, trials, bench: [
            {"title": "Validation loss", "png": "", "legend": [("A1", "a"), ("A2", CJK)]}
        ],
    )
    html = report.render(sweep.run_dir, sweep.report_dir).read_text()
    assert f'<td class="l">A2</td><td class="l">{CJK}</td>' in html


def test_a_render_killed_midway_keeps_the_previous_report_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, seeds=(0,)))
    ledger = Ledger(sweep.run_dir / "ledger.sqlite")
    ledger.sync(sweep, extra_meta={"base_config": "{}"})
    ledger.close()

    def killed(meta, trials, bench):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "charts", killed)
    with pytest.raises(KeyboardInterrupt):
        report.render(sweep.run_dir, sweep.report_dir)
    assert not list(sweep.report_dir.iterdir())  # neither results.csv nor index.html
    monkeypatch.setattr(report, "charts", lambda meta, trials, bench: [])
    report.render(sweep.run_dir, sweep.report_dir)
    before = {p.name: p.read_bytes() for p in sweep.report_dir.iterdir()}
    assert set(before) == {"index.html", "results.csv"}
    monkeypatch.setattr(report, "charts", killed)
    with pytest.raises(KeyboardInterrupt):
        report.render(sweep.run_dir, sweep.report_dir)
    assert {p.name: p.read_bytes() for p in sweep.report_dir.iterdir()} == before
