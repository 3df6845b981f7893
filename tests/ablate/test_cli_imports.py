"""`ablate list` and `ablate show` import no heavy optional module (startup time).

Measured with `python -X importtime -c "import ablate.cli; ablate.cli.main(['list'])"`: what
remains is torch itself (component classes are `nn.Module`s), not Triton, matplotlib or W&B.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("triton", "matplotlib", "wandb", "scipy", "jinja2", "pandas")


@pytest.mark.parametrize(
    "argv", [["list"], ["list", "attention"], ["show", "sweeps/base/tiny.yaml", "train.steps=3"]]
)
def test_command_imports_no_heavy_module(argv):
    code = (
        "import contextlib, io, json, sys\n"
        "from ablate.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main({argv!r}) == 0\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []
