"""Training loop for one trial: AdamW, warm-up + cosine, clipping, exact evaluation, hooks,
atomic checkpoints with bit-identical resume, and divergence detection.

Outputs in the trial directory: config.yaml, metrics.jsonl (one JSON object per logged step),
checkpoint.pt, summary.json. The trainer never names a component: it calls every component's
`extra_losses`, `after_optimizer_step` and `metrics` hooks. Building a trial lives in
`ablate.core.trial`, checkpoints in `ablate.core.checkpoint`, evaluation in `ablate.core.evaluate`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ablate.core import data as data_mod
from ablate.core import distributed, repro, throughput
from ablate.core.checkpoint import CHECKPOINT, truncate_metrics
from ablate.core.config import Config, code_fingerprints, config_hash
from ablate.core.evaluate import collect_metrics, evaluate, final_metrics
from ablate.core.fsio import atomic_write_text
from ablate.core.interrupt import InterruptFlag
from ablate.core.memory import PeakMemory
from ablate.core.quant_eval import weight_quant_summary
from ablate.core.stages import init_record
from ablate.core.trial import Callback, Trial, setup
from ablate.posttrain.stage import run_post

METRICS = "metrics.jsonl"
TRAIN_KEYS = ("step", "loss", "lr", "grad_norm", "train_s", "tokens_per_s")  # not metrics
TIMING_SKIP = 5  # first steps excluded from tokens/s (allocator and cache warm-up)


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` at the last step (1-based step)."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / max(1, cfg.warmup_steps)
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, frac))) * (cfg.lr - cfg.min_lr)


def evaluates_at(step: int, tc) -> bool:
    """True at the steps a trial evaluates: every `eval_every`-th and the last."""
    return step % tc.eval_every == 0 or step == tc.steps


def _tokens_per_step(cfg: Config) -> int:
    return cfg.data.batch_size * cfg.data.seq_len * cfg.train.grad_accum


@dataclass
class _Progress:
    """What the summary reports; a resumed run starts from the last logged values."""

    start: int = 0  # step the run resumed from
    step: int = 0  # last step taken
    loss: float = math.nan  # last training loss
    last_eval: dict[str, float] = field(default_factory=dict)
    # Component metrics of the last train log row (counters reset when read, so keep them).
    last_metrics: dict[str, float] = field(default_factory=dict)
    logged_tps: float | None = None  # tokens/s logged before a resume
    train_s: float = 0.0  # all step time, evals excluded
    timed_s: float = 0.0  # step time after the first TIMING_SKIP steps of this process
    timed_tokens: int = 0
    status: str = "done"
    reason: str = ""

    def tokens_per_s(self) -> float | None:
        return self.timed_tokens / self.timed_s if self.timed_s else None


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
    t_start, memory = time.perf_counter(), PeakMemory.start()  # this trial's own peak
    run = setup(cfg, Path(out_dir), callbacks)
    prog = _resume(run, resume)
    run.model.train()
    interrupted = InterruptFlag()
    try:
        for step in range(prog.start + 1, cfg.train.steps + 1):
            prog.step = step
            taken = _train_step(run, prog, step)
            if taken is None:
                break  # diverged
            _log_eval_save(run, prog, step, *taken)
            if prog.status == "diverged":
                break  # non-finite validation loss
            if distributed.any_rank(interrupted.set, run.ranks) and step != cfg.train.steps:
                run.save(step)
                raise KeyboardInterrupt(f"interrupted after step {step}; checkpoint saved")
            if stop_after is not None and step >= stop_after:
                return {"status": "stopped", "steps": step}
        if prog.status == "done":  # the post.stages (none by default): ablate.posttrain.stage
            prog.last_metrics.update(run_post(run, interrupted, resume=resume))
        return _finish(run, prog, t_start, memory)
    finally:
        interrupted.restore()
        run.log_f.close()
        distributed.close(run.ranks)


def _resume(run: Trial, resume: bool) -> _Progress:
    """Restore the checkpoint (when resuming) or start afresh; open the metrics log."""
    ckpt_path, metrics_path = run.out / CHECKPOINT, run.out / METRICS
    start, history = 0, []  # history: records kept from before a resume
    if resume and ckpt_path.exists():  # every rank restores; rank 0 alone touches the log
        start = run.restore(ckpt_path)
        history = truncate_metrics(metrics_path, start) if run.ranks.main else []
    elif metrics_path.exists() and run.ranks.main:
        metrics_path.unlink()
    run.log_f = run.open_log(metrics_path)
    return _progress_from(history, start)


def _progress_from(history: list[dict], start: int) -> _Progress:
    """The last logged values (all of them when a run resumes at its end)."""
    rows = list(reversed(history))
    return _Progress(
        start=start,
        step=start,
        loss=next((r["loss"] for r in rows if "loss" in r), math.nan),
        last_eval=next(
            ({k: v for k, v in r.items() if k.startswith("val_")} for r in rows if "val_loss" in r),
            {},
        ),
        last_metrics=next(
            (
                {k: v for k, v in r.items() if k not in TRAIN_KEYS and "/" not in k}
                for r in rows
                if "loss" in r
            ),
            {},
        ),
        logged_tps=next((r["tokens_per_s"] for r in rows if r.get("tokens_per_s")), None),
    )


def _forward_backward(run: Trial, step: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Gradients of one step's micro-batches; the mean main loss and extra-loss terms."""
    tc = run.cfg.train
    loss_sum, extra_sums = 0.0, {}
    for micro in range(tc.grad_accum):
        x_BT, y_BT = data_mod.train_batch(run.corpus, run.cfg.data, tc.seed, step, micro)
        x_BT, y_BT = distributed.shard(x_BT, run.ranks), distributed.shard(y_BT, run.ranks)
        with run.precision.autocast():
            _, loss = run.forward(x_BT.to(run.device), y_BT.to(run.device))
        total = loss
        for c in run.comps:
            for k, v in c.extra_losses().items():
                total = total + v
                # kept on the device; read only when logged (no sync per micro-batch)
                extra_sums[k] = extra_sums.get(k, 0.0) + v.detach() / tc.grad_accum
        run.precision.scale_loss(total / tc.grad_accum).backward()  # fp16: loss scaling
        loss_sum += loss.item() / tc.grad_accum
    return distributed.mean(loss_sum, run.ranks), extra_sums  # the global batch's, on every rank


