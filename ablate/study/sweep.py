"""Sweep files: schema, validation and expansion into trials (arms come from `study.arms`).

A sweep resolves every trial (arm x seed) to a validated `Config` before anything runs; each
trial's id is the hash of its resolved config. Errors name the sweep file and the dotted sweep
key (`arms.mla.model.attention.kv_lora_rank`), like the core's config errors.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
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
from ablate.study.arms import expand_arms, mapping, nest
from ablate.study.claims import equivalence, paper
from ablate.study.ladder import expand_ladder
from ablate.study.speed_spec import BenchSpec, bench_spec
from ablate.study.tune_spec import tune_spec

TOP_KEYS = (
    "name",
    "base",
    "seeds",
    "budget",
    "baseline",
    "overrides",
    "plugins",
    "tracking",
    "report",
    "max_attempts",
    "grid",
    "zip",
    "arms",
    "equivalence",
    "paper",
    "tune",
    "bench",
    "ladder",
)
DEFAULT_MAX_ATTEMPTS = 2  # a failed trial is started at most this many times in total
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # sweep names become directory names
_SOURCE_MARK = "sweep::"  # layer sources we add, so validation errors map back to sweep keys


@dataclass(frozen=True)
class Trial:
    arm: str
    seed: int
    overrides: dict[str, Any]  # the arm's dotted-key overrides (without budget / seed)
    cfg: Config
    trial_id: str  # config_hash(cfg)


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


def _int(value: Any, src: str, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(src, key, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _read_spec(path: Path) -> tuple[dict, str]:
    from ablate.core.config import read_yaml

    spec = read_yaml(path)
    src = str(path)
    for key in spec:
        if key not in TOP_KEYS:
            raise ConfigError(
                src, str(key), "unknown sweep key", difflib.get_close_matches(str(key), TOP_KEYS)
            )
    for key in ("name", "base", "seeds", "budget", "baseline"):
        if key not in spec:
            raise ConfigError(src, key, "required sweep key is missing")
    if not isinstance(spec["name"], str) or not _NAME_RE.match(spec["name"]):
        raise ConfigError(
            src,
            "name",
            "must be letters, digits, '_', '-' or '.' (it names "
            f"runs/<name>/), got {spec['name']!r}",
        )
    return spec, src


def _budget(spec: dict, src: str) -> dict[str, int]:
    budget = mapping(spec["budget"], src, "budget")
    if len(budget) != 1 or next(iter(budget)) not in ("steps", "tokens"):
        raise ConfigError(src, "budget", f"expected {{steps: N}} or {{tokens: N}}, got {budget!r}")
    kind, value = next(iter(budget.items()))
    return {kind: _int(value, src, f"budget.{kind}", minimum=1)}


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
    spec, src = _read_spec(path)
    cli = tuple(cli_overrides)
    if not isinstance(spec["base"], str):
        raise ConfigError(src, "base", "must be a path to a YAML file (relative to the sweep)")
    base_path = path.parent / spec["base"]
    base = load_layers(base_path)
    seeds = spec["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(src, "seeds", f"expected a non-empty list of integers, got {seeds!r}")
    seeds = tuple(_int(s, src, f"seeds[{i}]") for i, s in enumerate(seeds))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(src, "seeds", f"duplicate seeds in {list(seeds)}")
    budget = _budget(spec, src)
    max_attempts = _int(spec.get("max_attempts", DEFAULT_MAX_ATTEMPTS), src, "max_attempts", 1)
    overrides = mapping(spec.get("overrides"), src, "overrides")
    common: list[tuple[str, dict]] = [("overrides", nest(overrides, src, "overrides."))]
    plugins = spec.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(src, "plugins", f"expected a list of module names, got {plugins!r}")
    if plugins:
        common.append(("", {"plugins": plugins}))
    common.append(("tracking", {"tracking": mapping(spec.get("tracking"), src, "tracking")}))
    report = mapping(spec.get("report"), src, "report")
    for key in report:
        if key not in ("dir", "title"):
            raise ConfigError(
                src,
                f"report.{key}",
                "unknown report option",
                difflib.get_close_matches(str(key), ("dir", "title")),
            )
    arms, where, ladder = expand_ladder(spec, src, *expand_arms(spec, src))
    baseline = ladder.name(ladder.baseline, ladder.rungs[0]) if ladder else spec["baseline"]
    steps_by_arm: dict[str, int] = {}
    for arm, overrides in arms.items():
        layers = [*common, ("arm", nest(overrides, src, f"arms.{arm}."))]
        cfg = _resolve(base, layers, cli, src, where[arm], arm, check_data)
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
    trials, seen = [], {}
    for arm, overrides in arms.items():
        for seed in seeds:
            layers = [
                *common,
                ("arm", nest(overrides, src, f"arms.{arm}.")),
                ("budget", {"train": {"steps": steps, "seed": seed}}),
            ]
            cfg = _resolve(base, layers, cli, src, where[arm], arm)
            trial = Trial(arm, seed, dict(overrides), cfg, config_hash(cfg))
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
    claims = {"equivalence": equivalence(spec, src), "paper": paper(spec, src, arms)}
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
    )
