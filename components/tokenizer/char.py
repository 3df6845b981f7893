"""Character-level tokenizer: the vocabulary is the sorted set of the corpus's characters."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.interfaces import Tokenizer
from ablate.registry import register


@register("tokenizer", "char")
class Char(Tokenizer):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        pass

    def fit(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the corpus vocabulary") from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)
