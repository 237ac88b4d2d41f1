"""A progress report over the runs of a study: done / running / left, failures, elapsed and estimated time.

On a terminal it is a tqdm bar over runs; elsewhere (logs, CI, notebooks' captured output) one line
per finished run. It writes to stderr, so a sweep's ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import sys
import time

__all__ = ["RunProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75 -> "01:15"``, ``3725 -> "1:02:05"``."""
    s = int(round(max(seconds, 0)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m:02d}:{s % 60:02d}"


class RunProgress:
    """Counts runs as they start and finish and shows them (``enabled=False``: silent)."""

    def __init__(self, total: int, skipped: int = 0, enabled: bool = True, stream=None, label: str = "sweep"):
        self.total, self.skipped, self.label = total, skipped, label
        self.done = self.failed = self.running = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.t0 = time.time()
        self.bar = None
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="run", desc=label, file=self.stream, dynamic_ncols=True)
            self._postfix()

    @property
    def left(self) -> int:
        return self.total - self.done - self.running

    def eta(self) -> float | None:
        """Seconds left at the rate runs finished so far (None before the first one finishes)."""
        if not self.done:
            return None
        return (time.time() - self.t0) / self.done * (self.total - self.done)

    def started(self, *_):
        self.running += 1
        self._postfix()

    def finished(self, outcome) -> None:
        self.running = max(self.running - 1, 0)
        self.done += 1
        self.failed += outcome.status != "complete"
        if self.bar is not None:
            self.bar.update(1)
            self._postfix()
        elif self.enabled:
            print(f"[{self.label}] {self.line()}  ({outcome.run_id}: {outcome.status})", file=self.stream, flush=True)

    def line(self) -> str:
        eta = self.eta()
        return (f"{self.done}/{self.total} runs done, {self.running} running, {self.left} left, {self.failed} failed"
                f" | {format_duration(time.time() - self.t0)} elapsed"
                + (f", ~{format_duration(eta)} left" if eta is not None else ""))

    def _postfix(self):
        if self.bar is not None:
            self.bar.set_postfix_str(f"running {self.running}, left {self.left}, failed {self.failed}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
