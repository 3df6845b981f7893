"""Decode tokens/s of plain greedy vs MTP-speculative greedy decoding, with measured acceptance.

Each model is either a trained trial (`--trial DIR`: its config.yaml and checkpoint.pt, e.g.
from `ablate run sweeps/mtp.yaml`) or one trained here for `--train-steps` steps on
`sweeps/base/small.yaml` with the given width/depth overrides. Decoding: `--prompts` held-out
prompts of 32 tokens, `--new` tokens each, batch 1, plain and speculative timed in the same
process, alternating, `--repeats` times (median). Both outputs are checked to be identical.
Cost ratio c = time of one speculative round / time of one plain decode step; for D = 1 the
speed-up is (1 + acceptance) / c, so c - 1 is the acceptance needed to break even.

    python benchmarks/bench_speculative.py --trial runs/mtp/<trial>          # a trained trial
    python benchmarks/bench_speculative.py --train-steps 150 model.dim=512 model.num_layers=8 \
        model.num_heads=8 model.mtp.name=mtp
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ablate.core.config import load_config, replace
from ablate.core.data import load_corpus
from ablate.core.model import Transformer
from ablate.core.trainer import train
from ablate.infer.generate import generate
from ablate.infer.speculative import SpecStats, speculative_generate
from ablate.interop.convert import trial_weights

REPO = Path(__file__).resolve().parent.parent
PROMPT_LEN = 32


def load_model(trial: Path | None, steps: int, overrides: list[str]):
    """(model, corpus, label): a trial's checkpoint, or a model trained here for `steps`."""
    if trial is None:
        cfg = load_config(
            REPO / "sweeps/base/small.yaml",
            [
                *overrides,
                f"train.steps={steps}",
                "train.eval_every=100000",
                "tracking.wandb=disabled",
                "model.mtp.spec_prompts=0",
                "train.checkpoint_every=0",
            ],
        )
        trial = Path(tempfile.mkdtemp(prefix="bench_spec_"))
        train(cfg, trial, resume=False)
    cfg = load_config(trial / "config.yaml")
    corpus = load_corpus(cfg.data)
    model = Transformer(replace(cfg.model, vocab_size=corpus.tokenizer.vocab_size))
    model.load_state_dict(trial_weights(trial))  # checkpoint.pt + model.safetensors
    m = cfg.model
    label = f"dim {m.dim}, {m.num_layers} layers, MTP depth {m.mtp.depth}"
    return model.eval(), corpus, label


def measure(model, prompts_NP: torch.Tensor, new: int, repeats: int) -> dict[str, float]:
    plain_s, spec_s = [], []
    speculative_generate(model, prompts_NP[:1], 4)  # warm-up
    for _ in range(repeats):
        stats = SpecStats()
        t0 = time.perf_counter()
        plain = [generate(model, p[None], new) for p in prompts_NP]
        plain_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        spec = [speculative_generate(model, p[None], new, stats=stats) for p in prompts_NP]
        spec_s.append(time.perf_counter() - t0)
        assert all(torch.equal(a, b) for a, b in zip(plain, spec)), "speculative != greedy"
    tokens = len(prompts_NP) * new
    p_s, s_s = statistics.median(plain_s), statistics.median(spec_s)
    rounds = stats.verify_forwards
    return {
        "plain_tok_s": tokens / p_s,
        "spec_tok_s": tokens / s_s,
        "speedup": p_s / s_s,
        "accept": stats.acceptance(),
        "tokens_per_forward": stats.tokens_per_forward(),
        "cost_ratio": (s_s / rounds) / (p_s / tokens),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trial", type=Path, help="trained trial directory")
    p.add_argument("--train-steps", type=int, default=150)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="config overrides when training here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, corpus, label = load_model(args.trial, args.train_steps, args.overrides)
    val = corpus.val_N
    starts = torch.linspace(0, len(val) - PROMPT_LEN - 1, args.prompts).long()
    prompts_NP = torch.stack([val[s : s + PROMPT_LEN] for s in starts])
    r = measure(model, prompts_NP, args.new, args.repeats)
    accept = ", ".join(f"{a:.3f}" for a in r["accept"])
    print(
        f"| {label} | {r['plain_tok_s']:.0f} | {r['spec_tok_s']:.0f} | {r['speedup']:.2f} | "
        f"{accept} | {r['tokens_per_forward']:.2f} | {r['cost_ratio']:.2f} |"
    )


if __name__ == "__main__":
    main()
