"""Mutation testing: inject known, realistic bugs one at a time and check the tests catch them.

Run on demand (minutes), never in CI:

    python benchmarks/mutate.py                 # every mutant, then a killed/survived table
    python benchmarks/mutate.py --list          # names only
    python benchmarks/mutate.py rope_table_sign mla_absorbed_swapped_up_proj

Each mutant names a file, an exact snippet that must occur there exactly once, its
replacement and the tests that should kill it. The tracked and not-ignored files (`git ls-files
--cached --others --exclude-standard`) are copied to a temporary directory; pytest runs there
with PYTHONPATH set to the copy, so the copy's `ablate`, `components` and `kernels` are
imported, not the editable install (checked before anything runs). The unmutated copy must
pass every selected test first, so a kill always means "this bug was caught". A snippet that
is not in its file stops the run with an error: the code moved, and the mutant must be
updated rather than silently skipped.
Exit status: 0 when every mutant is killed, 1 when one survives, 2 on a stale snippet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("ablate", "components", "kernels")
TIMEOUT_S = 900  # per pytest run; a mutant that hangs counts as killed (reported as such)


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # path relative to the repository root
    original: str  # exact snippet, must occur exactly once
    replacement: str
    tests: tuple[str, ...]  # pytest node ids or paths


MUTANTS = [
    Mutant(
        "fp8_dgrad_scales_reshaped",
        "ablate/nn/fp8_recipe.py",
        "return q_OI.t().contiguous(), s.t().contiguous(), TILE",
        "return q_OI.t().contiguous(), s.reshape(s.shape[1], s.shape[0]).contiguous(), TILE",
        ("tests/components/precision/test_fp8_grads.py",),
    ),
    Mutant(
        "fp8_wgrad_scales_reshaped",
        "kernels/fp8_ref.py",
        "return q.t().contiguous(), s.t().contiguous()",
        "return q.t().contiguous(), s.reshape(s.shape[1], s.shape[0])",
        ("tests/components/precision/test_fp8_grads.py",),
    ),
    Mutant(
        "kv_cache_write_shifted",
        "ablate/nn/attention.py",
        "cache[name][:B, start_pos : start_pos + T] = x_BT",
        "cache[name][:B, start_pos + 1 : start_pos + T + 1] = x_BT",
        ("tests/components/attention/test_kv_cache.py",),
    ),
    Mutant(
        "rope_table_sign",
        "ablate/nn/rope.py",
        "torch.stack((angles_TP.cos(), angles_TP.sin()), dim=-1)",
        "torch.stack((angles_TP.cos(), -angles_TP.sin()), dim=-1)",
        ("tests/ablate/test_rope.py",),
    ),
    Mutant(
        "yarn_ramp_reversed",
        "ablate/nn/rope.py",
        "freqs_P * (1 - ramp_P) + freqs_P / factor * ramp_P",
        "freqs_P * ramp_P + freqs_P / factor * (1 - ramp_P)",
        ("tests/ablate/test_rope.py",),
    ),
    Mutant(
        "train_windows_reach_into_val",
        "ablate/core/data.py",
        "Corpus(tokenizer, ids_N[:-n_val], ids_N[-n_val:], info)",
        "Corpus(tokenizer, ids_N[: len(ids_N) - n_val + cfg.seq_len], ids_N[-n_val:], info)",
        ("tests/ablate/test_data.py::test_no_training_window_touches_a_validation_token",),
    ),
    Mutant(
        "train_windows_shifted_into_val",
        "ablate/core/data.py",
        "win_BT = corpus.train_N[idx_BT]",
        "win_BT = torch.cat((corpus.train_N, corpus.val_N))[idx_BT + cfg.seq_len]",
        ("tests/ablate/test_data.py::test_no_training_window_touches_a_validation_token",),
    ),
    Mutant(
        "eval_tail_batch_dropped",
        "ablate/core/data.py",
        "for lo in range(0, num, batch_size):",
        "for lo in range(0, num - num % batch_size, batch_size):",
        ("tests/ablate/test_data.py",),
    ),
    Mutant(
        "resume_restarts_from_scratch",
        "ablate/core/trainer.py",
        "if resume and ckpt_path.exists():",
        "if not resume and ckpt_path.exists():",
        ("tests/ablate/test_resume.py",),
    ),
    Mutant(
        "resume_from_step_zero",
        "ablate/core/checkpoint.py",
        'return ckpt["step"]',
        "return 0",
        ("tests/ablate/test_resume.py",),
    ),
    Mutant(
        "resume_drops_optimizer_state",
        "ablate/core/checkpoint.py",
        'opt.load_state_dict(ckpt["optimizer"])',
        "opt.load_state_dict(opt.state_dict())",
        ("tests/ablate/test_resume.py",),
    ),
    Mutant(
        "mla_absorbed_swapped_up_proj",
        "components/attention/mla.py",
        "w_uk_HZC, w_uv_HUC = ",
        "w_uv_HUC, w_uk_HZC = ",
        (
            "tests/components/attention/test_mla.py::test_cached_decoding_matches_spec_reference[equal-absorbed]",
        ),
    ),
    Mutant(
        "causal_mask_off_by_one",
        "ablate/nn/attention.py",
        "mask_TS = torch.arange(S, device=q_BHTK.device)[None, :] <= pos_T[:, None]\n"
        "    return F.scaled_dot_product_attention(q_BHTK, k_BHSK",
        "mask_TS = torch.arange(S, device=q_BHTK.device)[None, :] < pos_T[:, None]\n"
        "    return F.scaled_dot_product_attention(q_BHTK, k_BHSK",
        ("tests/components/attention/test_kv_cache.py",),
    ),
    Mutant(
        "sigmoid_bias_update_sign",
        "components/router/sigmoid_bias.py",
        "torch.sign(counts_E.mean() - counts_E)",
        "torch.sign(counts_E - counts_E.mean())",
        ("tests/components/router/test_sigmoid_bias.py",),
    ),
    Mutant(
        "mtp_label_shift",
        "components/mtp/mtp.py",
        "[:, k + 1 :], (0, k), value=IGNORE)",
        "[:, k:], (0, k), value=IGNORE)",
        ("tests/components/mtp/test_mtp.py",),
    ),
    Mutant(
        "balance_loss_without_topk",
        "ablate/nn/balance.py",
        "(num_experts / (topk * num_tokens))",
        "(num_experts / num_tokens)",
        ("tests/ablate/test_balance.py", "tests/components/router/test_softmax_aux.py"),
    ),
    Mutant(
        "lr_warmup_off_by_one",
        "ablate/core/trainer.py",
        "return cfg.lr * step / max(1, cfg.warmup_steps)",
        "return cfg.lr * (step - 1) / max(1, cfg.warmup_steps)",
        ("tests/ablate/test_trainer.py::test_lr_schedule_warmup_then_cosine",),
    ),
]


def check_snippets(mutants: list[Mutant]) -> list[str]:
    """One message per mutant whose snippet is missing or ambiguous in the working tree."""
    errors = []
    for m in mutants:
        path = REPO / m.file
        count = path.read_text().count(m.original) if path.exists() else 0
        if count != 1:
            what = "snippet not found in" if count == 0 else f"snippet occurs {count} times in"
            errors.append(f"{m.name}: {what} {m.file}: {m.original!r}")
    return errors


def copy_tree(dst: Path) -> None:
    """Tracked and not-ignored files, as they are in the working tree, copied under `dst`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("WANDB_MODE", "offline")
    env.setdefault("WANDB_SILENT", "true")
    return env


