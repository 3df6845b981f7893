"""`ablate list` field help, the sweep-level progress line and `ablate status` formatting."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.cli import main
from ablate.core.fielddoc import field_help
from ablate.study.progress import format_duration, sweep_eta, sweep_line


@dataclass(frozen=True)
class Documented:
    """A config whose fields are described three ways.

    Args:
        from_doc: taken from the docstring
        both: the docstring loses to a comment
    """

    trailing: int = 1  # the trailing comment
    # the comment block
    # right above
    above: float = 2.0
    from_doc: str = "x"
    both: int = 0  # the comment wins
    bare: int = 3


def test_field_help_reads_comments_and_docstring():
    assert field_help(Documented) == {
        "trailing": "the trailing comment",
        "above": "the comment block right above",
        "from_doc": "taken from the docstring",
        "both": "the comment wins",
    }
    assert field_help(int) == {}  # no Python source: no help, no error


def test_list_prints_each_fields_description(capsys):
    assert main(["list", "attention", "--pattern", "mla"]) == 0
    out = capsys.readouterr().out
    assert "Multi-head Latent Attention" in out  # the component's one-line summary
    line = next(ln for ln in out.splitlines() if "kv_lora_rank=" in ln)
    assert line.split() == ["kv_lora_rank=64", "d_c:", "the", "cached", "key/value", "latent"]


def row(state: str, wall_s: float | None = None, updated: float = 0.0) -> dict:
    return {"state": state, "metrics": {"wall_s": wall_s}, "updated": updated}


def test_sweep_eta_from_finished_trials():
    assert sweep_eta([row("pending"), row("running", updated=90.0)], now=100.0) is None
    rows = [row("done", 30.0), row("failed", 10.0), row("running", updated=90.0), row("pending")]
    # mean 20 s: the running trial has 10 s left, the pending one 20 s; one worker running
    assert sweep_eta(rows, now=100.0) == 30.0
    assert sweep_eta(rows, workers=3, now=100.0) == 10.0
    assert sweep_eta([row("done", 5.0)]) == 0.0
    line = sweep_line("s", rows)
    assert line.startswith("sweep s: 2/4 trials finished (50%), ETA ")
    assert sweep_line("s", rows[:2]) == "sweep s: 2/2 trials finished (100%)"
    assert sweep_line("s", [row("pending")]).endswith("ETA after the first trial")


def test_format_duration():
    assert [format_duration(s) for s in (0.04, 4.25, 45.2, 185, 7620)] == [
        "0.0s",
        "4.2s",
        "45s",
        "3m05s",
        "2h07m",
    ]
