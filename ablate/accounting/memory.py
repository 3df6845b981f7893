"""Training memory: weights, gradients and optimizer state per precision, and activations.

Bytes per parameter by recipe (AdamW; m and v are the two moments):

    recipe   weights  gradients  fp32 master  m + v     total
    fp32     4        4          0            8 (fp32)  16
    bf16     2        2          4            8 (fp32)  16   (mixed precision as in ZeRO)
    fp8      1        4          4            4 (bf16)  13   (DeepSeek-V3 §3.3: fp32 master
                                                              and gradients, bf16 moments)

Activations per micro-batch of B x T tokens, without recomputation, 16-bit:
B * T * (34 * D * n_layers + 6 * V) bytes. 34 D per token per layer is Korthikanti et al. 2022
(arXiv 2205.05198, sbh * 34) for a Transformer layer whose attention scores are not stored
(flash attention); 6 V is the bf16 logits plus their fp32 copy for the loss. An estimate for a
dense layer with a 4D MLP: MoE experts and MLA latents store other widths.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp8": 1}
# recipe -> bytes per parameter of (weights, gradients, master copy, optimizer moments)
RECIPES: dict[str, tuple[int, int, int, int]] = {
    "fp32": (4, 4, 0, 8),
    "bf16": (2, 2, 4, 8),
    "fp8": (1, 4, 4, 4),
}
ACT_BYTES_PER_DIM_LAYER = 34  # Korthikanti et al. 2022, flash attention (no score matrix)
ACT_BYTES_PER_VOCAB = 6  # bf16 logits (2) + their fp32 copy for the cross-entropy (4)


@dataclass(frozen=True)
class TrainMemory:
    weights: int
    gradients: int
    master: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.master + self.optimizer


def train_memory(num_params: int) -> dict[str, TrainMemory]:
    """Bytes of weights, gradients, master copy and AdamW moments for each recipe."""
    return {r: TrainMemory(*(num_params * b for b in per)) for r, per in RECIPES.items()}


def activation_bytes(
    batch_size: int, seq_len: int, dim: int, num_layers: int, vocab_size: int
) -> int:
    """Activations one micro-batch stores for the backward (formula in the module docstring)."""
    per_token = ACT_BYTES_PER_DIM_LAYER * dim * num_layers + ACT_BYTES_PER_VOCAB * vocab_size
    return batch_size * seq_len * per_token