def _divergence(loss: float, step: int, tc) -> str:
    """Why the run diverged at this step, or "" when the loss is fine."""
    if not math.isfinite(loss):
        return f"non-finite training loss at step {step}"
    if step > tc.warmup_steps and loss > tc.loss_cap:
        return f"training loss {loss:.3f} above loss_cap {tc.loss_cap} at step {step}"
    return ""


def _train_step(
    run: Trial, prog: _Progress, step: int
) -> tuple[float, float, dict[str, torch.Tensor]] | None:
    """One optimizer step and its hooks; (lr, grad norm, extra losses), or None on divergence."""
    tc = run.cfg.train
    t0 = time.perf_counter()
    lr = lr_at(step, tc)
    for group in run.opt.param_groups:
        group["lr"] = lr
    prog.loss, extra_sums = _forward_backward(run, step)
    prog.reason = _divergence(prog.loss, step, tc)
    if prog.reason:
        prog.status = "diverged"
        run.emit({"step": step, "loss": prog.loss, "lr": lr})
        return None
    # a precision with loss scaling unscales here; on an inf/nan gradient the step is skipped
    overflow = distributed.any_rank(run.precision.unscale_grads(run.model), run.ranks)
    run.precision.update(overflow)
    grad_norm = math.nan if overflow else distributed.clip_grad_norm(run.model, tc.grad_clip)
    if not overflow:
        run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    for c in run.comps:
        c.after_optimizer_step()
    dt = time.perf_counter() - t0
    prog.train_s += dt
    if step - prog.start > TIMING_SKIP:
        prog.timed_s += dt
        prog.timed_tokens += _tokens_per_step(run.cfg)
    return lr, grad_norm, extra_sums


