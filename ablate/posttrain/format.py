"""The completion format `<think>REASONING</think><answer>ANSWER</answer>` and its parsing.

Well-formed means exactly one think section followed by exactly one answer section and nothing
else (the text before the end marker); neither section may contain a tag character sequence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
_WELL_FORMED = re.compile(r"<think>(.*?)</think><answer>(.*?)</answer>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass(frozen=True)
class Parsed:
    think: str
    answer: str


def format_trace(think: str, answer: str) -> str:
    """A well-formed completion (without the end marker)."""
    return f"{THINK_OPEN}{think}{THINK_CLOSE}{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


def parse(completion: str) -> Parsed | None:
    """The two sections of a well-formed completion, or None when it is malformed."""
    m = _WELL_FORMED.fullmatch(completion)
    if m is None or any(t in part for part in m.groups() for t in TAGS):
        return None
    return Parsed(think=m.group(1), answer=m.group(2))


def answer_of(completion: str) -> str | None:
    """The text inside the first `<answer>...</answer>` pair (format not required), or None."""
    m = _ANSWER.search(completion)
    return None if m is None else m.group(1)


def think_of(completion: str) -> str | None:
    """The reasoning inside the first `<think>...</think>` pair, or None."""
    start = completion.find(THINK_OPEN)
    end = completion.find(THINK_CLOSE, start + len(THINK_OPEN)) if start >= 0 else -1
    return None if end < 0 else completion[start + len(THINK_OPEN) : end]
