"""Controlled speed measurement of a sweep's arms: one process, one thread count, arms interleaved.

A trial's own wall-clock throughput measures the machine's load as much as the arm, so the report
compares speed only from this phase. Every arm's model (the resolved config of its first seed,
with the trained checkpoint when there is one: MoE routing depends on the weights) is built in
one process, warmed up, then timed in turns A B C A B C ... for several repetitions. A turn
records the wall and the process CPU time of `steps` training steps; where the arms differ in
attention or MTP (or `contexts` are given), also prefill time and decode tokens/s at a few
context lengths through `ablate.infer.generate`. The load average before and after is kept with
the results in `<run dir>/speed.json`. Statistics and wording live in `ablate.report.speed`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from ablate.core import runtime
from ablate.core.config import to_dict
from ablate.core.fsio import atomic_write_text
from ablate.report.speed import FORMAT, SPEED_FILE, summarize
from ablate.study.speed_spec import BenchSpec


@dataclass(frozen=True)
class Clock:
    """Wall and process CPU time (all threads); tests pass fake ones."""

    wall: Callable[[], float] = time.perf_counter
    cpu: Callable[[], float] = time.process_time


def schedule(arms: Sequence[str], repetitions: int) -> list[str]:
    """The timed turns: every arm once per repetition, in sweep order (A B C A B C ...)."""
    return [a for _ in range(repetitions) for a in arms]


def interleave(
    arms: Sequence[str],
    work: Callable[[str], Any],
    spec: BenchSpec,
    clock: Clock,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, list[float]]]:
    """Warm every arm up, then time `work(arm)` in interleaved turns; per arm wall_s and cpu_s."""
    for arm in arms:
        for _ in range(spec.warmup):
            work(arm)
    out = {a: {"wall_s": [], "cpu_s": []} for a in arms}
    for arm in schedule(arms, spec.repetitions):
        sync()
        w0, c0 = clock.wall(), clock.cpu()
        work(arm)
        sync()
        out[arm]["wall_s"].append(clock.wall() - w0)
        out[arm]["cpu_s"].append(clock.cpu() - c0)
    return out


@dataclass
class ArmModel:
    """One arm's built model and what a training step needs."""

    name: str
    trial_id: str
    weights: str  # "checkpoint" (trained) or "fresh" (seed init)
    cfg: Any
    corpus: Any
    model: torch.nn.Module
    precision: Any
    opt: torch.optim.Optimizer
    device: torch.device
    steps_done: int = field(default=0)

    @property
    def tokens_per_step(self) -> int:
        d = self.cfg.data
        return d.batch_size * d.seq_len * self.cfg.train.grad_accum

    def train_step(self) -> None:
        """One optimizer step as the trainer takes it (batch, forward, extra losses, clip)."""
        from ablate.core import data as data_mod
        from ablate.core.distributed import clip_grad_norm
        from ablate.interfaces import components

        tc = self.cfg.train
        self.steps_done += 1
        comps = list(components(self.model))
        for micro in range(tc.grad_accum):
            x_BT, y_BT = data_mod.train_batch(
                self.corpus, self.cfg.data, tc.seed, self.steps_done, micro
            )
            with self.precision.autocast():
                _, loss = self.model(x_BT.to(self.device), y_BT.to(self.device))
            total = loss
            for c in comps:
                for v in c.extra_losses().values():
                    total = total + v
            (total / tc.grad_accum).backward()
            loss.item()  # the trainer reads each micro-batch's loss
        clip_grad_norm(self.model, tc.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        for c in comps:
            c.after_optimizer_step()


def build_arm(name: str, trial, trial_dir: Path) -> ArmModel:
    """The arm's model from its resolved config; the trained weights when a checkpoint exists."""
    from ablate.core.checkpoint import CHECKPOINT
    from ablate.core.trial import build, param_groups, resolve_device

    cfg = trial.cfg
    device = resolve_device(cfg.train.device)
    corpus, model, precision = build(cfg, device)
    weights = "fresh"
    if (trial_dir / CHECKPOINT).is_file():
        from ablate.interop.convert import trial_weights

        model.load_state_dict(trial_weights(trial_dir))
        weights = "checkpoint"
    tc = cfg.train
    opt = precision.build_optimizer(
        param_groups(model, tc.weight_decay),
        lr=tc.lr,
        betas=(tc.beta1, tc.beta2),
        **runtime.adamw_kwargs(tc.optimizer_impl, device),  # the kernels the trial steps with
    )
    model.train()
    return ArmModel(name, trial.trial_id, weights, cfg, corpus, model, precision, opt, device)


def _decode_differs(sweep) -> bool:
    """True when the arms differ in attention or MTP (decode speed can then differ)."""
    models = [to_dict(t.cfg)["model"] for t in sweep.trials]
    return any(
        len({json.dumps(m.get(k), sort_keys=True) for m in models}) > 1
        for k in ("attention", "mtp")
    )


def contexts_for(spec: BenchSpec, max_seq_len: int) -> list[int]:
    """Decode prompt lengths: the spec's, or an eighth and a half of the context window."""
    room = max_seq_len - spec.decode_tokens
    if spec.contexts:
        if max(spec.contexts) > room:
            raise ValueError(
                f"bench.contexts: {max(spec.contexts)} + bench.decode_tokens "
                f"{spec.decode_tokens} exceeds model.max_seq_len {max_seq_len}"
            )
        return sorted(set(spec.contexts))
    return sorted({c for c in (max_seq_len // 8, max_seq_len // 2) if 1 <= c <= room})


def _decode(arms: list[ArmModel], spec: BenchSpec, clock: Clock, sync) -> dict[str, dict]:
    """Prefill seconds and decode tokens/s per arm and context length, interleaved."""
    from ablate.infer.generate import generate
    from ablate.infer.speculative import find_drafter

    def speculative(a: ArmModel) -> bool:
        try:
            find_drafter(a.model)
        except ValueError:
            return False
        return True

    spec_of = {a.name: speculative(a) for a in arms}
    by_name = {a.name: a for a in arms}
    lengths = contexts_for(spec, min(a.model.cfg.max_seq_len for a in arms))
    out: dict[str, dict] = {a.name: {"speculative": spec_of[a.name]} for a in arms}
    for ctx in lengths:
        for n_new, key in ((1, "prefill"), (1 + spec.decode_tokens, "generate")):

            def work(name: str, n_new: int = n_new, ctx: int = ctx) -> None:
                a = by_name[name]
                prompt_BT = a.corpus.ids_N[:ctx][None].to(a.device)
                generate(a.model, prompt_BT, n_new, speculative=spec_of[name] or None)

            times = interleave(list(by_name), work, spec, clock, sync)
            for name, t in times.items():
                out[name].setdefault(str(ctx), {})[key] = t
    for name in out:
        for ctx in lengths:
            cell = out[name][str(ctx)]
            decode_s = [
                g - p for g, p in zip(cell["generate"]["wall_s"], cell["prefill"]["wall_s"])
            ]
            cell["decode_tokens_per_s"] = [spec.decode_tokens / max(d, 1e-9) for d in decode_s]
    return out


def _sync_for(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def measure(
    arms: list[ArmModel], spec: BenchSpec, clock: Clock, decode: bool
) -> dict[str, dict[str, Any]]:
    """Training step times (and decode, when asked) of every arm, interleaved."""
    sync = _sync_for(arms[0].device)
    by_name = {a.name: a for a in arms}

    def work(name: str) -> None:
        for _ in range(spec.steps):
            by_name[name].train_step()

    train = interleave(list(by_name), work, spec, clock, sync)
    decoded = _decode(arms, spec, clock, sync) if decode else {}
    out = {}
    for a in arms:
        wall = [w / spec.steps for w in train[a.name]["wall_s"]]
        cpu = [c / spec.steps for c in train[a.name]["cpu_s"]]
        out[a.name] = {
            "trial_id": a.trial_id,
            "weights": a.weights,
            "tokens_per_step": a.tokens_per_step,
            "step_wall_s": wall,
            "step_cpu_s": cpu,
            "tokens_per_s": summarize([a.tokens_per_step / max(w, 1e-12) for w in wall]),
            "step_ms": summarize([1000 * w for w in wall]),
            "cpu_step_ms": summarize([1000 * c for c in cpu]),
            "decode": _decode_summary(decoded.get(a.name, {})),
        }
    return out


def _decode_summary(cells: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"speculative": cells.get("speculative", False)}
    for ctx, cell in cells.items():
        if ctx == "speculative":
            continue
        out[ctx] = {
            "prefill_ms": summarize([1000 * w for w in cell["prefill"]["wall_s"]]),
            "decode_tokens_per_s": summarize(cell["decode_tokens_per_s"]),
            "raw": cell,
        }
    return out


def first_trials(sweep) -> dict[str, Any]:
    """Each arm's trial with the lowest seed, in sweep order: what the benchmark builds."""
    first = {}
    for t in sorted(sweep.trials, key=lambda t: t.seed):
        first.setdefault(t.arm, t)
    return first


def run_bench(
    sweep, spec: BenchSpec | None = None, clock: Clock = Clock(), stream: TextIO | None = None
) -> Path:
    """Measure every arm of `sweep` and write `<run dir>/speed.json`; returns its path.

    `stream` (notes on a busy machine): sys.stderr as it is at the call, not at import."""
    spec, stream = spec or sweep.bench, stream or sys.stderr
    first = first_trials(sweep)
    base_threads = first[sweep.baseline].cfg.train.threads
    threads = spec.threads or base_threads or 1
    before_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        load_before = os.getloadavg()
        arms = [build_arm(a, first[a], sweep.run_dir / "trials" / first[a].trial_id) for a in first]
        decode = bool(spec.contexts) or _decode_differs(sweep)
        t0 = time.perf_counter()
        results = measure(arms, spec, clock, decode)
        load_after = os.getloadavg()
    finally:
        torch.set_num_threads(before_threads)
    out = {
        "format": FORMAT,
        "sweep": sweep.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "spec": asdict(spec),
        "threads": threads,
        "cpus": os.cpu_count(),
        "load_before": list(load_before),
        "load_after": list(load_after),
        "host": platform.node(),
        "torch": torch.__version__,
        "device": str(arms[0].device),
        "order": schedule(list(first), spec.repetitions),
        "seconds": round(time.perf_counter() - t0, 3),
        "arms": results,
    }
    sweep.run_dir.mkdir(parents=True, exist_ok=True)
    path = sweep.run_dir / SPEED_FILE
    atomic_write_text(path, json.dumps(out, indent=2))
    busy = max(load_before[0], load_after[0]) > (os.cpu_count() or 1) - threads + 0.5
    if busy:
        print(
            f"note: load average {load_before[0]:.1f} -> {load_after[0]:.1f} on "
            f"{os.cpu_count()} cores: other work ran during the benchmark; its spread shows it",
            file=stream,
        )
    return path
