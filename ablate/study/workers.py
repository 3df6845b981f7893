"""Local worker processes of a sweep, with Ctrl-C and filesystem faults handled in one place.

Workers start with SIGINT ignored and move to their own process group, so a terminal's Ctrl-C
reaches only the parent. The parent forwards it once: each worker finishes its current step,
checkpoints it, gives its trial back to the ledger and exits quietly. A second Ctrl-C kills the
workers' process groups (their W&B service included) and the parent waits for them, so nothing
outlives the command. A worker's filesystem fault is sent to the parent, which stops the others
the same way and raises it as one `StorageError`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
from typing import TextIO

from ablate.core.fsio import StorageError

EXIT_INTERRUPTED = 130
EXIT_STORAGE = 74  # sysexits EX_IOERR
POLL_S = 0.1


class _Plain:
    """A stream wrapper that is never a terminal: plain progress lines from parallel workers."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def worker_main(sweep_path: str, cli_overrides: list[str], threads: int, stop, faults) -> None:
    """Entry point of a spawned worker process (SIGINT is ignored until here)."""
    os.setpgrp()  # the terminal's Ctrl-C now reaches only the parent, which forwards it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if stop.is_set():  # stopped while starting: the forwarded SIGINT was ignored
            return
        import torch

        from ablate.study.launch import loop
        from ablate.study.sweep import load_sweep

        torch.set_num_threads(threads)
        loop(load_sweep(sweep_path, cli_overrides), _Plain(sys.stderr), stop)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except StorageError as e:
        faults.put((e.errno, e.strerror, e.filename))
        sys.exit(EXIT_STORAGE)


def run(sweep, workers: int) -> None:
    """Run `workers` processes over `sweep` until none has work left.

    Raises:
        KeyboardInterrupt: after Ctrl-C, once every worker has exited.
        StorageError: a worker's filesystem fault, once every worker has exited.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch threads
    threads = max(1, (os.cpu_count() or 1) // workers)
    stop, faults = ctx.Event(), ctx.Queue()
    args = (str(sweep.path), list(sweep.cli_overrides), threads, stop, faults)
    presses = 0

    def on_sigint(signum, frame) -> None:  # only counts: the loop below acts (no locks here)
        nonlocal presses
        presses += 1

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through spawn's exec
    procs = []
    try:
        for _ in range(workers):
            procs.append(ctx.Process(target=worker_main, args=args))
            procs[-1].start()
        signal.signal(signal.SIGINT, on_sigint)
        fault = _wait(procs, stop, faults, lambda: presses)
    finally:
        signal.signal(signal.SIGINT, previous)
        for p in procs:  # only after an error in this loop: never leave a worker behind
            if p.is_alive():
                _kill(p)
            p.join()
    if presses:
        raise KeyboardInterrupt
    if fault is not None:
        raise StorageError(*fault)


def _wait(procs, stop, faults, presses) -> tuple | None:
    """Join the workers; stop them on the first Ctrl-C or fault, kill them on the second Ctrl-C."""
    fault, acted = None, 0
    while any(p.is_alive() for p in procs):
        for p in procs:
            p.join(POLL_S / len(procs))
        with contextlib.suppress(queue.Empty):
            fault = fault or faults.get_nowait()
        wanted = min(presses(), 2) or (1 if fault else 0)
        if wanted > acted:
            stop.set()
            for p in procs:
                if p.is_alive():
                    _kill(p) if wanted == 2 else _signal(p, signal.SIGINT)
            acted = wanted
    with contextlib.suppress(queue.Empty):  # a fault put just before its worker exited
        fault = fault or faults.get(timeout=POLL_S)
    return fault


def _signal(p, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(p.pid, signum)


def _kill(p) -> None:
    """SIGKILL the worker's process group (it and, say, its W&B service), else the worker."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        _signal(p, signal.SIGKILL)
