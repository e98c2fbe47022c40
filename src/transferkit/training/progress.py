"""A progress bar with loss, samples/s and ETA (rich), silent when disabled."""

from __future__ import annotations


class TrainProgress:
    """Shows optimizer steps done, the running loss, throughput and the time left."""

    def __init__(
        self, total_steps: int, enabled: bool = True, description: str = "training", completed: int = 0
    ):
        self.enabled = enabled
        self.samples = 0
        self.extra = ""
        if not enabled:
            return
        import time

        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._time = time.perf_counter
        self.start = self._time()
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

    def advance(self, loss: float, samples: int) -> None:
        if not self.enabled:
            return
        self.samples += samples
        rate = self.samples / max(self._time() - self.start, 1e-9)
        self.bar.update(self.task, advance=1, loss=loss, rate=rate, extra=self.extra)

    def note(self, text: str) -> None:
        self.extra = text
        if self.enabled:
            self.bar.update(self.task, extra=text)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
