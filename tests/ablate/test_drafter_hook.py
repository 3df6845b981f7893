"""The drafter hook: speculative decoding uses whatever component offers a `Drafter`.

The component here is unregistered and unknown to the engine; its drafter replays the greedy
continuation, spoiling every second round, so acceptance and rollback are both exercised.
"""

from __future__ import annotations

import pytest
import torch

from ablate.core.model import Transformer
from ablate.infer.generate import generate
from ablate.infer.speculative import SpecStats, find_drafter, speculative_generate
from ablate.interfaces import Component, Drafter
from tests.conftest import tiny_model_config

VOCAB = 37
K = 3
NEW_TOKENS = 20


class ReplayDrafter(Drafter):
    def __init__(self, reference_1T: torch.Tensor) -> None:
        self.reference_1T, self.num_drafts = reference_1T, K
        self.rounds, self.resets, self.observed = 0, 0, []

    def reset(self, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        self.resets += 1

    def observe(self, h_1TD: torch.Tensor, start_pos: int) -> None:
        assert h_1TD.shape[0] == 1 and h_1TD.shape[2] == tiny_model_config().dim
        self.observed += range(start_pos, start_pos + h_1TD.shape[1])

    def propose(self, ids_1T: torch.Tensor) -> torch.Tensor:
        T = ids_1T.shape[1]
        assert torch.equal(ids_1T, self.reference_1T[:, :T])  # only committed ids come in
        drafts_1K = self.reference_1T[:, T : T + K].clone()
        if self.rounds % 2:
            drafts_1K[:, 0] = (drafts_1K[:, 0] + 1) % VOCAB  # a wrong first draft
        self.rounds += 1
        return drafts_1K


class Replay(Component):
    def __init__(self, drafter: Drafter) -> None:
        super().__init__()
        self._drafter = drafter

    def drafter(self, model):
        return self._drafter


def model_and_prompt() -> tuple[Transformer, torch.Tensor]:
    model = Transformer(tiny_model_config(max_seq_len=64, init_std=0.2)).eval()
    return model, torch.randint(0, VOCAB, (1, 5))


def test_the_loop_uses_the_offered_drafter():
    model, prompt_1T = model_and_prompt()
    plain_1T = generate(model, prompt_1T, NEW_TOKENS + K)
    drafter = ReplayDrafter(plain_1T)
    model.replay = Replay(drafter)  # any module of the model may offer one
    assert find_drafter(model) is drafter
    stats = SpecStats()
    out_1T = speculative_generate(model, prompt_1T, NEW_TOKENS, stats=stats)
    assert torch.equal(out_1T, plain_1T[:, : 5 + NEW_TOKENS])
    assert drafter.resets == 1 and drafter.rounds == len(stats.rounds) > 2
    assert stats.proposed == [drafter.rounds] * K
    assert stats.accepted == [(drafter.rounds + 1) // 2] * K  # all of even rounds, none of odd
    # every committed position observed once, in order, through the last verified round
    assert drafter.observed == list(range(len(drafter.observed)))
    assert len(drafter.observed) > stats.rounds[-1][0]


def test_generate_asks_components_and_filters_by_name():
    model, prompt_1T = model_and_prompt()
    plain_1T = generate(model, prompt_1T, NEW_TOKENS)
    with pytest.raises(ValueError, match="offers a drafter"):
        generate(model, prompt_1T, NEW_TOKENS, speculative=True)  # `mtp: none` offers none
    model.replay = Replay(ReplayDrafter(generate(model, prompt_1T, NEW_TOKENS + K)))
    assert torch.equal(generate(model, prompt_1T, NEW_TOKENS, speculative=True), plain_1T)
    with pytest.raises(ValueError, match="'mtp'"):
        generate(model, prompt_1T, NEW_TOKENS, speculative="mtp")  # not a registered mtp
