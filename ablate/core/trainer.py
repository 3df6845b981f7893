"""Training loop for one trial: AdamW, warm-up + cosine, clipping, exact evaluation, hooks,
atomic checkpoints with bit-identical resume, and divergence detection.

Outputs in the trial directory: config.yaml, metrics.jsonl (one JSON object per logged step),
checkpoint.pt, summary.json. The trainer never names a component: it calls every component's
`extra_losses`, `after_optimizer_step` and `metrics` hooks.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ablate import registry
from ablate.core import data as data_mod
from ablate.core import repro
from ablate.core.config import Config, code_fingerprints, config_hash, replace, to_yaml
from ablate.core.model import Transformer
from ablate.interfaces import components

CHECKPOINT = "checkpoint.pt"
TRAIN_KEYS = ("step", "loss", "lr", "grad_norm", "train_s", "tokens_per_s")  # not metrics
TIMING_SKIP = 5  # first steps excluded from tokens/s (allocator and cache warm-up)
Callback = Callable[[dict[str, Any]], None]


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` at the last step (1-based step)."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / max(1, cfg.warmup_steps)
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, frac))) * (cfg.lr - cfg.min_lr)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but no CUDA device is available")
    return torch.device(name)


def collect_metrics(model: torch.nn.Module) -> dict[str, float]:
    """Combine every component's `metrics()` by key: mean, or sum where it declares so."""
    values: dict[str, list[float]] = {}
    reduce: dict[str, str] = {}
    for c in components(model):
        for k, v in c.metrics().items():
            values.setdefault(k, []).append(float(v))
            reduce[k] = c.metric_reduce.get(k, "mean")
    return {k: sum(v) if reduce[k] == "sum" else sum(v) / len(v) for k, v in values.items()}


