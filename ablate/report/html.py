"""Self-contained HTML report and results.csv of a sweep, rebuilt from its ledger at any time.

The tables come from `ablate.report.table`, the figures from `ablate.report.charts`; this
module loads the trials, writes the CSV and renders the template. The engine never names a
component: columns come from the resolved configs and from whatever metrics the trials wrote.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ablate.core import memory
from ablate.core.fsio import atomic_write_text
from ablate.report import stats
from ablate.report.charts import charts
from ablate.report.formats import format_ladder
from ablate.report.ladder import COMPUTE_KEY, ladder_of, ladder_section
from ablate.report.precision_table import precision_table
from ablate.report.speed import load_speed, not_measured, speed_section
from ablate.report.table import SHOWN_METRICS, ablation_table, compute_keys, metric, shown_arms
from ablate.report.verdicts import baselines
from ablate.study.ledger import Ledger

TEMPLATE = "report.html.j2"


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
    return rows


def load_trials(ledger: Ledger) -> list[dict[str, Any]]:
    """Active ledger rows with their summary.json and metrics.jsonl (where written)."""
    trials = []
    for row in ledger.rows():
        path = Path(row["path"])
        summary_path = path / "summary.json"
        row["summary"] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        row["records"] = _read_jsonl(path / "metrics.jsonl")
        trials.append(row)
    return trials


def repro_block(meta: dict, trials: list[dict]) -> dict[str, Any]:
    summaries = [t["summary"] for t in trials if t["summary"]]
    revs = sorted(
        {
            f"{s.get('git_rev', 'unknown')}{' (dirty)' if s.get('git_dirty') else ''}"
            for s in summaries
        }
    )
    first = summaries[0] if summaries else {}
    warnings = []
    if any(s.get("git_dirty") for s in summaries):
        warnings.append(
            "the code had uncommitted changes when trials ran: the revision alone does not "
            "reproduce them (each such trial keeps its git.diff)"
        )
    plugins = sorted({k for s in summaries for k in s.get("code") or {}})
    if plugins:
        warnings.append(
            f"components from outside this repository ({', '.join(plugins)}): their module "
            "hashes are in the trial ids, their code is not in the git revision"
        )
    return {
        "warnings": warnings,
        "data": _data_lines(summaries),
        "sweep_text": meta.get("sweep_text", ""),
        "sweep_path": meta.get("sweep_path", ""),
        "cli": " ".join(meta.get("cli_overrides", [])),
        "base_config": meta.get("base_config", ""),
        "resolved": resolved_configs(meta, trials),
        "git": revs or ["(no finished trial)"],
        "versions": first.get("versions", {}),
        "hardware": first.get("hardware", {}),
        "seeds": meta.get("seeds", []),
        "fingerprint": meta.get("fingerprint", ""),
    }


def resolved_configs(meta: dict, trials: list[dict]) -> list[tuple[str, str]]:
    """(arm, YAML) of what the trials ran: the baseline's whole resolved config (its first
    seed), then each other arm's keys that differ from it (seed excluded)."""
    import yaml

    from ablate.report.table import flatten, shown_arms

    first = {a: next(t for t in trials if t["arm"] == a) for a in shown_arms(meta, trials)}
    if not first:
        return []
    base = meta.get("baseline") if meta.get("baseline") in first else next(iter(first))
    out = [(base, yaml.safe_dump(first[base]["config"], sort_keys=False))]
    ref = flatten(first[base]["config"])
    for arm, t in first.items():
        if arm != base:
            flat = flatten(t["config"])
            diff = {
                k: flat.get(k) for k in sorted(set(flat) | set(ref)) if flat.get(k) != ref.get(k)
            }
            diff.pop("train.seed", None)
            out.append((arm, yaml.safe_dump(diff, sort_keys=False) if diff else "(none)\n"))
    return out


def _data_lines(summaries: list[dict]) -> list[str]:
    """One line per distinct corpus and split the trials used."""
    lines = set()
    for s in summaries:
        d = s.get("data") or {}
        if d:
            lines.add(
                ", ".join(f"{k}: {d[k]}" for k in sorted(d) if not isinstance(d[k], (dict, list)))
            )
    return sorted(lines)


CSV_FIELDS = (
    "arm",
    "scale",  # the ladder rung of a ladder sweep, else empty
    "seed",
    "trial_id",
    "state",
    "attempts",
    "val_loss",
    "val_ppl",
    "tokens_per_s",
    "num_params",
    COMPUTE_KEY,
    "reason",
    "path",
)


def write_csv(path: Path, trials: list[dict], meta: dict | None = None) -> None:
    """One row per trial: identity, its ladder rung, state and every scalar metric (atomic)."""
    cells = ladder_of(meta or {}).get("cells", {})
    extra = (
        memory.recorded([t["summary"] or {} for t in trials])
        + compute_keys(trials)
        + sorted(
            {
                k
                for t in trials
                for k, v in (t["summary"].get("metrics") or {}).items()
                if isinstance(v, (int, float)) and k not in SHOWN_METRICS
            }
        )
    )
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=[*CSV_FIELDS, *extra])
    w.writeheader()
    for t in trials:
        row = {
            k: t.get(k, "")
            for k in ("arm", "seed", "trial_id", "state", "attempts", "reason", "path")
        }
        row["scale"] = cells[t["arm"]][1] if t["arm"] in cells else ""
        for k in ("val_loss", "val_ppl", "tokens_per_s", "num_params", COMPUTE_KEY, *extra):
            row[k] = metric(t, k)
        w.writerow(row)
    atomic_write_text(path, f.getvalue())


def render(run_dir: str | Path, out_dir: str | Path, title: str = "") -> Path:
    """Write `index.html` and `results.csv` for the sweep in `run_dir`; returns the HTML path."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from ablate.study.launch import LEDGER

    ledger = Ledger(Path(run_dir) / LEDGER, readonly=True)
    try:
        meta, trials = ledger.meta(), load_trials(ledger)
    finally:
        ledger.close()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    problems = [t for t in trials if t["state"] in ("diverged", "failed", "blocked")]
    bench = load_speed(run_dir)  # the controlled speed measurement, when `ablate bench` ran
    arms = shown_arms(meta, trials)
    ids = {a: {t.get("trial_id") for t in trials if t["arm"] == a} for a in arms}
    html = env.get_template(TEMPLATE).render(
        name=meta.get("name", ""),
        title=title or f"Ablation report: {meta.get('name', '')}",
        baseline=meta.get("baseline", ""),
        ladder=ladder_section(meta, trials),
        table=ablation_table(meta, trials, bench),
        speed=speed_section(bench, arms, baselines(meta, arms), ids),
        bench_command=not_measured(meta.get("sweep_path", "")),
        precision=precision_table(meta, trials),
        formats=format_ladder(meta, trials),
        charts=charts(meta, trials, bench),
        problems=problems,
        trials=trials,
        repro=repro_block(meta, trials),
        alpha=stats.ALPHA,
        confidence=stats.CONFIDENCE,
        counts={
            s: sum(t["state"] == s for t in trials)
            for s in ("done", "diverged", "failed", "blocked", "running", "pending")
        },
    )
    path = out / "index.html"
    write_csv(out / "results.csv", trials, meta)  # after rendering: a killed render leaves neither
    atomic_write_text(path, html)
    return path
