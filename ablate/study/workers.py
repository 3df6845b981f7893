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


def worker_main(sweep, threads: int, stop, faults, devices: str = "") -> None:
    """Entry point of a spawned worker process (SIGINT is ignored until here).

    `sweep` arrives pickled, exactly the parent's: its trials, not a re-expansion of the file
    (a tuned sweep's final trials exist only in the parent's `Sweep`)."""
    if devices:  # before torch initialises CUDA: this worker sees only its own GPUs
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    os.setpgrp()  # the terminal's Ctrl-C now reaches only the parent, which forwards it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if stop.is_set():  # stopped while starting: the forwarded SIGINT was ignored
            return
        import torch

        from ablate.study.launch import loop

        torch.set_num_threads(threads)
        loop(sweep, _Plain(sys.stderr), stop)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except StorageError as e:
        faults.put((e.errno, e.strerror, e.filename))
        sys.exit(EXIT_STORAGE)


def gpu_slices(workers: int, gpus_per_worker: int) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each worker: disjoint runs of `gpus_per_worker` of the visible
    GPUs (all of CUDA_VISIBLE_DEVICES when set, else 0..device_count-1); "" with no GPUs.

    Raises:
        ValueError: fewer GPUs than workers x gpus_per_worker.
    """
    if not gpus_per_worker:
        return [""] * workers
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        import torch

        visible = ",".join(map(str, range(torch.cuda.device_count())))
    ids = [d for d in visible.split(",") if d.strip()]
    if len(ids) < workers * gpus_per_worker:
        raise ValueError(
            f"--workers {workers} x --gpus-per-trial {gpus_per_worker} needs "
            f"{workers * gpus_per_worker} GPUs; {len(ids)} visible"
        )
    g = gpus_per_worker
    return [",".join(ids[i * g : (i + 1) * g]) for i in range(workers)]


def run(sweep, workers: int, gpus_per_worker: int = 0) -> None:
    """Run `workers` processes over `sweep` until none has work left (each with its own GPUs
    when `gpus_per_worker` > 0).

    Raises:
        KeyboardInterrupt: after Ctrl-C, once every worker has exited.
        StorageError: a worker's filesystem fault, once every worker has exited.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch threads
    cores = os.cpu_count() or 1
    per_trial = max(t.cfg.train.threads for t in sweep.trials)  # fixed by each trial's id
    if workers * per_trial > cores:  # never more busy threads than cores
        print(
            f"note: {workers} workers x train.threads={per_trial} > {cores} cores: "
            f"{max(1, cores // per_trial)} workers",
            file=sys.stderr,
        )
        workers = max(1, cores // per_trial)
    threads = max(1, cores // workers)
    devices = gpu_slices(workers, gpus_per_worker)
    stop, faults = ctx.Event(), ctx.Queue()
    args = (sweep, threads, stop, faults)
    presses = 0

    def on_sigint(signum, frame) -> None:  # only counts: the loop below acts (no locks here)
        nonlocal presses
        presses += 1

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through spawn's exec
    procs = []
    try:
        for i in range(workers):
            procs.append(ctx.Process(target=worker_main, args=(*args, devices[i])))
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


def auto_workers(sweep, num_todo: int) -> int:
    """As many workers as the cores hold at each trial's `train.threads`, one per trial."""
    per_trial = max((t.cfg.train.threads for t in sweep.trials), default=1)
    return max(1, min(num_todo, (os.cpu_count() or 1) // per_trial))
