"""Per-arm tuning with Optuna, then every seed of each arm at the full budget with its best value.

For each arm, an Optuna study (`<sweep>/<arm>`) searches the sweep's `tune:` space (peak learning
rate on a log scale; optionally warm-up steps and weight decay) with short trials. Each Optuna
trial is an ordinary ablate trial: its config is the arm's, with the tuned values, the tuning
budget and the tuning seed; its id is that config's hash and it trains in
`runs/<sweep>/tune/trials/<id>/`, so a trial already finished is read back, not retrained. Its
evaluations feed the pruner (median by default). `min_lr` keeps its ratio to `lr`.

Studies live in Optuna's own storage: a journal file `runs/<sweep>/tune/optuna.journal`, or the
RDB URL in `tune.storage`. After a kill, finished Optuna trials (complete, pruned, diverged) are
kept; the one that was running is enqueued again with its values and resumes from its checkpoint.
The final runs (no pruning, no early stopping) go through `launch.run_sweep`, so through the
sweep's executors; the study summaries go to the ledger's meta (`tune`) for the report.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from ablate.core import trainer
from ablate.core.config import Config, config_hash
from ablate.study.sweep import Sweep, Trial

JOURNAL = "optuna.journal"
FINISHED = ("COMPLETE", "PRUNED")


def tuned_config(cfg: Config, values: dict[str, Any], *, steps: int, seed: int) -> Config:
    """`cfg` with the tuned train values, `steps` and `seed` (min_lr scaled with lr)."""
    train = cfg.train
    changes: dict[str, Any] = dict(values)
    if "lr" in values:
        changes["min_lr"] = train.min_lr * values["lr"] / train.lr
    changes["warmup_steps"] = min(int(changes.get("warmup_steps", train.warmup_steps)), steps)
    return replace(cfg, train=replace(train, **changes, steps=steps, seed=seed))


def tune_steps(sweep: Sweep, cfg: Config) -> int:
    """Steps of one tuning trial from `tune.budget` ({steps} or {tokens})."""
    kind, value = next(iter(sweep.tune["budget"].items()))
    if kind == "steps":
        return value
    per_step = cfg.data.batch_size * cfg.data.seq_len * cfg.train.grad_accum
    return max(1, value // per_step)


def storage(sweep: Sweep):
    """Optuna storage of the sweep's studies: the RDB URL given, else the journal file."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if sweep.tune["storage"]:
        return optuna.storages.RDBStorage(sweep.tune["storage"])
    path = sweep.run_dir / "tune" / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


class _Pruning:
    """Trainer callback: reports each evaluation's val loss to the Optuna trial; may prune."""

    def __init__(self, trial) -> None:
        self.trial = trial

    def __call__(self, record: dict[str, Any]) -> None:
        import optuna

        value = record.get("val_loss")
        if "status" in record or value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), int(record["step"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {record['step']} (val loss {value:.4g})")


def _suggest(trial, space: dict[str, dict]) -> dict[str, Any]:
    out = {}
    for name, r in space.items():
        if r["int"]:
            out[name] = trial.suggest_int(name, r["low"], r["high"])
        else:
            out[name] = trial.suggest_float(name, r["low"], r["high"], log=r["log"])
    return out


def _replay(trial_dir: Path, cb: _Pruning) -> None:
    """Hand a finished trial's logged evaluations to the pruner, as training would have."""
    for line in (trial_dir / trainer.METRICS).read_text().splitlines():
        cb(json.loads(line))


def _objective(sweep: Sweep, arm: str, stream: TextIO):
    from ablate.study.launch import _finished_summary

    base = next(t for t in sweep.trials if t.arm == arm).cfg
    steps = tune_steps(sweep, base)

    def objective(trial) -> float:
        values = _suggest(trial, sweep.tune["space"])
        cfg = tuned_config(base, values, steps=steps, seed=sweep.tune["seed"])
        if sweep.tune["eval_every"]:
            cfg = replace(cfg, train=replace(cfg.train, eval_every=sweep.tune["eval_every"]))
        trial_id = config_hash(cfg)
        trial.set_user_attr("trial_id", trial_id)
        trial_dir = sweep.run_dir / "tune" / "trials" / trial_id
        cb = _Pruning(trial)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"tune {arm} #{trial.number}: {shown} ({trial_id})", file=stream, flush=True)
        summary = _finished_summary(trial_dir, trial_id)
        if summary is not None:
            _replay(trial_dir, cb)
        else:
            summary = trainer.train(cfg, trial_dir, resume=True, callbacks=[cb])
        trial.set_user_attr("status", summary["status"])
        if summary["status"] != "done":  # diverged: a result of this learning rate
            return math.inf
        return float(summary["val_loss"])

    return objective


def _resume_killed(study) -> int:
    """Enqueue again the values of trials a kill left running or failed; returns finished count."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name in FINISHED]
    have = [t.params for t in done] + [t.params for t in trials if t.state == TrialState.WAITING]
    for t in trials:
        if t.state in (TrialState.RUNNING, TrialState.FAIL) and t.params and t.params not in have:
            study.enqueue_trial(t.params, skip_if_exists=False)
            have.append(t.params)
    return len(done)


def make_pruner(spec: dict[str, Any]):
    """The Optuna pruner of a `tune:` spec: the median rule once two trials have finished,
    never before step `pruner_warmup` of a trial; or none."""
    import optuna

    if spec["pruner"] != "median":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=spec["pruner_warmup"])


def tune_arm(sweep: Sweep, arm: str, stream: TextIO) -> dict[str, Any]:
    """Run (or resume) one arm's Optuna study; its summary for the report."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = make_pruner(sweep.tune)
    study = optuna.create_study(
        storage=storage(sweep),
        study_name=f"{sweep.name}/{arm}",
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=sweep.tune["seed"]),
        pruner=pruner,
        load_if_exists=True,
    )
    left = sweep.tune["trials"] - _resume_killed(study)
    if left > 0:
        study.optimize(_objective(sweep, arm, stream), n_trials=left, catch=())
    return study_summary(study)


