"""`ablate show` and `ablate list`: print resolved configs and registered components; no run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_show(args: argparse.Namespace) -> int:
    """Print the resolved config of a config file, or of each arm of a sweep file, as YAML."""
    from ablate.core.config import ConfigError, load_config, read_yaml, to_yaml

    spec = read_yaml(Path(args.config))
    if not ({"seeds", "arms", "grid", "zip"} & set(spec)):
        if args.arm:
            raise ConfigError(args.config, "", "--arm needs a sweep file (this is a config)")
        print(to_yaml(load_config(args.config, args.overrides)), end="")
        return 0
    from ablate.study.sweep import load_sweep

    sweep = load_sweep(args.config, args.overrides)
    if args.arm and args.arm not in sweep.arms:
        raise ConfigError(
            args.config, "arms", f"no arm {args.arm!r} (arms: {', '.join(sweep.arms)})"
        )
    first = {}  # arm -> its first seed's trial
    for trial in sweep.trials:
        first.setdefault(trial.arm, trial)
    shown = [t for arm, t in first.items() if args.arm in (None, arm)]
    for i, trial in enumerate(shown):
        print("---" if i else "", end="\n" if i else "")
        print(f"# arm {trial.arm}, seed {trial.seed}, trial {trial.trial_id}")
        print("# (the other seeds differ in train.seed only)")
        print(to_yaml(trial.cfg), end="")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Every registered component, then one line per config field: default and description.

    Printed from a cache keyed by the sources it is built from (see `ablate.listing_cache`), so
    a repeated `ablate list` skips importing torch and the components; plugins bypass it.
    """
    from ablate import listing_cache

    key = None if args.plugins else listing_cache.key(args.group, args.pattern)
    text = listing_cache.read(key) if key else None
    if text is None:
        text = _listing(args.group, args.pattern, args.plugins)
        if key:
            listing_cache.write(key, text)
    print(text, end="")
    return 0


def _listing(group: str | None, pattern: str, plugins: list[str]) -> str:
    import dataclasses

    from ablate import registry
    from ablate.core.config import to_dict
    from ablate.core.fielddoc import field_help

    if plugins:
        registry.load_plugins(plugins)
    lines = []
    for g in [group] if group else list(registry.GROUPS):
        lines.append(f"{g}:")
        for name in registry.names(g, pattern):
            cls = registry.get(g, name)
            doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
            lines.append(f"  {name:<18} {doc[0] if doc else ''}".rstrip())
            defaults = to_dict(cls.Config())
            helps = field_help(cls.Config)
            for f in dataclasses.fields(cls.Config):
                if f.name != "name":
                    value = f"{f.name}={defaults[f.name]!r}"
                    lines.append(f"      {value:<30} {helps.get(f.name, '')}".rstrip())
    return "".join(line + "\n" for line in lines)
