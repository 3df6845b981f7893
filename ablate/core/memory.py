"""Peak memory of one trial, measured on its own when several trials run in one process.

A sequential sweep (`ablate.study.launch.loop`) trains every trial in one process, so a
process-lifetime high-water mark (ru_maxrss) makes every later trial report at least the peak of
the trials before it. `PeakMemory.start()` at trial start resets what it can, and `summary`
records the peak under a key that says what was measured:

- `peak_gpu_alloc_mb`: CUDA trials, `torch.cuda.max_memory_allocated` after
  `reset_peak_memory_stats` (bytes held by tensors; the caching allocator's reserve excluded).
- `peak_rss_trial_mb`: CPU trials on Linux, the process's peak resident set (VmHWM) after writing
  5 to /proc/self/clear_refs resets it to the current RSS. Memory freed by earlier trials is
  handed back to the OS first (gc, glibc malloc_trim), so it does not count; what the process
  still holds (interpreter, torch, cached corpora) does.
- `peak_rss_process_mb`: where the peak cannot be reset (no /proc, refused write), the process's
  lifetime peak RSS: not a per-trial figure, named so that no one reads it as one.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

GPU_KEY = "peak_gpu_alloc_mb"
TRIAL_RSS_KEY = "peak_rss_trial_mb"
PROCESS_RSS_KEY = "peak_rss_process_mb"
KEYS = (GPU_KEY, TRIAL_RSS_KEY, PROCESS_RSS_KEY)  # summary keys, one per way of measuring
LABELS = {
    GPU_KEY: "peak allocated, GPU (MiB)",
    TRIAL_RSS_KEY: "peak RSS during the trial (MiB)",
    PROCESS_RSS_KEY: "peak RSS of the process, not per trial (MiB)",
}
MIB = 2**20
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")
RESET_PEAK_RSS = "5"  # clear_refs code: set VmHWM to the current RSS (Linux >= 4.0)
RESET_SLACK_KIB = 16 * 1024  # VmHWM above VmRSS by more than this after a reset: it did not reset


def _status_kib(field: str) -> int | None:
    """A `kB` field of /proc/self/status (VmHWM, VmRSS), or None where there is none."""
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _release_freed() -> None:
    """Give memory earlier trials freed back to the OS, so the reset RSS holds only live data."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only; elsewhere no such symbol
        ctypes.CDLL(None).malloc_trim(0)


def _reset_rss_peak() -> bool:
    """Reset the process's peak RSS to its current RSS; False where that is not possible."""
    try:
        CLEAR_REFS.write_text(RESET_PEAK_RSS)
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + RESET_SLACK_KIB


def _process_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024  # macOS: bytes; Linux: KiB


@dataclass(frozen=True, kw_only=True)
class PeakMemory:
    """The trial's peak-memory meter; `start()` it before the trial builds anything."""

    rss_reset: bool  # the process's peak RSS was reset at trial start

    @classmethod
    def start(cls) -> PeakMemory:
        """Release freed memory and reset the peaks (CUDA's for every device already in use)."""
        _release_freed()
        if torch.cuda.is_initialized():  # before that, CUDA's peaks start at zero anyway
            for index in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(index)
        return cls(rss_reset=_reset_rss_peak())

    def summary(self, device: torch.device) -> dict[str, float]:
        """{key: MiB}: the trial's peak on `device`, under the key naming how it was measured."""
        if device.type == "cuda":
            return {GPU_KEY: torch.cuda.max_memory_allocated(device) / MIB}
        hwm = _status_kib("VmHWM") if self.rss_reset else None
        if hwm is not None:
            return {TRIAL_RSS_KEY: hwm / 1024}
        return {PROCESS_RSS_KEY: _process_peak_mib()}


def recorded(summaries: list[dict]) -> list[str]:
    """The peak-memory keys any of these trial summaries holds, in `KEYS` order."""
    return [k for k in KEYS if any(isinstance(s.get(k), (int, float)) for s in summaries)]
