"""Multi-digit addition as a verifiable task: generated locally, exact answers, reasoning traces.

A prompt is `AAA+BBB=` (operands zero-padded to `num_digits`); the answer is the sum's decimal
digits. A trace reasons column by column from the right, `a+b+c=s` with c the carry in, e.g.
`678+456=` -> `<think>8+6+0=14 7+5+1=13 6+4+1=11</think><answer>1134</answer>`. The corpus
(`load_text`) writes `num_train` training problems, one per line: a `trace_fraction` share as
formatted traces, the rest as plain `prompt answer`; a `mixed_fraction` share of the traces
reasons in the other "language" (digits written as the letters a-j), which the consistency
reward penalises. Operand pairs split into train and test (one pair in `test_every`) by a
fixed rule, so held-out prompts never appear in the corpus. Deterministic given the config.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from ablate.interfaces import Dataset
from ablate.posttrain.bases import END, Problem, Task
from ablate.posttrain.format import format_trace
from ablate.registry import register

DIGITS = "0123456789"
OTHER_LANGUAGE = "abcdefghij"  # digit d written as the d-th letter in a mixed trace
_SPLIT_MIX = 7919  # spreads operand pairs over the train/test rule


@register("dataset", "addition")
class Addition(Dataset, Task):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        num_digits: int = 3  # digits per operand (zero-padded in the prompt)
        num_train: int = 4000  # training problems written into the corpus
        trace_fraction: float = 1.0  # share of corpus problems written as formatted traces
        mixed_fraction: float = 0.0  # share of traces reasoning in the other language
        test_every: int = 10  # one operand pair in this many is held out (test split)
        seed: int = 0  # which problems the corpus holds

        def check(self, root) -> None:
            if not 1 <= self.num_digits <= 9 or self.num_train < 1 or self.test_every < 2:
                raise ValueError("num_digits in [1, 9], num_train >= 1, test_every >= 2")
            if not (0 <= self.trace_fraction <= 1 and 0 <= self.mixed_fraction <= 1):
                raise ValueError("trace_fraction and mixed_fraction must lie in [0, 1]")

    def _split(self, a: int, b: int) -> str:
        return "test" if (a * _SPLIT_MIX + b) % self.cfg.test_every == 0 else "train"

    def problems(self, split: str, num: int, seed: int) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"split {split!r}: must be train or test")
        rng = random.Random(f"addition/{self.cfg.seed}/{split}/{seed}")
        top, out = 10**self.cfg.num_digits, []
        while len(out) < num:
            a, b = rng.randrange(top), rng.randrange(top)
            if self._split(a, b) == split:
                out.append(self.problem(a, b))
        return out

    def problem(self, a: int, b: int, mixed: bool = False) -> Problem:
        """The problem a + b, its answer and trace (in the other language when `mixed`)."""
        d = self.cfg.num_digits
        prompt = f"{a:0{d}d}+{b:0{d}d}="
        answer = str(a + b)
        return Problem(
            prompt=prompt, answer=answer, trace=format_trace(self._think(a, b, mixed), answer)
        )

    def _think(self, a: int, b: int, mixed: bool) -> str:
        steps, carry = [], 0
        for _ in range(self.cfg.num_digits):
            x, y = a % 10, b % 10
            total = x + y + carry
            steps.append(f"{x}+{y}+{carry}={total}")
            a, b, carry = a // 10, b // 10, total // 10
        think = " ".join(steps)
        return think.translate(str.maketrans(DIGITS, OTHER_LANGUAGE)) if mixed else think

    def reasoning_vocabulary(self) -> str:
        return DIGITS + "+= "

    def max_prompt_chars(self) -> int:
        return 2 * self.cfg.num_digits + 2

    def load_text(self) -> str:
        rng = random.Random(f"addition/{self.cfg.seed}/corpus")
        lines = []
        for p in self.problems("train", self.cfg.num_train, 0):
            if rng.random() < self.cfg.trace_fraction:
                a, b = (int(x) for x in p.prompt[:-1].split("+"))
                p = self.problem(a, b, mixed=rng.random() < self.cfg.mixed_fraction)
                lines.append(p.prompt + p.trace + END)
            else:
                lines.append(p.prompt + p.answer + END)
        text = "".join(lines)
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        return text

    def describe(self) -> dict:
        return {"source": "generated: addition", "sha256": getattr(self, "sha256", "")}