def study_summary(study) -> dict[str, Any]:
    """Finished trials (values, result, state, trial id) and the chosen values."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name not in FINISHED:
            continue
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        value = t.value if t.state.name == "COMPLETE" else last
        rows.append(
            {
                "number": t.number,
                "params": dict(t.params),
                "value": value if value is not None and math.isfinite(value) else None,
                "state": t.user_attrs.get("status", "done")
                if t.state.name == "COMPLETE"
                else "pruned",
                "trial_id": t.user_attrs.get("trial_id", ""),
            }
        )
    complete = [r for r in rows if r["state"] == "done" and r["value"] is not None]
    best = min(complete, key=lambda r: r["value"]) if complete else None
    return {"trials": rows, "chosen": best["params"] if best else {}}


def final_sweep(sweep: Sweep, chosen: dict[str, dict[str, Any]]) -> Sweep:
    """The sweep's trials at the full budget with each arm's chosen values."""
    trials = []
    for t in sweep.trials:
        values = chosen[t.arm]
        cfg = tuned_config(t.cfg, values, steps=t.cfg.train.steps, seed=t.cfg.train.seed)
        overrides = {**t.overrides, **{f"train.{k}": v for k, v in values.items()}}
        trials.append(Trial(t.arm, t.seed, overrides, cfg, config_hash(cfg)))
    return replace(sweep, trials=trials)


def tune_sweep(
    sweep: Sweep,
    *,
    stream: TextIO | None = None,
    executor: str = "local",
    resources=None,
    workers: int = 1,
    bench: bool = False,
) -> int:
    """Tune every arm, then run the final trials (`workers` as `run_sweep`'s: 0 = as many as
    the cores hold) and, with `bench`, the speed benchmark of the final trials (`ablate run`'s
    last phase); 1 if a final trial failed, else 0."""
    from ablate.study.launch import ledger_path, run_sweep
    from ablate.study.ledger import Ledger

    stream = stream or sys.stderr
    if not sweep.tune:
        raise ValueError(f"{sweep.path}: the sweep has no `tune:` section")
    summaries = {arm: tune_arm(sweep, arm, stream) for arm in sweep.arms}
    missing = [a for a, s in summaries.items() if not s["chosen"]]
    if missing:
        raise ValueError(
            f"no tuning trial finished for arm(s) {', '.join(missing)}: every one diverged or "
            "was pruned; widen tune.lr or raise tune.trials"
        )
    for arm, s in summaries.items():
        shown = ", ".join(f"{k}={v:.4g}" for k, v in s["chosen"].items())
        print(f"tune {arm}: chose {shown}", file=stream, flush=True)
    final = final_sweep(sweep, {a: s["chosen"] for a, s in summaries.items()})
    status = run_sweep(
        final, workers=workers, executor=executor, resources=resources, stream=stream
    )
    ledger = Ledger(ledger_path(final))
    try:
        ledger.set_meta("tune", {"space": sweep.tune["space"], "arms": summaries})
    finally:
        ledger.close()
    if bench and final.bench.enabled:  # the report compares speed only from it
        from ablate.study.speed import run_bench

        print(f"speed: {run_bench(final)}", file=stream, flush=True)
    return status


def tuned_sweep(sweep: Sweep) -> Sweep:
    """A tune sweep's final trials at the values its finished tuning chose (read from the
    ledger), for commands that act on them (`ablate bench`); any other sweep as it is.

    Raises:
        ValueError: a tune sweep whose tuning has not finished.
    """
    from ablate.study.launch import ledger_path
    from ablate.study.ledger import Ledger

    if not sweep.tune:
        return sweep
    path = ledger_path(sweep)
    arms = {}
    if path.exists():
        ledger = Ledger(path, readonly=True)
        try:
            arms = (ledger.meta().get("tune") or {}).get("arms") or {}
        finally:
            ledger.close()
    if set(arms) != set(sweep.arms) or not all(a.get("chosen") for a in arms.values()):
        raise ValueError(f"{sweep.path}: not tuned yet; run `ablate tune {sweep.path}` first")
    return final_sweep(sweep, {a: s["chosen"] for a, s in arms.items()})
