"""`ablate run`, `tune`, `status` and `report`: the sweep-level commands; imports per command."""

from __future__ import annotations

import argparse
import json
import os
import sys


def cmd_run(args: argparse.Namespace) -> int:
    from ablate.core.fsio import check_writable
    from ablate.report.html import render
    from ablate.study.launch import run_sweep
    from ablate.study.sweep import load_sweep
    from ablate.study.tracking import log_report
    from ablate.study.trial_table import changed_finished, format_table, trial_table

    # validates every trial, its data and its memory estimate; writes nothing
    sweep = load_sweep(args.sweep, args.overrides, check_data=True)
    if sweep.tune and not args.dry_run:  # its trials run at the tuned values, not these
        raise ValueError(f"{args.sweep}: it has a `tune:` section; run it with `ablate tune`")
    if args.dry_run:
        if sweep.tune:
            sweep = _tuned_or_note(sweep)
        rows = trial_table(sweep)
        for r in rows:
            r["overrides"] = " ".join(f"{k}={v}" for k, v in r["overrides"].items())
        after = ["after"] if any(r["after"] for r in rows) else []  # stages: what runs first
        print(format_table(rows, ["arm", "seed", "trial_id", "state", *after, "overrides"]))
        for note in sweep.notes:  # fields a component switch dropped
            print(f"note: {note}", file=sys.stderr)
        if changed := changed_finished(sweep):
            print(
                f"note: the spec changed {len(changed)} finished trial(s); `ablate run` will "
                "refuse without --force",
                file=sys.stderr,
            )
        return 0
    check_writable(sweep.run_dir)  # before any work: not a finished sweep without its report
    check_writable(sweep.report_dir)
    from ablate.study.executors import Resources

    res = Resources(**{f: getattr(args, f) for f in Resources.__dataclass_fields__})
    status = run_sweep(
        sweep,
        workers=_workers(args.workers),
        force=args.force,
        executor=args.executor,
        resources=res,
    )
    if sweep.bench.enabled and not args.no_bench:  # the report compares speed only from it
        from ablate.study.speed import run_bench

        print(f"speed: {run_bench(sweep)}")
    path = render(sweep.run_dir, sweep.report_dir, sweep.report.get("title", ""))
    print(f"report: {path}")
    log_report(sweep, path, path.parent / "results.csv")
    return status


def cmd_tune(args: argparse.Namespace) -> int:
    from ablate.core.fsio import check_writable
    from ablate.report.html import render
    from ablate.study.executors import Resources
    from ablate.study.sweep import load_sweep
    from ablate.study.tracking import log_report
    from ablate.study.tune import tune_sweep

    sweep = load_sweep(args.sweep, args.overrides, check_data=True)
    if not sweep.tune:
        raise ValueError(f"{args.sweep}: no `tune:` section; run it with `ablate run`")
    check_writable(sweep.run_dir)
    check_writable(sweep.report_dir)
    res = Resources(**{f: getattr(args, f) for f in Resources.__dataclass_fields__})
    status = tune_sweep(
        sweep,
        executor=args.executor,
        resources=res,
        workers=_workers(args.workers),
        bench=not args.no_bench,
    )
    path = render(sweep.run_dir, sweep.report_dir, sweep.report.get("title", ""))
    print(f"report: {path}")
    log_report(sweep, path, path.parent / "results.csv")
    return status


def cmd_status(args: argparse.Namespace) -> int:
    from ablate.study.ledger import Ledger
    from ablate.study.progress import FINISHED, format_duration, sweep_eta, sweep_line
    from ablate.study.sweep import load_sweep
    from ablate.study.trial_table import counts, format_table, ledger_path

    sweep = load_sweep(args.sweep)
    ledger = Ledger(ledger_path(sweep), readonly=True)
    rows = ledger.rows()
    jobs = ledger.meta().get("jobs", {})  # cluster executors: the job of each trial
    ledger.close()
    for r in rows:
        r["job"] = jobs.get(r["trial_id"], {}).get("job_id", "")
    keys = ("arm", "seed", "trial_id", "state", "attempts", "path", "reason", "job")
    if args.json:
        eta = sweep_eta(rows)
        progress = {
            "finished": sum(r["state"] in FINISHED for r in rows),
            "total": len(rows),
            "eta_s": None if eta is None else round(eta, 1),
        }
        trials = [{**{k: r[k] for k in keys}, "metrics": r["metrics"]} for r in rows]
        out = {"sweep": sweep.name, "counts": counts(rows), "progress": progress, "trials": trials}
        print(json.dumps(out, indent=2, default=str))
        return 0
    for r in rows:
        m = r["metrics"]
        r["val_loss"] = f"{m['val_loss']:.4f}" if isinstance(m.get("val_loss"), float) else ""
        tps = m.get("tokens_per_s")
        r["tok/s"] = f"{tps:,.0f}" if isinstance(tps, (int, float)) else ""
        wall = m.get("wall_s")
        r["time"] = format_duration(wall) if isinstance(wall, (int, float)) else ""
    columns = ["arm", "seed", "trial_id", "state", "attempts", "val_loss", "tok/s", "time"]
    columns += ["job"] if jobs else []
    print(format_table(rows, [*columns, "reason"]))
    print(", ".join(f"{n} {s}" for s, n in counts(rows).items() if n))
    print(sweep_line(sweep.name, rows))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ablate.report.html import render
    from ablate.study.sweep import load_sweep

    sweep = load_sweep(args.sweep)
    print(render(sweep.run_dir, sweep.report_dir, sweep.report.get("title", "")))
    return 0


def _workers(flag: int | None) -> int:
    """--workers, else $ABLATE_WORKERS, else 0: as many as the cores hold (`run_sweep`)."""
    if flag is not None:
        return flag
    env = os.environ.get("ABLATE_WORKERS", "0")
    if not env.isdigit():
        raise ValueError(f"ABLATE_WORKERS must be a whole number, got {env!r}")
    return int(env)


def _tuned_or_note(sweep):
    """A tune sweep's final trials once tuned; before, the sweep as written, with a note."""
    from ablate.study.tune import tuned_sweep

    try:
        return tuned_sweep(sweep)
    except ValueError:
        print(
            "note: a tune sweep: its final trials (and ids) follow the values `ablate tune` "
            "chooses; these are the trials at the written values",
            file=sys.stderr,
        )
        return sweep
