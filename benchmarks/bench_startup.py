"""`ablate list` start-up: first run (builds the cache), cached runs, and `import torch` as the
reference, all measured in this run as fresh processes. Target: cached `ablate list` < 1 s.

    python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

LIST = [sys.executable, "-m", "ablate.cli", "list"]
IMPORT_TORCH = [sys.executable, "-c", "import torch"]
BARE_PYTHON = [sys.executable, "-c", "pass"]


def seconds(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows = {"python -c pass": [], "python -c 'import torch'": [], "ablate list, first run": []}
    rows["ablate list, cached"] = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = os.environ | {"XDG_CACHE_HOME": cache}
            rows["python -c pass"].append(seconds(BARE_PYTHON, env))
            rows["python -c 'import torch'"].append(seconds(IMPORT_TORCH, env))
            rows["ablate list, first run"].append(seconds(LIST, env))
            rows["ablate list, cached"].append(seconds(LIST, env))
    print(f"{'command':<28} {'median s':>9} {'min s':>7}  ({args.repeats} fresh processes each)")
    for name, ts in rows.items():
        print(f"{name:<28} {statistics.median(ts):>9.3f} {min(ts):>7.3f}")
    cached = statistics.median(rows["ablate list, cached"])
    torch_s = statistics.median(rows["python -c 'import torch'"])
    print(
        f"cached list / import torch = {cached / torch_s:.2f}; target cached < 1 s: "
        f"{'met' if cached < 1 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