@torch.no_grad()
def evaluate(model: Transformer, corpus, cfg: Config, precision) -> dict[str, float]:
    """Exact mean next-token loss over the held-out windows, plus eval-mode metrics."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for x_BT, y_BT in data_mod.val_batches(corpus, cfg.data):
        with precision.autocast():
            logits_BTV, _ = model(x_BT.to(device))
        total += torch.nn.functional.cross_entropy(
            logits_BTV.flatten(0, 1).float(), y_BT.to(device).flatten(), reduction="sum"
        ).item()
        count += y_BT.numel()
    out = {"val_loss": total / count}
    out["val_ppl"] = math.exp(min(out["val_loss"], 50.0))
    out.update({f"val_{k}": v for k, v in collect_metrics(model).items()})
    model.train(was_training)
    return out


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def build(cfg: Config, device: torch.device):
    """Corpus, model (vocab filled from the tokenizer, precision applied) and precision."""
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
    precision = registry.build(cfg.train.precision, device)
    model = precision.apply(model)
    return corpus, model, precision


def train(
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool = True,
    callbacks: list[Callback] = (),
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) one trial in `out_dir` and return its summary.

    `callbacks` receive every logged record (train and eval rows) and, last, the summary
    (with key "status"). `stop_after` ends the process-local loop early (tests of resume).
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = resolve_device(tc.device)
    random.seed(tc.seed)
    corpus, model, precision = build(cfg, device)
    comps = list(components(model))
    opt = precision.build_optimizer(
        _param_groups(model, tc.weight_decay), lr=tc.lr, betas=(tc.beta1, tc.beta2)
    )
    (out / "config.yaml").write_text(to_yaml(cfg))
    start = 0
    ckpt_path = out / CHECKPOINT
    metrics_path = out / "metrics.jsonl"
    history: list[dict] = []  # records kept from before a resume
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt["config_hash"] != config_hash(cfg):
            raise ValueError(
                f"{ckpt_path} belongs to config {ckpt['config_hash']}, not "
                f"{config_hash(cfg)}; use another output directory or --restart"
            )
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"])
        start = ckpt["step"]
        history = _truncate_metrics(metrics_path, start)
    elif metrics_path.exists():
        metrics_path.unlink()
    log_f = metrics_path.open("a")

    def emit(record: dict) -> None:
        log_f.write(json.dumps(record) + "\n")
        log_f.flush()
        for cb in callbacks:
            cb(record)

    def save(step: int) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "rng": _rng_state(),
            "step": step,
            "config_hash": config_hash(cfg),
        }
        _atomic_write(ckpt_path, lambda p: torch.save(state, p))

    # A resumed run starts from the last logged values (all of them when it resumes at the end).
    status, reason = "done", ""
    loss_val = next((r["loss"] for r in reversed(history) if "loss" in r), float("nan"))
    last_eval = next(
        (
            {k: v for k, v in r.items() if k.startswith("val_")}
            for r in reversed(history)
            if "val_loss" in r
        ),
        {},
    )
    logged_tps = next((r["tokens_per_s"] for r in reversed(history) if r.get("tokens_per_s")), None)
    # Component metrics of the last train log row (counters reset when read, so keep them).
    last_metrics = next(
        (
            {k: v for k, v in r.items() if k not in TRAIN_KEYS and "/" not in k}
            for r in reversed(history)
            if "loss" in r
        ),
        {},
    )
    timed_s, timed_tokens, train_s = 0.0, 0, 0.0  # train_s: all step time, evals excluded
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len * tc.grad_accum
    model.train()
    step = start
    interrupted = _InterruptFlag()
    for step in range(start + 1, tc.steps + 1):
        t0 = time.perf_counter()
        lr = lr_at(step, tc)
        for group in opt.param_groups:
            group["lr"] = lr
        loss_sum, extra_sums = 0.0, {}
        for micro in range(tc.grad_accum):
            x_BT, y_BT = data_mod.train_batch(corpus, cfg.data, tc.seed, step, micro)
            with precision.autocast():
                _, loss = model(x_BT.to(device), y_BT.to(device))
            total = loss
            for c in comps:
                for k, v in c.extra_losses().items():
                    total = total + v
                    # kept on the device; read only when logged (no sync per micro-batch)
                    extra_sums[k] = extra_sums.get(k, 0.0) + v.detach() / tc.grad_accum
            (total / tc.grad_accum).backward()
            loss_sum += loss.item() / tc.grad_accum
        loss_val = loss_sum
        if not math.isfinite(loss_val) or (step > tc.warmup_steps and loss_val > tc.loss_cap):
            status = "diverged"
            reason = (
                f"non-finite training loss at step {step}"
                if not math.isfinite(loss_val)
                else f"training loss {loss_val:.3f} above loss_cap {tc.loss_cap} at step {step}"
            )
            emit({"step": step, "loss": loss_val, "lr": lr})
            break
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip).item()
            if tc.grad_clip > 0
            else float("nan")
        )
        opt.step()
        opt.zero_grad(set_to_none=True)
        for c in comps:
            c.after_optimizer_step()
        dt = time.perf_counter() - t0
        train_s += dt
        if step - start > TIMING_SKIP:
            timed_s += dt
            timed_tokens += tokens_per_step
        if step % tc.log_every == 0 or step == tc.steps:
            record = {
                "step": step,
                "loss": loss_val,
                "lr": lr,
                "grad_norm": grad_norm,
                "train_s": train_s,
                "tokens_per_s": timed_tokens / timed_s if timed_s else None,
            }
            record.update({f"loss/{k}": float(v) for k, v in extra_sums.items()})
            metrics = collect_metrics(model)
            record.update(metrics)
            last_metrics = {k: v for k, v in metrics.items() if "/" not in k}
            emit(record)
        if step % tc.eval_every == 0 or step == tc.steps:
            last_eval = evaluate(model, corpus, cfg, precision)
            emit({"step": step, "train_s": train_s, **last_eval})
        if (tc.checkpoint_every and step % tc.checkpoint_every == 0) or step == tc.steps:
            save(step)
        if interrupted.set and step != tc.steps:  # Ctrl-C: finish the step, keep it, stop
            save(step)
            log_f.close()
            interrupted.restore()
            raise KeyboardInterrupt(f"interrupted after step {step}; checkpoint saved")
        if stop_after is not None and step >= stop_after:
            log_f.close()
            interrupted.restore()
            return {"status": "stopped", "steps": step}
    interrupted.restore()
    log_f.close()
    final = _final_metrics(model, comps, corpus) if status == "done" else {}
    summary = {
        "status": status,
        "reason": reason,
        "steps": step,
        "seed": tc.seed,
        "config_hash": config_hash(cfg),
        "code": code_fingerprints(cfg),  # plugin module hashes (part of the id); {} if none
        "train_loss": loss_val,
        "val_loss": last_eval.get("val_loss"),
        "val_ppl": last_eval.get("val_ppl"),
        "tokens_per_s": timed_tokens / timed_s if timed_s else logged_tps,
        "num_params": model.num_params(),
        "num_params_non_embedding": model.num_params(non_embedding=True),
        "peak_mem_mb": _peak_mem_mb(device),
        "wall_s": time.perf_counter() - t_start,
        "resumed_from": start,
        "device": str(device),
        "vocab_size": model.cfg.vocab_size,
        "metrics": {**last_metrics, **last_eval, **final},
        "precision": precision.summary(),
        "data": corpus.info,
        **{k: v for k, v in repro.git_info().items() if k != "git_diff"},
        "versions": repro.versions(),
        "hardware": repro.hardware(),
    }
    if repro.git_info()["git_dirty"]:
        (out / "git.diff").write_text(repro.git_info()["git_diff"])
    _atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
    for cb in callbacks:
        cb(summary)
    return summary


@torch.no_grad()
def _final_metrics(model, comps, corpus) -> dict[str, float]:
    model.eval()
    out: dict[str, float] = {}
    for c in comps:
        out.update(c.final_metrics(model, corpus))
    model.train()
    return out


class _InterruptFlag:
    """Turns SIGINT into a flag checked between steps, so a checkpoint is written first."""

    def __init__(self) -> None:
        self.set = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.set:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.set = True

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def _truncate_metrics(path: Path, step: int) -> list[dict]:
    """Drop records past the checkpoint so a resumed run logs each step once; return the rest."""
    if not path.exists():
        return []
    keep = [
        r
        for r in map(json.loads, filter(str.strip, path.read_text().splitlines()))
        if r.get("step", 0) <= step
    ]
    _atomic_write(path, lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in keep)))
    return keep
