"""Command line: `ablate train|show|list|check|run|status|report|generate`; imports per command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ablate.cli_inspect import cmd_list, cmd_show
from ablate.cli_study import cmd_report, cmd_run, cmd_status, cmd_tune

EXIT_USAGE = 2  # bad input: config errors, unknown components
EXIT_IO = 74  # a filesystem fault: permissions, read-only, full disk (sysexits EX_IOERR)
EXIT_INTERRUPTED = 130  # Ctrl-C


def cmd_train(args: argparse.Namespace) -> int:
    if args.cfg:  # Hydra's `--cfg job`: print the resolved config, train nothing
        return cmd_show(argparse.Namespace(config=args.config, overrides=args.overrides, arm=None))
    from ablate.core.config import config_hash, from_layers, load_layers
    from ablate.core.preflight import preflight
    from ablate.core.trainer import train
    from ablate.study.progress import TrialProgress

    layers = load_layers(args.config)
    cfg = from_layers(layers, args.overrides)
    preflight(cfg, layers)  # data and memory, before --out is created
    out = Path(args.out) if args.out else Path("runs") / "train" / config_hash(cfg)
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:  # start the ranks; each reruns this
        return _torchrun(args, cfg, out)
    main_rank = os.environ.get("RANK", "0") == "0"
    out.mkdir(parents=True, exist_ok=True)
    if main_rank:
        (out / "overrides.json").write_text(json.dumps(args.overrides))
        print(f"trial {config_hash(cfg)} -> {out}", file=sys.stderr)
        for note in cfg.notes:  # fields a component switch dropped
            print(f"note: {note}", file=sys.stderr)
    summary = train(cfg, out, resume=not args.restart, callbacks=[TrialProgress(cfg.train.steps)])
    if not main_rank:
        return 0 if summary["status"] in ("done", "diverged") else 1
    keys = ("status", "reason", "val_loss", "val_ppl", "tokens_per_s", "num_params")
    print(json.dumps({k: summary[k] for k in keys if summary.get(k) not in (None, "")}))
    return 0 if summary["status"] in ("done", "diverged") else 1


def _torchrun(args: argparse.Namespace, cfg, out: Path) -> int:
    """`ablate train --nproc N`: the same command under torchrun on this node (DDP by default)."""
    import subprocess

    from ablate.core.distributed import torchrun_command

    extra = ["train.distributed=ddp"] if cfg.train.distributed == "none" else []
    argv = ["train", args.config, *args.overrides, *extra, "--out", str(out)]
    return subprocess.call(torchrun_command(args.nproc, argv + ["--restart"] * args.restart))


def cmd_check(args: argparse.Namespace) -> int:
    """Run the conformance checks on components: one line per check, 1 if any fails."""
    from ablate.testing import conformance_cases, run_case

    cases = conformance_cases(args.components, args.plugins)
    results = []
    for case in cases:
        results.append(run_case(case))
        print(results[-1].line(), flush=True)
    failed = sum(r.status == "FAIL" for r in results)
    skipped = sum(r.status == "skip" for r in results)
    print(f"{len(results) - failed - skipped} ok, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from ablate.infer.generate import generate, load_trial

    model, tokenizer = load_trial(args.trial)
    prompt = torch.tensor([tokenizer.encode(args.prompt)])
    ids = generate(
        model,
        prompt,
        args.tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        speculative=args.speculative,
        context_shift=args.context_shift,
    )
    print(tokenizer.decode(ids[0].tolist()))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Time every arm in one process (warmed up, interleaved); write speed.json, re-report."""
    from ablate.study.launch import ledger_path
    from ablate.study.speed import run_bench
    from ablate.study.speed_spec import override
    from ablate.study.sweep import load_sweep
    from ablate.study.tune import tuned_sweep

    sweep = tuned_sweep(load_sweep(args.sweep, args.overrides))  # a tune sweep: its final trials
    given = {k: getattr(args, k) for k in ("repetitions", "warmup", "steps", "decode_tokens")}
    spec = override(sweep.bench, given, "command line")
    print(f"speed: {run_bench(sweep, spec)}")
    if ledger_path(sweep).exists():  # the report's speed columns come from this file
        from ablate.report.html import render

        print(f"report: {render(sweep.run_dir, sweep.report_dir, sweep.report.get('title', ''))}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Parameters, KV cache, FLOPs, memory and cost of a config, built on the meta device."""
    from ablate.accounting.cost import parse_count
    from ablate.accounting.inspect import format_text, inspect
    from ablate.core.config import load_config

    cfg = load_config(args.config, args.overrides)
    report = inspect(
        cfg,
        int(parse_count(args.context)) if args.context else 0,
        tokens=parse_count(args.tokens) if args.tokens else 0.0,
        gpu=args.gpu or "",
        peak_dtype=args.peak_dtype,
        mfu=args.mfu or 0.0,
        hours=parse_count(args.gpu_hours) if args.gpu_hours else 0.0,
        price=args.price,
    )
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablate", description="Ablation studies of LLM components.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one trial from a config file")
    t.add_argument("config", help="YAML config (may name a `base:` file)")
    t.add_argument("overrides", nargs="*", help="Hydra-style overrides, e.g. train.steps=500")
    t.add_argument("--out", help="trial directory (default runs/train/<config hash>)")
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--cfg", choices=["job"], help="Hydra's `--cfg job`: same as `ablate show`")
    t.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes for one trial (torchrun here; DDP unless train.distributed=fsdp)",
    )
    t.set_defaults(func=cmd_train)

    sh = sub.add_parser("show", help="print the resolved config (of each arm of a sweep); no run")
    sh.add_argument("config", help="YAML config or sweep file")
    sh.add_argument("overrides", nargs="*", help="Hydra-style overrides, as for train or run")
    sh.add_argument("--arm", help="a sweep's arm: print only that one")
    sh.set_defaults(func=cmd_show)

    ls = sub.add_parser("list", help="list registered components with their config fields")
    ls.add_argument("group", nargs="?", help="one group (attention, ffn, router, ...)")
    ls.add_argument("--pattern", default="*", help="glob over names")
    ls.add_argument("--plugins", nargs="*", default=[], help="extra modules to import")
    ls.set_defaults(func=cmd_list)

    ck = sub.add_parser("check", help="run the conformance checks on registered components")
    ck.add_argument(
        "components", nargs="*", help="GROUP or GROUP/NAME (glob allowed); default: everything"
    )
    ck.add_argument("--plugins", nargs="*", default=[], help="modules to import first")
    ck.set_defaults(func=cmd_check)

    r = sub.add_parser("run", help="run (or resume) every trial of a sweep, then report")
    r.add_argument("sweep", help="sweep YAML file")
    r.add_argument("overrides", nargs="*", help="Hydra-style overrides applied to every arm")
    r.add_argument(
        "--workers",
        type=int,
        help="local worker processes (default: $ABLATE_WORKERS, else cores // train.threads)",
    )
    r.add_argument("--dry-run", action="store_true", help="print the trial table; train nothing")
    r.add_argument(
        "--force",
        "--allow-changed",
        dest="force",
        action="store_true",
        help="run even if the spec changed finished trials (old ones go inactive)",
    )
    r.add_argument(
        "--executor",
        choices=["local", "slurm", "submitit_local", "ray"],
        default="local",
        help="where trials run: local workers, SLURM (submitit), submitit's local processes, Ray",
    )
    r.add_argument("--cpus-per-trial", dest="cpus", type=int, default=1, help="CPUs per job")
    r.add_argument("--gpus-per-trial", dest="gpus", type=int, default=0, help="GPUs per trial")
    r.add_argument("--timeout-min", type=int, default=24 * 60, help="SLURM time limit per job")
    r.add_argument("--partition", default="", help="SLURM partition")
    r.add_argument("--ray-address", dest="address", default="", help="Ray cluster (or local)")
    r.add_argument("--no-bench", action="store_true", help="skip the speed benchmark after")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="time every arm of a sweep (warmed up, interleaved)")
    b.add_argument("sweep", help="sweep YAML file (its `bench:` section gives the defaults)")
    b.add_argument("overrides", nargs="*", help="Hydra-style overrides applied to every arm")
    b.add_argument("--repetitions", type=int, help="timed turns per arm")
    b.add_argument("--warmup", type=int, help="untimed turns per arm before them")
    b.add_argument("--steps", type=int, help="training steps per turn")
    b.add_argument("--decode-tokens", dest="decode_tokens", type=int, help="tokens per decode")
    b.set_defaults(func=cmd_bench)

    tu = sub.add_parser("tune", help="tune each arm (Optuna, `tune:` section), then run its seeds")
    tu.add_argument("sweep", help="sweep YAML file with a `tune:` section")
    tu.add_argument("overrides", nargs="*", help="Hydra-style overrides applied to every arm")
    shared = ("workers", "executor", "cpus", "gpus", "timeout_min", "partition", "address")
    for action in r._actions:  # the worker, executor and benchmark options of `run`
        if action.dest in (*shared, "no_bench"):
            tu._add_action(action)
    tu.set_defaults(func=cmd_tune)

    st = sub.add_parser("status", help="print a sweep's trial ledger")
    st.add_argument("sweep", help="sweep YAML file")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_status)

    rp = sub.add_parser("report", help="re-render a sweep's HTML report from its ledger")
    rp.add_argument("sweep", help="sweep YAML file")
    rp.set_defaults(func=cmd_report)

    ins = sub.add_parser("inspect", help="count params, FLOPs, memory and cost (meta device)")
    ins.add_argument("config", help="YAML config, e.g. sweeps/presets/deepseek_v3.yaml")
    ins.add_argument("overrides", nargs="*", help="Hydra-style overrides")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.add_argument("--context", help="attention context for FLOPs (default data.seq_len)")
    ins.add_argument("--tokens", help="training tokens for the cost, e.g. 14.8T")
    ins.add_argument("--gpu", help="GPU for the cost: h800, h100, h200, a100")
    ins.add_argument("--peak-dtype", default="bf16", help="peak the MFU refers to: bf16, fp8")
    ins.add_argument("--mfu", type=float, help="model FLOPs utilisation, e.g. 0.4")
    ins.add_argument("--gpu-hours", help="measured GPU-hours, e.g. 2.664M: gives the MFU")
    ins.add_argument("--price", type=float, default=2.0, help="dollars per GPU-hour")
    ins.set_defaults(func=cmd_inspect)

    g = sub.add_parser("generate", help="sample text from a trained trial's checkpoint")
    g.add_argument("trial", help="trial directory (holds config.yaml and checkpoint.pt)")
    g.add_argument("--prompt", default="\n", help="text to continue")
    g.add_argument("--tokens", type=int, default=200, help="new tokens to generate")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=0, help="sample from the k most likely (0 = all)")
    g.add_argument("--seed", type=int, default=None, help="seed for sampling")
    g.add_argument("--speculative", choices=["mtp"], help="draft with the MTP heads (greedy)")
    g.add_argument(
        "--context-shift",
        type=int,
        help="past max_seq_len the context window moves this many tokens at a time "
        "(default a quarter of it; 1 = exactly the last max_seq_len tokens)",
    )
    g.set_defaults(func=cmd_generate)

    from ablate.interop.cli import add_parsers as add_interop_parsers

    add_interop_parsers(sub)  # import-hf, export-hf, eval
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # overrides after an option (`train cfg --out d k=v`) are still overrides
        if not hasattr(args, "overrides") or any(e.startswith("-") for e in extra):
            parser.parse_args(argv)  # argparse's own error for what is really unknown
        args.overrides = [*args.overrides, *extra]
    from ablate.core.config import ConfigError
    from ablate.core.fsio import describe

    try:
        return args.func(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # user-caused errors found after validation (data, plugins)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # permissions, read-only or full filesystem: one line, no traceback
        print(f"error: {describe(e)}", file=sys.stderr)
        return EXIT_IO
    except KeyboardInterrupt:
        print(
            "interrupted: stopped after the last finished step; rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
