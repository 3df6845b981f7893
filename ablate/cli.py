"""Command line: `ablate train|list|run|status|report`. Heavy imports happen per command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_USAGE = 2  # bad input: config errors, unknown components


def cmd_train(args: argparse.Namespace) -> int:
    from ablate.config import config_hash, load_config
    from ablate.progress import TrialProgress
    from ablate.trainer import train

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / "train" / config_hash(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overrides.json").write_text(json.dumps(args.overrides))
    print(f"trial {config_hash(cfg)} -> {out}", file=sys.stderr)
    summary = train(cfg, out, resume=not args.restart,
                    callbacks=[TrialProgress(cfg.train.steps)])
    keys = ("status", "reason", "val_loss", "val_ppl", "tokens_per_s", "num_params")
    print(json.dumps({k: summary[k] for k in keys if summary.get(k) not in (None, "")}))
    return 0 if summary["status"] in ("done", "diverged") else 1


def cmd_list(args: argparse.Namespace) -> int:
    import dataclasses

    from ablate import registry
    from ablate.config import to_dict

    if args.plugins:
        registry.load_plugins(args.plugins)
    groups = [args.group] if args.group else list(registry.GROUPS)
    for group in groups:
        print(f"{group}:")
        for name in registry.names(group, args.pattern):
            cls = registry.get(group, name)
            defaults = to_dict(cls.Config())
            defaults.pop("name", None)
            fields = ", ".join(f"{f.name}={defaults[f.name]!r}"
                               for f in dataclasses.fields(cls.Config))
            print(f"  {name:<18} {fields}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablate", description="Ablation studies of LLM components.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one trial from a config file")
    t.add_argument("config", help="YAML config (may name a `base:` file)")
    t.add_argument("overrides", nargs="*", help="Hydra-style overrides, e.g. train.steps=500")
    t.add_argument("--out", help="trial directory (default runs/train/<config hash>)")
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.set_defaults(func=cmd_train)

    ls = sub.add_parser("list", help="list registered components with their config fields")
    ls.add_argument("group", nargs="?", help="one group (attention, ffn, router, ...)")
    ls.add_argument("--pattern", default="*", help="glob over names")
    ls.add_argument("--plugins", nargs="*", default=[], help="extra modules to import")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ablate.config import ConfigError

    try:
        return args.func(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # user-caused errors found after validation (data, plugins)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; completed checkpoints are kept (rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
