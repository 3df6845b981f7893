"""Sweep files: schema, validation and expansion into trials (arms come from `study.arms`).

A sweep resolves every trial (arm x seed) to a validated `Config` before anything runs; each
trial's id is the hash of its resolved config. Errors name the sweep file and the dotted sweep
key (`arms.mla.model.attention.kv_lora_rank`), like the core's config errors.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.core.config import (
    Config,
    ConfigError,
    Layers,
    config_hash,
    from_layers,
    load_layers,
    replace,
    to_dict,
)
from ablate.core.identity import differing_keys
from ablate.core.preflight import preflight
from ablate.study.arms import expand_arms, known_keys, mapping, nest
from ablate.study.claims import equivalence, paper, verdict
from ablate.study.ladder import expand_ladder
from ablate.study.speed_spec import BenchSpec, bench_spec
from ablate.study.stage_spec import Stages, placeholder_ids, stage_spec
from ablate.study.sweep_keys import DEFAULT_MAX_ATTEMPTS, budget_of, integer, read_spec
from ablate.study.tune_spec import tune_spec

_SOURCE_MARK = "sweep::"  # layer sources we add, so validation errors map back to sweep keys


@dataclass(frozen=True)
class Trial:
    arm: str
    seed: int
    overrides: dict[str, Any]  # the arm's dotted-key overrides (without budget / seed)
    cfg: Config
    trial_id: str  # config_hash(cfg)
    parent: str = ""  # trial id of the `from:` arm's same-seed trial it starts from
    after: tuple[str, ...] = ()  # trial ids it waits for (parent and `${trial:ARM}` references)


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    text: str  # the sweep file as written
    base: Path
    seeds: tuple[int, ...]
    budget: dict[str, int]  # {"steps": N} or {"tokens": N}
    steps: int  # optimizer steps every arm trains for
    baseline: str
    arms: dict[str, dict[str, Any]]  # arm name -> dotted-key overrides, in sweep order
    trials: list[Trial]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    report: dict[str, Any] = field(default_factory=dict)
    cli_overrides: tuple[str, ...] = ()
    equivalence: dict[str, Any] = field(default_factory=dict)  # {margin, relative}: TOST claim
    paper: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm -> {value, source}
    tune: dict[str, Any] = field(default_factory=dict)  # validated `tune:` (study.tune_spec)
    bench: BenchSpec = BenchSpec()  # the `bench:` section (study.speed): speed measurement
    stages: Stages = Stages()  # `from:` and `${trial:ARM}` between arms (study.stage_spec)

    @property
    def run_dir(self) -> Path:
        return Path("runs") / self.name

    @property
    def report_dir(self) -> Path:
        return Path(self.report.get("dir") or Path("reports") / self.name)

    @property
    def notes(self) -> list[str]:
        """What each arm's layering dropped when it switched a component (one line each)."""
        return list(dict.fromkeys(n for t in self.trials for n in t.cfg.notes))

    def fingerprint(self) -> str:
        """Hash of what defines the results: every (arm, seed) and its trial id."""
        keys = sorted((t.arm, t.seed, t.trial_id) for t in self.trials)
        return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]


def _resolve(
    base: Layers,
    layers: list[tuple[str, dict]],
    cli: tuple[str, ...],
    src: str,
    where: dict[str, str],
    arm: str,
    check_data: bool = False,
) -> Config:
    """Validate base + sweep layers + command line, mapping errors back to sweep keys.

    `check_data` adds the preflight (data and memory, `ablate.core.preflight`).
    """
    stack = Layers()
    stack.items = list(base.items)
    for label, data in layers:
        stack.add(_SOURCE_MARK + label, data)
    try:
        cfg = from_layers(stack, cli)
        if check_data:
            preflight(cfg, stack)
    except ConfigError as e:
        if not e.source.startswith(_SOURCE_MARK):
            raise
        label = e.source[len(_SOURCE_MARK) :]
        if label == "arm":  # an arm override: name its sweep key (arms.<arm>, grid or zip)
            related = [
                k
                for k in where
                if e.key == k or e.key.startswith(k + ".") or k.startswith(e.key + ".")
            ]
            label = where[max(related, key=len)] if related else "arms"
        prefix = (
            f"{label}."
            if label in ("overrides", "grid", "zip") or label.startswith(("arms", "ladder"))
            else ""
        )
        raise ConfigError(src, prefix + e.key, e.msg, e.matches) from None
    # notes on dropped fields name the sweep layer that switched the component
    arm_mark = _SOURCE_MARK + "arm:"
    notes = [n.replace(arm_mark, f"arm {arm}:", 1).replace(_SOURCE_MARK, "", 1) for n in cfg.notes]
    return replace(cfg, notes=tuple(notes))


