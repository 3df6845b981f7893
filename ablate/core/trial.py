"""One trial's built objects: device, corpus, model with its precision transform, optimizer,
output directory and metrics log. The training loop (`ablate.core.trainer`) drives them.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from ablate import registry
from ablate.core import data as data_mod
from ablate.core import distributed, runtime
from ablate.core.checkpoint import CHECKPOINT, read_checkpoint, save_state, set_rng_state
from ablate.core.config import Config, config_hash, replace, to_yaml
from ablate.core.fsio import atomic_write_text
from ablate.core.model import Transformer
from ablate.interfaces import Component, components

Callback = Callable[[dict[str, Any]], None]


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; naming an absent CUDA device is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but no CUDA device is available")
    return torch.device(name)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices and embeddings, none on gains and biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def build(cfg: Config, device: torch.device, trial_dir: Path | None = None):
    """Corpus, model (vocab filled from the tokenizer, precision applied) and precision.

    `trial_dir`: the trial's own directory. A `trial:<id>` reference in `train.init_from`
    resolves against it (`ablate.core.stages`), and what was loaded is recorded there; without
    it such a reference is not loaded (for callers that load the trial's own weights next, or
    only time steps).
    """
    corpus = data_mod.load_corpus(cfg.data)
    mcfg = cfg.model
    if mcfg.vocab_size == 0:
        mcfg = replace(mcfg, vocab_size=corpus.tokenizer.vocab_size)
    elif mcfg.vocab_size < corpus.tokenizer.vocab_size:
        raise ValueError(
            f"model.vocab_size={mcfg.vocab_size} is smaller than the tokenizer's "
            f"{corpus.tokenizer.vocab_size}"
        )
    torch.manual_seed(cfg.train.seed)
    model = Transformer(mcfg).to(device)
    if cfg.train.init_from:  # after the seed's init, so the RNG stream is the same either way
        _init_from(model, cfg.train.init_from, trial_dir)
    precision = registry.build(cfg.train.precision, device)
    model = precision.apply(model)
    return corpus, model, precision


def _init_from(model: Transformer, value: str, trial_dir: Path | None) -> None:
    """Load `train.init_from`: another trial's final weights (recorded) or a checkpoint path."""
    from ablate.core import stages

    if not stages.is_ref(value):
        from ablate.interop.convert import init_weights

        init_weights(model, value)
    elif trial_dir is not None:
        record = stages.load_weights(model, value, trial_dir)
        trial_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(trial_dir / stages.RECORD, json.dumps(record, indent=2) + "\n")


@dataclass
class Trial:
    """The built objects of one trial, its output directory and its open metrics log."""

    cfg: Config
    out: Path
    device: torch.device
    corpus: Any
    model: Transformer
    precision: Any
    opt: torch.optim.Optimizer
    comps: list[Component]
    callbacks: Sequence[Callback]
    ranks: distributed.Ranks = distributed.Ranks()
    forward: torch.nn.Module | None = None  # what training forwards call: DDP or the model
    log_f: IO[str] | None = None  # metrics.jsonl, opened once the resume point is known
    runtime: dict[str, Any] = field(default_factory=dict)  # TF32, AdamW kernels, compile: as run

    def emit(self, record: dict) -> None:
        """Append one record to metrics.jsonl and hand it to every callback (rank 0 only)."""
        if not self.ranks.main:
            return
        self.log_f.write(json.dumps(record) + "\n")
        self.log_f.flush()
        for cb in self.callbacks:
            cb(record)

    def __post_init__(self) -> None:
        if self.forward is None:
            self.forward = self.model

    def open_log(self, path: Path) -> IO[str]:
        """metrics.jsonl for appending (a null file on ranks other than 0)."""
        return path.open("a") if self.ranks.main else open(os.devnull, "w")  # noqa: SIM115

    def restore(self, path: Path) -> int:
        """Load a checkpoint of this config (written at any world size); its step."""
        ckpt = read_checkpoint(path, config_hash(self.cfg), self.device)
        distributed.load_full_state(
            self.model, self.opt, ckpt["model"], ckpt["optimizer"], self.ranks
        )
        set_rng_state(ckpt["rng"])
        self.precision.load_state_dict(ckpt.get("precision", {}))
        return ckpt["step"]

    def save(self, step: int) -> None:
        """Checkpoint the state after `step` (gathered on every rank, written by rank 0)."""
        model_sd, opt_sd = distributed.full_state(self.model, self.opt, self.ranks)
        if self.ranks.main:
            prec = self.precision.state_dict()  # e.g. fp16's loss scale
            save_state(self.out / CHECKPOINT, model_sd, opt_sd, step, config_hash(self.cfg), prec)


def setup(cfg: Config, out: Path, callbacks: Sequence[Callback] = ()) -> Trial:
    """Seed, build model and optimizer, and write the trial's config.yaml."""
    out.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    torch.set_num_threads(tc.threads or 1)  # part of the trial id; 0 is read as 1
    device = resolve_device(tc.device)
    ranks = distributed.init(tc.distributed, cfg.data.batch_size, device)
    device = distributed.rank_device(device, ranks)
    random.seed(tc.seed)
    tf32 = runtime.set_tf32(tc.tf32, device)
    corpus, model, precision = build(cfg, device, out)
    forward = distributed.wrap(model, ranks, device)  # FSDP: the optimizer gets the shards
    opt = precision.build_optimizer(
        param_groups(model, tc.weight_decay),
        lr=tc.lr,
        betas=(tc.beta1, tc.beta2),
        **runtime.adamw_kwargs(tc.optimizer_impl, device),
    )
    impl = runtime.check_impl(opt, tc.optimizer_impl)
    forward = runtime.compiled(forward, tc.compile)
    if ranks.main:
        atomic_write_text(out / "config.yaml", to_yaml(cfg))
    comps = list(components(model))
    callbacks = callbacks if ranks.main else ()
    built = (cfg, out, device, corpus, model, precision, opt, comps, callbacks, ranks, forward)
    return Trial(*built, runtime=runtime.record(tc, impl, tf32))
