"""The post-training runner: the `post.stages` of a trial, after its pre-training.

Each stage gets a fresh optimizer (the trial precision's, AdamW with `train.beta1/beta2`) and a
warm-up + cosine schedule over its own steps. Rows go through the trial's metrics log and
callbacks (`step` continues after `train.steps`; `post_step` counts post-training updates over
all stages): per step reward, accuracy, mean response length and formatted share of the
sampled batch; at evaluation pass@1 over `eval_samples` samples per held-out prompt. The state
after a step (model, optimizer, stage state, RNG) goes to `post_checkpoint.pt`; the
pre-training checkpoint is never touched, so a crash resumes from one or the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ablate import registry
from ablate.core import runtime
from ablate.core.checkpoint import CHECKPOINT, rng_state, set_rng_state
from ablate.core.config import config_hash
from ablate.core.fsio import atomic_write, atomic_write_text
from ablate.core.trial import Trial, param_groups
from ablate.posttrain.context import PostContext

POST_CHECKPOINT = "post_checkpoint.pt"
METRICS = "metrics.jsonl"
EVAL_SEED = 12345  # held-out prompts and their samples: the same for every trial and step


@torch.no_grad()
def evaluate(ctx: PostContext) -> dict[str, float]:
    """pass@1 (mean correctness of `eval_samples` samples per prompt) on held-out prompts."""
    post = ctx.cfg.post
    problems = ctx.task.problems("test", post.eval_prompts, EVAL_SEED)
    ro = ctx.sample(problems, post.eval_samples, post.eval_temperature, EVAL_SEED)
    reward_B, _ = ctx.score(ro)
    m = ctx.rollout_metrics(ro, reward_B)
    return {
        "post_val_pass1": m["accuracy"],
        "post_val_format_frac": m["format_frac"],
        "post_val_response_len": m["response_len"],
        "post_val_reward": m["reward"],
    }


def _truncate(run: Trial, post_step: int) -> None:
    """Drop post rows past the resumed post step; reopen the log on the rewritten file."""
    path = run.out / METRICS
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip().endswith("}")]
    keep = [r for r in rows if r.get("post_step", -1) <= post_step]
    run.log_f.close()
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
    run.log_f = run.open_log(path)


def _save(run: Trial, ctx: PostContext, component, done: bool, **where: Any) -> None:
    state = {
        "config_hash": config_hash(run.cfg),
        "model": {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()},
        "optimizer": ctx.opt.state_dict(),
        "stage_state": component.state_dict(),
        "precision": run.precision.state_dict(),  # fp16's loss scale
        "rng": rng_state(),
        "done": done,
        **where,
    }
    atomic_write(run.out / POST_CHECKPOINT, lambda f: torch.save(state, f))


def _load(run: Trial) -> dict | None:
    path = run.out / POST_CHECKPOINT
    if not path.exists():
        return None
    state = torch.load(path, map_location=run.device, weights_only=False)
    if state["config_hash"] != config_hash(run.cfg):
        raise ValueError(f"{path} belongs to config {state['config_hash']}; use --restart")
    run.model.load_state_dict(state["model"])
    return state


def run_post(run: Trial, interrupted: Any = None, resume: bool = True) -> dict[str, float]:
    """Run (or resume) the trial's post-training stages; the final evaluation's numbers.

    `interrupted`: an object whose `set` turns true on Ctrl-C (a checkpoint is written first).
    `resume=False` starts post-training afresh (its checkpoint is removed).
    """
    from ablate.core.trainer import lr_at

    post, tc = run.cfg.post, run.cfg.train
    if not post.active():
        return {}
    if not resume:
        (run.out / POST_CHECKPOINT).unlink(missing_ok=True)
    ctx = PostContext.build(run.cfg, run.model, run.corpus.tokenizer, run.device, run.precision)
    ctx.trial_dir = run.out  # for references to other trials (ablate.core.stages)
    if not (run.out / CHECKPOINT).exists():
        run.save(tc.steps)  # no pre-training (train.steps 0): the starting weights, kept
    state = _load(run)
    post_step = state["post_step"] if state else 0
    _truncate(run, post_step)
    last_eval = state["last_eval"] if state else {}
    if state is None:
        last_eval = evaluate(ctx)
        run.emit({"step": tc.steps, "post_step": 0, **last_eval})
    active = [i for i, s in enumerate(post.stages) if registry.build(s, ctx).num_steps > 0]
    for i in active:
        if state and i < state["stage"]:
            continue
        scfg = post.stages[i]
        ctx.stage_idx, ctx.stage_cfg = i, scfg
        stage = registry.build(scfg, ctx)
        groups = param_groups(run.model, scfg.weight_decay)
        impl = runtime.adamw_kwargs(tc.optimizer_impl, run.device)
        ctx.opt = run.precision.build_optimizer(
            groups, lr=scfg.lr, betas=(tc.beta1, tc.beta2), **impl
        )
        start = 0
        if state and i == state["stage"]:
            ctx.opt.load_state_dict(state["optimizer"])
            stage.load_state_dict(state["stage_state"])
            run.precision.load_state_dict(state.get("precision") or run.precision.state_dict())
            set_rng_state(state["rng"])
            start, state = state["stage_step"], None
        else:
            stage.start()
        for s in range(start + 1, stage.num_steps + 1):
            lr = lr_at(s, scfg)
            for group in ctx.opt.param_groups:
                group["lr"] = lr
            out = stage.step(s)
            post_step += 1
            last = i == active[-1] and s == stage.num_steps
            row = {"step": tc.steps + post_step, "post_step": post_step, "post_stage": i}
            if post_step % post.log_every == 0 or s == stage.num_steps:
                out = {**out, **run.precision.metrics()}  # fp16: loss scale, skipped steps
                run.emit({**row, "post_lr": lr, **{f"post_{k}": v for k, v in out.items()}})
            if post_step % post.eval_every == 0 or last:
                last_eval = evaluate(ctx)
                run.emit({**row, **last_eval})
            where = dict(stage=i, stage_step=s, post_step=post_step, last_eval=last_eval)
            saving = post.checkpoint_every and post_step % post.checkpoint_every == 0
            if saving or s == stage.num_steps:
                _save(run, ctx, stage, last, **where)
            if interrupted is not None and interrupted.set and not last:
                _save(run, ctx, stage, False, **where)
                raise KeyboardInterrupt(f"interrupted after post step {post_step}; saved")
    return {**last_eval, "post_steps": post_step}


def final_weights(trial: str | Path) -> dict[str, torch.Tensor] | None:
    """The model state after a trial's finished post-training, or None (none ran or ended)."""
    path = Path(trial) / POST_CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["model"] if state["done"] else None
