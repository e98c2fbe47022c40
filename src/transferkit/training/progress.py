"""Training progress: a rich bar (loss, samples/s, ETA) on a terminal, a periodic line when output is not one.

Piped or redirected output (CI logs, ``nohup``, a job scheduler) gets no bar, whose redraws would either be
lost or fill the log: instead one plain line at the start, one every ``TRANSFERKIT_PROGRESS_EVERY`` seconds
(default 30) and one at the end, each with step, percent, loss, samples/s, elapsed time and ETA.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time

log = logging.getLogger("transferkit")
EVERY_ENV = "TRANSFERKIT_PROGRESS_EVERY"


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainProgress:
    """Shows optimizer steps done, the running loss, throughput and the time left.

    Args:
        total_steps: Optimizer steps of the whole run.
        enabled: False: silent.
        description: The bar's (or line's) label.
        completed: Steps already done (a resumed run).
        terminal: Draw a bar (True) or write periodic lines (False); None: a bar when stdout is a terminal.
        every: Seconds between two lines when not on a terminal; None: ``$TRANSFERKIT_PROGRESS_EVERY`` or 30.
    """

    def __init__(
        self,
        total_steps: int,
        enabled: bool = True,
        description: str = "training",
        completed: int = 0,
        terminal: bool | None = None,
        every: float | None = None,
    ):
        self.enabled = enabled
        self.samples = 0
        self.extra = ""
        self.total, self.done, self.first = total_steps, completed, completed
        self.description = description
        self.loss = float("nan")
        self._time = time.perf_counter
        self.start = self._time()
        if not enabled:
            return
        if terminal is None:
            terminal = sys.stdout.isatty()
        self.terminal = terminal
        if not terminal:
            self.every = every if every is not None else float(os.environ.get(EVERY_ENV, "30") or 30)
            self._last = self.start
            self._line("started")
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:.1f} samples/s"),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.bar.add_task(
            description, total=total_steps, completed=completed, loss=float("nan"), rate=0.0, extra=""
        )
        self.bar.start()

    def rate(self) -> float:
        return self.samples / max(self._time() - self.start, 1e-9)

    def line(self, what: str = "") -> str:
        """The plain progress line, e.g. ``training: step 40/120 (33%) loss 0.4121 | 52.3 samples/s | 0:41
        elapsed, eta 1:22 | val f1_macro 0.8123``."""
        elapsed = self._time() - self.start
        steps = self.done - self.first
        eta = (self.total - self.done) * elapsed / steps if steps else float("nan")
        pct = 100 * self.done / self.total if self.total else 100.0
        parts = [
            f"{self.description}: step {self.done}/{self.total} ({pct:.0f}%)"
            + (f" loss {self.loss:.4f}" if math.isfinite(self.loss) else ""),
            f"{self.rate():.1f} samples/s",
            f"{_clock(elapsed)} elapsed, eta {_clock(eta)}",
        ]
        if self.extra:
            parts.append(self.extra)
        if what:
            parts.append(what)
        return " | ".join(parts)

    def _line(self, what: str = "") -> None:
        log.info("%s", self.line(what))

    def advance(self, loss: float, samples: int) -> None:
        if not self.enabled:
            return
        self.samples += samples
        self.done += 1
        self.loss = loss
        if self.terminal:
            self.bar.update(self.task, advance=1, loss=loss, rate=self.rate(), extra=self.extra)
        elif self._time() - self._last >= self.every:
            self._last = self._time()
            self._line()

    def note(self, text: str) -> None:
        self.extra = text
        if self.enabled and self.terminal:
            self.bar.update(self.task, extra=text)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.terminal:
            self.bar.stop()
        else:
            self._line("done")
