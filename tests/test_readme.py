"""Every `ablate ...` command in README.md's bash blocks runs, in order, in one scratch directory.

Commands keep their subcommands and flags; those that train get overrides appended that shrink
them to a few steps on a small slice of the corpus (a later override wins). The install/pytest
line is not an `ablate` command; commands on the README's hypothetical `my_pkg` plugin are
listed in HYPOTHETICAL and must match exactly, so a new command is never skipped silently.
Commands in SLOW take more than ~20 s even at this size and are marked slow.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
HYPOTHETICAL = {  # the worked example's plugin exists only on the reader's machine
    "ablate check attention/my_attn --plugins my_pkg.my_attn",
}
SLOW = {  # measured over 20 s even when shrunk (a 2-worker MoE sweep: ~40 s)
    "ablate run sweeps/aux_vs_bias.yaml --workers 2",
    "ablate tune sweeps/mla_vs_mha_tuned.yaml",  # a whole tuned study: minutes even when shrunk
}
TINY_TRAIN = ["train.steps=12", "train.eval_every=6", "train.checkpoint_every=6"]
TINY_RUN = ["train.steps=2", "train.eval_every=2", "train.checkpoint_every=2"]
SMALL_CORPUS = "data.dataset.max_chars=20000"
TINY_BENCH = ["--repetitions", "2", "--warmup", "0", "--steps", "1", "--decode-tokens", "2"]


def readme_commands(text: str) -> list[str]:
    """The `ablate ...` lines of the bash code blocks, comments removed, in README order."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "ablate":
                commands.append(shlex.join(words))
    return commands


def shrunk(argv: list[str]) -> list[str]:
    """`argv` with overrides appended that make a training command tiny."""
    from ablate.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    if args.command == "train" and not args.cfg:
        from ablate.core.config import load_config

        cfg = load_config(args.config, args.overrides)
        return (
            argv + TINY_TRAIN + ([SMALL_CORPUS] if hasattr(cfg.data.dataset, "max_chars") else [])
        )
    if args.command == "run" and not args.dry_run:
        from ablate.study.sweep import load_sweep

        dataset = load_sweep(args.sweep, args.overrides).trials[0].cfg.data.dataset
        small = [SMALL_CORPUS] if hasattr(dataset, "max_chars") else []
        return argv + TINY_RUN + small + ["--no-bench"]  # the benchmark: `ablate bench` below
    if args.command == "bench":
        return argv + TINY_BENCH
    return argv


COMMANDS = readme_commands(README.read_text())


def test_readme_has_the_commands_the_fast_suite_needs():
    subcommands = {shlex.split(c)[1] for c in COMMANDS}
    assert {"list", "train", "generate", "run", "status", "report"} <= subcommands
    assert any("--dry-run" in c for c in COMMANDS) and "ablate run sweeps/smoke.yaml" in COMMANDS
    assert set(COMMANDS) >= HYPOTHETICAL and set(COMMANDS) >= SLOW  # no stale entries


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A scratch working directory with the sweeps, shared by the commands in order."""
    cwd = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "sweeps", cwd / "sweeps")
    return cwd


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(c, marks=[pytest.mark.slow] if c in SLOW else [], id=f"{i:02d}")
        for i, c in enumerate(COMMANDS)
    ],
)
def test_readme_command_runs(command, workspace, monkeypatch):
    if command in HYPOTHETICAL:
        pytest.skip("the README's hypothetical plugin my_pkg")
    monkeypatch.chdir(workspace)
    argv = shrunk(shlex.split(command))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.setdefault("ABLATE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    done = subprocess.run(
        [sys.executable, "-m", "ablate", *argv[1:]],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    if argv[1] == "generate":
        prompt = argv[argv.index("--prompt") + 1]
        assert done.stdout.startswith(prompt) and len(done.stdout) > len(prompt) + 100
