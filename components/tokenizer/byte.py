"""Byte-level tokenizer: UTF-8 bytes, a fixed vocabulary of 256."""

from __future__ import annotations

from dataclasses import dataclass

from ablate.interfaces import Tokenizer
from ablate.registry import register

NUM_BYTES = 256


@register("tokenizer", "byte")
class Byte(Tokenizer):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        pass

    @property
    def vocab_size(self) -> int:
        return NUM_BYTES

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")
