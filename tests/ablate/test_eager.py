"""ablate.nn.eager: a marked function is a plain call until prepare_compile(), then a graph
break inside a compiled region; marking imports no dynamo."""

from __future__ import annotations

import subprocess
import sys

import torch

from ablate.nn.eager import eager, prepare_compile
from tests.conftest import REPO

CALLS: list[bool] = []


@eager
def _noted(x: torch.Tensor) -> torch.Tensor:
    CALLS.append(torch.compiler.is_compiling())  # True only if dynamo traced this body
    return x * 2


def test_marking_imports_no_dynamo():
    code = (
        "import sys\nfrom ablate.nn.eager import eager\n"
        "eager(lambda: 0)\nprint('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_marked_function_runs_eagerly_in_a_compiled_region():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    prepare_compile()
    torch._dynamo.reset()
    fn = torch.compile(lambda x: _noted(x + 1) - 1, backend=backend)
    CALLS.clear()
    x = torch.randn(4)
    try:
        assert torch.equal(fn(x), (x + 1) * 2 - 1)
    finally:
        torch._dynamo.reset()
    assert CALLS == [False]  # ran, and not traced
    assert len(graphs) == 2  # x + 1 before the break, - 1 after it
