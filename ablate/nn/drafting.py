"""Greedy drafting from sequential depth modules (MTP-style, DeepSeek-V3 §5.4.3).

The host offers `num_depths` depths: `main_hidden(h, model)` (h^0 from the trunk output),
`depth_hidden(k, h^{k-1}, ids t_{i+k}, model, start_pos=, cache=)`, `depth_logits(k, h,
model)` and `new_caches(batch, max_len, dtype, device)` (one KV cache per depth). Depth k
drafts t_{L+k} from position L-1, embedding the drafts of shallower depths. Every cache is
position-indexed: entries that embedded a draft are recomputed once the ids there are
committed. Shapes (docs/design.md#shapes): T time, D width, V vocabulary, Y drafts per round
(= depths).
"""

from __future__ import annotations

import torch
from torch import nn

from ablate.interfaces import Drafter


class DepthDrafter(Drafter):
    """Drafts one token per depth of `host` for `model`'s speculative decoding."""

    def __init__(self, host: nn.Module, model: nn.Module) -> None:
        self.host, self.model = host, model
        self.num_drafts = host.num_depths

    def reset(self, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        Y = self.num_drafts
        self.caches = self.host.new_caches(1, max_len, dtype, device)
        # hid[k][:, i] = h^k_i (h^0: main hidden as the depths see it)
        self.hid = [
            torch.zeros(1, max_len, self.model.cfg.dim, dtype=dtype, device=device)
            for _ in range(Y)
        ]
        self.toks_1T = torch.zeros(1, max_len + Y + 1, dtype=torch.long, device=device)
        self.exact = [0] * Y  # depth k: cache entries at positions < exact[k-1] saw committed ids

    def observe(self, h_1TD: torch.Tensor, start_pos: int) -> None:
        h0_1TD = self.host.main_hidden(h_1TD, self.model)
        self.hid[0][:, start_pos : start_pos + h_1TD.shape[1]] = h0_1TD

    def propose(self, ids_1T: torch.Tensor) -> torch.Tensor:
        """Draft t_{L+1}..t_{L+Y} (L = T-1) from position L-1; first refresh stale entries."""
        Y, L = self.num_drafts, ids_1T.shape[1] - 1
        q = L - 1
        self.toks_1T[:, : L + 1] = ids_1T
        for k in range(1, Y + 1):
            a = self.exact[k - 1]  # entries from here on may hold drafted ids: recompute them
            h_1TD = self.host.depth_hidden(
                k,
                self.hid[k - 1][:, a : q + 1],
                self.toks_1T[:, a + k : q + k + 1],
                self.model,
                start_pos=a,
                cache=self.caches[k - 1],
            )
            if k < Y:
                self.hid[k][:, a : q + 1] = h_1TD
            logits_1V = self.host.depth_logits(k, h_1TD[:, -1:], self.model)[:, -1]
            self.toks_1T[:, L + k] = logits_1V.argmax(-1)
            self.exact[k - 1] = max(0, L - k + 1)  # position i embedded t_{i+k}: committed iff <= L
        return self.toks_1T[:, L + 1 : L + Y + 1].clone()
