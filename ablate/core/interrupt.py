"""Ctrl-C during training: a flag checked between steps (the trainer saves a checkpoint first)."""

from __future__ import annotations

import signal
import threading


class InterruptFlag:
    """Turns SIGINT into a flag checked between steps, so a checkpoint is written first."""

    def __init__(self) -> None:
        self.set = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.set:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.set = True

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