def check_imports(root: Path) -> None:
    """Fail unless the copy's packages (not the editable install's) are the ones imported."""
    code = "import sys, {0}; print(*[m.__file__ for m in ({0},)], sep='\\n')"
    out = subprocess.run(
        [sys.executable, "-c", code.format(", ".join(PACKAGES))],
        cwd=root,
        env=_env(root),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    stray = [f for f in out if not Path(f).resolve().is_relative_to(root.resolve())]
    if stray:
        raise SystemExit(f"mutate: the copy does not shadow the install, imported {stray}")


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[str, float]:
    """'passed', 'timeout' or the first failing test's id, and the seconds pytest took."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=root, env=_env(root), capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0
    secs = time.perf_counter() - t0
    if proc.returncode == 0:
        return "passed", secs
    failed = [
        ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))
    ]
    return (failed[0] if failed else f"pytest exit {proc.returncode}"), secs


def mutate(root: Path, m: Mutant) -> tuple[str, float]:
    """Apply `m` in the copy, run its tests, restore the file; 'killed' or 'survived'."""
    path = root / m.file
    text = path.read_text()
    path.write_text(text.replace(m.original, m.replacement, 1))
    try:
        outcome, secs = run_tests(root, m.tests)
    finally:
        path.write_text(text)
    return ("survived" if outcome == "passed" else f"killed by {outcome}"), secs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print the mutant names and exit")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    if args.list:
        print("\n".join(f"{m.name:32s} {m.file}" for m in MUTANTS))
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; see --list")
    chosen = [known[n] for n in args.names] or MUTANTS
    errors = check_snippets(chosen)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ablate-mutate-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        check_imports(root)
        tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        baseline, secs = run_tests(root, tests)
        print(f"baseline (unmutated copy): {baseline} in {secs:.0f} s")
        if baseline != "passed":
            print("mutate: the selected tests fail without any mutant", file=sys.stderr)
            return 2
        survived = 0
        for m in chosen:
            result, secs = mutate(root, m)
            survived += result == "survived"
            print(f"{m.name:30s} {secs:5.1f} s  {result}", flush=True)
    print(f"{len(chosen) - survived} of {len(chosen)} mutants killed, {survived} survived")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
