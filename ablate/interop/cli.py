"""`ablate import-hf`, `ablate export-hf` and `ablate eval` (perplexity of any checkpoint)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_import_hf(args: argparse.Namespace) -> int:
    import components  # noqa: F401 (registers the components the mapping names)
    from ablate.interop.convert import import_hf

    out = Path(args.out) if args.out else Path("runs") / "imported" / Path(args.dir).name
    import_hf(args.dir, out, args.overrides)
    print(f"imported {args.dir} -> {out}", file=sys.stderr)
    return 0


def cmd_export_hf(args: argparse.Namespace) -> int:
    import components  # noqa: F401
    from ablate.interop.convert import export_hf

    export_hf(args.trial, args.out)
    print(f"exported {args.trial} -> {args.out}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    import components  # noqa: F401
    from ablate import registry
    from ablate.core import data as data_mod
    from ablate.infer.perplexity import perplexity
    from ablate.interop.convert import load_model

    path = Path(args.data)
    if not path.is_file():
        raise ValueError(f"--data: no such file {path}")
    text = path.read_text(encoding="utf-8")
    cfg, model = load_model(args.checkpoint, args.device)
    if (Path(args.checkpoint) / "config.yaml").is_file():  # the tokenizer the trial trained with
        tokenizer = data_mod.load_corpus(cfg.data).tokenizer
    else:  # an HF checkpoint: bytes (the harness has no BPE tokenizer)
        tokenizer = registry.build(cfg.data.tokenizer)
        tokenizer.fit(text)
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise ValueError(
            f"{path}: {tokenizer.vocab_size} token ids, the model has {cfg.model.vocab_size}"
        )
    ids_N = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    result = perplexity(model, ids_N, args.seq_len or cfg.model.max_seq_len)
    print(json.dumps({"checkpoint": str(args.checkpoint), "data": str(path), **result}))
    return 0


def add_parsers(sub) -> None:
    """Register the interop commands on the main parser's subcommands."""
    im = sub.add_parser("import-hf", help="import an HF DeepSeek-V2/V3 checkpoint as a trial dir")
    im.add_argument("dir", help="local directory with config.json and *.safetensors")
    im.add_argument("overrides", nargs="*", help="overrides on the mapped config (e.g. data.*)")
    im.add_argument("--out", help="trial directory (default runs/imported/<dir name>)")
    im.set_defaults(func=cmd_import_hf)

    ex = sub.add_parser("export-hf", help="write a trial as an HF DeepSeek checkpoint")
    ex.add_argument("trial", help="trial directory (config.yaml and its weights)")
    ex.add_argument("out", help="output directory (config.json + model.safetensors)")
    ex.set_defaults(func=cmd_export_hf)

    ev = sub.add_parser("eval", help="perplexity of a checkpoint (trial or HF dir) on a text file")
    ev.add_argument("checkpoint", help="trial directory or HF DeepSeek checkpoint directory")
    ev.add_argument("--data", required=True, help="UTF-8 text file to score")
    ev.add_argument("--seq-len", type=int, default=0, help="window length (0 = max_seq_len)")
    ev.add_argument("--device", default="cpu", help="cpu or cuda")
    ev.set_defaults(func=cmd_eval)