def load_sweep(
    path: str | Path, cli_overrides: list[str] | tuple[str, ...] = (), *, check_data: bool = False
) -> Sweep:
    """Read, expand and validate a whole sweep file (nothing is written).

    `check_data`: also run the preflight on every arm (`ablate run` and `--dry-run` do).
    """
    path = Path(path)
    spec, src = read_spec(path)
    cli = tuple(cli_overrides)
    if not isinstance(spec["base"], str):
        raise ConfigError(src, "base", "must be a path to a YAML file (relative to the sweep)")
    base_path = path.parent / spec["base"]
    base = load_layers(base_path)
    seeds = spec["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(src, "seeds", f"expected a non-empty list of integers, got {seeds!r}")
    seeds = tuple(integer(s, src, f"seeds[{i}]") for i, s in enumerate(seeds))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(src, "seeds", f"duplicate seeds in {list(seeds)}")
    budget = budget_of(spec, src)
    max_attempts = integer(spec.get("max_attempts", DEFAULT_MAX_ATTEMPTS), src, "max_attempts", 1)
    overrides = mapping(spec.get("overrides"), src, "overrides")
    common: list[tuple[str, dict]] = [("overrides", nest(overrides, src, "overrides."))]
    plugins = spec.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(src, "plugins", f"expected a list of module names, got {plugins!r}")
    if plugins:
        common.append(("", {"plugins": plugins}))
    common.append(("tracking", {"tracking": mapping(spec.get("tracking"), src, "tracking")}))
    report = mapping(spec.get("report"), src, "report")
    known_keys(report, ("dir", "title"), src, "report.", "report option")
    arms, where, ladder = expand_ladder(spec, src, *expand_arms(spec, src))
    cells = ladder.cells() if ladder else {}  # a reference means its arm at the same rung
    rename = (lambda n, a: ladder.name(n, cells[a][1]) if n not in arms else n) if ladder else None
    arms, stages = stage_spec(arms, where, src, rename)
    baseline = ladder.name(ladder.baseline, ladder.rungs[0]) if ladder else spec["baseline"]
    steps_by_arm: dict[str, int] = {}
    for arm, overrides in arms.items():
        overrides = stages.overrides(arm, overrides, placeholder_ids)
        layers = [*common, ("arm", nest(overrides, src, f"arms.{arm}."))]
        cfg = _resolve(base, layers, cli, src, where[arm], arm, check_data)
        if _own_steps(stages, arm, overrides):
            continue
        if "steps" in budget:
            steps_by_arm[arm] = budget["steps"]
        else:
            per_step = cfg.data.batch_size * cfg.data.seq_len * cfg.train.grad_accum
            steps_by_arm[arm] = budget["tokens"] // per_step
    if baseline not in arms:
        raise ConfigError(
            src,
            "baseline",
            f"{baseline!r} is not an arm (arms: {', '.join(arms)})",
            difflib.get_close_matches(str(baseline), list(arms)),
        )
    if len(set(steps_by_arm.values())) > 1:
        raise ConfigError(
            src,
            "budget.tokens",
            "gives a different number of steps per arm "
            f"(batch_size x seq_len x grad_accum differ): {steps_by_arm}",
        )
    steps = next(iter(steps_by_arm.values()))
    if steps < 1:
        raise ConfigError(src, "budget.tokens", f"{budget['tokens']} tokens is less than one step")
    trials, seen, ids = [], {}, {}
    for arm in stages.order:  # a trial after the trials it starts from or references
        for seed in seeds:
            overrides = stages.overrides(arm, arms[arm], lambda a, s=seed: ids[(a, s)])
            own = {"seed": seed} | ({} if _own_steps(stages, arm, overrides) else {"steps": steps})
            layers = [
                *common,
                ("arm", nest(overrides, src, f"arms.{arm}.")),
                ("budget", {"train": own}),
            ]
            cfg = _resolve(base, layers, cli, src, where[arm], arm)
            after = tuple(ids[(a, seed)] for a in stages.deps(arm))
            parent = ids[(stages.parents[arm], seed)] if arm in stages.parents else ""
            trial = Trial(arm, seed, dict(arms[arm]), cfg, config_hash(cfg), parent, after)
            ids[(arm, seed)] = trial.trial_id
            if trial.trial_id in seen:
                other = seen[trial.trial_id]
                diff = ", ".join(differing_keys(to_dict(cfg), to_dict(other.cfg)))
                why = f"; they differ only in {diff}, which cannot change a result" if diff else ""
                raise ConfigError(
                    src,
                    f"arms.{arm}",
                    f"seed {seed} resolves to the same config (trial id {trial.trial_id}) "
                    f"as arm {other.arm!r} seed {other.seed}{why}: not an ablation",
                )
            seen[trial.trial_id] = trial
            trials.append(trial)
    claims = {
        "verdict": verdict(spec, src),
        "equivalence": equivalence(spec, src),
        "paper": paper(spec, src, arms),
    }
    if stages.parents or stages.refs:
        claims["stages"] = stages.as_meta()
        if spec.get("tune") is not None:
            raise ConfigError(src, "tune", "a sweep with stages (from:, ${trial:...}) cannot tune")
    return Sweep(
        name=spec["name"],
        path=path,
        text=path.read_text(),
        base=base_path,
        seeds=seeds,
        budget=budget,
        steps=steps,
        baseline=baseline,
        arms=arms,
        trials=trials,
        max_attempts=max_attempts,
        # the report reads its claims from the ledger's copy of `report`
        report={**report, **claims, **({"ladder": ladder.as_meta()} if ladder else {})},
        cli_overrides=cli,
        equivalence=claims["equivalence"],
        paper=claims["paper"],
        tune=tune_spec(spec.get("tune"), src, seeds),
        bench=bench_spec(spec.get("bench"), src),
        stages=stages,
    )


def _own_steps(stages: Stages, arm: str, overrides: dict) -> bool:
    """A `from:` arm that sets `train.steps` trains that many steps, not the budget."""
    return arm in stages.parents and "train.steps" in overrides
