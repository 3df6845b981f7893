"""Decoder-only Transformer whose slots (attention, FFN, norm, MTP) come from the registry.

Pre-norm blocks: x + attn(norm(x)), then x + ffn(norm(x)); a final norm and an output head
(optionally tied to the token embedding). Shapes (docs/design.md#shapes): B batch, T time,
D width, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ablate import registry
from ablate.core.config import ModelConfig
from ablate.interfaces import BuildContext


class Block(nn.Module):
    """One pre-norm Transformer block built from the model config's slots."""

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        ctx = BuildContext(cfg, layer_idx)
        self.attn_norm = registry.build(cfg.norm, cfg.dim)
        self.attn = registry.build(cfg.attention, ctx)
        self.ffn_norm = registry.build(cfg.norm, cfg.dim)
        self.ffn = registry.build(cfg.ffn, ctx)

    def forward(
        self,
        x_BTD: torch.Tensor,
        *,
        start_pos: int = 0,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x_BTD = x_BTD + self.attn(self.attn_norm(x_BTD), start_pos=start_pos, cache=cache)
        return x_BTD + self.ffn(self.ffn_norm(x_BTD))


class Transformer(nn.Module):
    """The model; `forward` returns (logits, main next-token loss or None)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError(
                "model.vocab_size must be set (the trainer fills it from the tokenizer)"
            )
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.final_norm = registry.build(cfg.norm, cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.apply(self._init)
        # MTP builds extra blocks through this context; its own layer indices follow the trunk's.
        # Built and initialised after the trunk, so one seed gives the same trunk with or
        # without MTP (paired ablation arms start from identical main weights).
        self.mtp = registry.build(cfg.mtp, BuildContext(cfg, -1, lambda i: Block(cfg, i)))
        self.mtp.apply(self._init)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=self.cfg.init_std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def logits(self, h_BTD: torch.Tensor) -> torch.Tensor:
        """Output head over a pre-final-norm hidden state: (B, T, D) -> (B, T, V)."""
        return self.head(self.final_norm(h_BTD))

    def trunk(
        self,
        idx_BT: torch.Tensor,
        *,
        start_pos: int = 0,
        caches: list[dict[str, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Hidden states after the last block, before the final norm: (B, T, D)."""
        x_BTD = self.tok_emb(idx_BT)
        for i, block in enumerate(self.blocks):
            x_BTD = block(x_BTD, start_pos=start_pos, cache=None if caches is None else caches[i])
        return x_BTD

    def forward(
        self,
        idx_BT: torch.Tensor,
        targets_BT: torch.Tensor | None = None,
        *,
        start_pos: int = 0,
        caches: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h_BTD = self.trunk(idx_BT, start_pos=start_pos, caches=caches)
        logits_BTV = self.logits(h_BTD)
        if targets_BT is None:
            return logits_BTV, None
        loss = F.cross_entropy(logits_BTV.flatten(0, 1).float(), targets_BT.flatten())
        if self.training:
            self.mtp(h_BTD, idx_BT, targets_BT, self)
        return logits_BTV, loss

    def new_caches(
        self,
        batch_size: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> list[dict[str, torch.Tensor]]:
        """One KV cache per block for cached decoding."""
        return [b.attn.new_cache(batch_size, max_len, dtype, device) for b in self.blocks]

    def num_params(self, non_embedding: bool = False) -> int:
        """Unique parameter count; `non_embedding` drops the token embedding (and tied head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if not self.cfg.tie_embeddings:
                n -= self.head.weight.numel()
        return n