def _log_eval_save(
    run: Trial,
    prog: _Progress,
    step: int,
    lr: float,
    grad_norm: float,
    extra_sums: dict[str, torch.Tensor],
) -> None:
    """The step's train log row, evaluation and checkpoint, each when it is due."""
    tc = run.cfg.train
    if step % tc.log_every == 0 or step == tc.steps:
        record = {
            "step": step,
            "loss": prog.loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "train_s": prog.train_s,
            "tokens_per_s": prog.tokens_per_s(),
        }
        record.update({f"loss/{k}": distributed.mean(v, run.ranks) for k, v in extra_sums.items()})
        metrics = collect_metrics(run.model) | run.precision.metrics()
        record.update(metrics)
        prog.last_metrics = {k: v for k, v in metrics.items() if "/" not in k}
        run.emit(record)
    if evaluates_at(step, tc):
        prog.last_eval = evaluate(run.model, run.corpus, run.cfg, run.precision)
        run.emit({"step": step, "train_s": prog.train_s, **prog.last_eval})
        if not math.isfinite(prog.last_eval["val_loss"]):
            prog.status = "diverged"
            prog.reason = f"non-finite validation loss at step {step}"
            return  # no checkpoint of a diverged model
    if (tc.checkpoint_every and step % tc.checkpoint_every == 0) or step == tc.steps:
        run.save(step)


def _finish(run: Trial, prog: _Progress, t_start: float, memory: PeakMemory) -> dict[str, Any]:
    """Final metrics, summary.json (and git.diff when dirty); callbacks get the summary."""
    final = final_metrics(run.model, run.comps, run.corpus) if prog.status == "done" else {}
    summary = _summary(run, prog, final, t_start, memory) | distributed.settle(run.ranks)
    if not run.ranks.main:
        return summary
    if repro.git_info()["git_dirty"]:
        atomic_write_text(run.out / "git.diff", repro.git_info()["git_diff"])
    atomic_write_text(run.out / "summary.json", json.dumps(summary, indent=2))
    for cb in run.callbacks:
        cb(summary)
    return summary


def _summary(
    run: Trial, prog: _Progress, final: dict, t_start: float, memory: PeakMemory
) -> dict[str, Any]:
    model, tps = run.model, prog.tokens_per_s()
    tps = tps if tps is not None else prog.logged_tps
    last_eval = prog.last_eval if prog.status == "done" else {}  # diverged: no val result
    return {
        "status": prog.status,
        "reason": prog.reason,
        "steps": prog.step,
        "seed": run.cfg.train.seed,
        "config_hash": config_hash(run.cfg),
        "code": code_fingerprints(run.cfg),  # plugin module hashes (part of the id); {} if none
        "train_loss": prog.loss,
        "val_loss": last_eval.get("val_loss"),
        "val_ppl": last_eval.get("val_ppl"),
        "tokens_per_s": tps,
        "num_params": model.num_params(),
        "num_params_non_embedding": model.num_params(non_embedding=True),
        # FLOPs per token (ablate inspect's), x tokens trained, achieved FLOP/s, MFU
        **throughput.figures(run, prog.step * _tokens_per_step(run.cfg), tps),
        **memory.summary(run.device),  # this process's part of the trial: ablate.core.memory
        "wall_s": time.perf_counter() - t_start,
        "resumed_from": prog.start,
        **init_record(run.out),  # another trial's weights it started from: id, path, sha256
        "device": str(run.device),
        "vocab_size": model.cfg.vocab_size,
        "metrics": {**prog.last_metrics, **last_eval, **final},
        "precision": run.precision.summary(),
        "runtime": run.runtime,  # TF32 (None off CUDA), AdamW kernels, compile: ablate.core.runtime
        **weight_quant_summary(run, last_eval),  # eval.weight_quant; {} when none is listed
        "data": run.corpus.info,
        **{k: v for k, v in repro.git_info().items() if k != "git_diff"},
        "versions": repro.versions(),
        "hardware": repro.hardware(),
    }
