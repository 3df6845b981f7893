"""Quality per token and time against nanoGPT's CPU baseline (../shared/baselines.md).

Trains `sweeps/base/shakespeare_char.yaml` (2000 steps x 768 tokens) and reports the exact
full-split validation loss, the first evaluated step at which it is at or below nanoGPT's
1.898, and the training wall time to that step (evaluation time excluded).

    ABLATE_DATA_DIR=../shared/data python benchmarks/shakespeare_quality.py [overrides...]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ablate.config import load_config
from ablate.trainer import train

CONFIG = Path(__file__).resolve().parent.parent / "sweeps" / "base" / "shakespeare_char.yaml"
NANOGPT_VAL_LOSS, NANOGPT_WALL_S = 1.898, 83.0


def main() -> None:
    cfg = load_config(CONFIG, sys.argv[1:])
    with tempfile.TemporaryDirectory() as d:
        summary = train(cfg, d)
        evals = [json.loads(line) for line in Path(d, "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if "val_loss" in r]
    first = next((r for r in evals if r["val_loss"] <= NANOGPT_VAL_LOSS), None)
    for r in evals:
        print(f"step {r['step']:5d}  val_loss {r['val_loss']:.4f}  train_s {r['train_s']:.1f}")
    print(f"final exact val loss {summary['val_loss']:.4f} (nanoGPT {NANOGPT_VAL_LOSS}); "
          f"{summary['num_params']:,} params; {summary['tokens_per_s']:,.0f} tokens/s")
    if first:
        print(f"passes {NANOGPT_VAL_LOSS} at step {first['step']} after {first['train_s']:.1f} s "
              f"of training (nanoGPT: {NANOGPT_WALL_S:.0f} s for 2000 steps; "
              f"ratio {first['train_s'] / NANOGPT_WALL_S:.2f})")
    else:
        print(f"never reached {NANOGPT_VAL_LOSS}")


if __name__ == "__main__":
    main()
