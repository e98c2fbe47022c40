"""Dynamic micro-batching: concurrent requests are gathered into one forward pass.

Requests put their inputs on a bounded queue and await a future. One asyncio task takes the first waiting
request, waits up to ``max_wait_ms`` for more (or until ``max_batch_size`` inputs are waiting), and runs
the predictor on all of them in a single worker thread, so the event loop keeps accepting requests while
the model computes. Requests that arrive during a forward pass form the next batch.

The queue is bounded twice: in inputs (``max_queue``) and in the ``cost`` each request declares
(``max_cost``: bytes of decoded images), so a few full-size images cannot fill the memory while the count
looks small. The loop survives a metrics callback that raises; once it has stopped, :meth:`submit` refuses.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger("transferkit.serving")


class QueueFull(Exception):
    """The queue holds too many inputs (or bytes); the client should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int, what: str = "inputs"):
        super().__init__(f"the prediction queue is full ({what}); retry after {retry_after} s")
        self.retry_after = retry_after


class Closed(Exception):
    """The batcher stopped accepting work (the model is being replaced or the server shuts down)."""


@dataclass
class _Job:
    inputs: list
    future: asyncio.Future = field(repr=False)
    cost: int = 0


class MicroBatcher:
    """Gathers queued inputs into batches for ``predict``.

    Args:
        predict: ``list of inputs -> list of outputs`` (same length and order); runs in a worker thread.
        max_batch_size: Most inputs per forward pass (one request larger than this runs alone).
        max_wait_ms: Longest wait for more inputs once one request is waiting.
        max_queue: Most inputs waiting; past it :meth:`submit` raises :class:`QueueFull`.
        on_batch: Called with ``(inputs in the batch, seconds of the forward pass)`` (metrics).
        on_queue: Called with the number of waiting inputs whenever it changes (metrics).
        max_cost: Most total ``cost`` waiting (see :meth:`submit`); past it :meth:`submit` raises
            :class:`QueueFull`. None: unbounded.
    """

    def __init__(
        self,
        predict: Callable[[list], list],
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 512,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
        max_cost: int | None = None,
    ):
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch or (lambda n, s: None)
        self.on_queue = on_queue or (lambda n: None)
        self.max_cost = max_cost
        self._jobs: deque[_Job] = deque()
        self._waiting = 0  # inputs in self._jobs
        self._cost = 0  # cost of self._jobs
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._seconds_per_input = 0.01  # running estimate, for Retry-After
        # one thread: forward passes never overlap (they would only fight over the same cores)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transferkit-predict")

    @property
    def queue_depth(self) -> int:
        """Inputs waiting for a forward pass."""
        return self._waiting

    @property
    def running(self) -> bool:
        """Whether the batching task is alive (started, not finished or crashed)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Starts the batching task on the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="transferkit-batcher")

    def submit(self, inputs: list, cost: int = 0) -> asyncio.Future:
        """Queues one request's inputs; the future resolves to their outputs (same order).

        Args:
            inputs: The request's predictor inputs.
            cost: What they weigh against ``max_cost`` (bytes of decoded images; 0 for texts).

        Raises:
            QueueFull: if the queue cannot take ``len(inputs)`` more inputs or ``cost`` more.
            Closed: if the batcher is shutting down, or its loop is not running.
        """
        if self._closing or not self.running:
            raise Closed("the model is not accepting requests")
        # time for the queue to drain at the measured speed, at least 1 s
        retry = max(1, math.ceil(self._waiting * self._seconds_per_input))
        if self._waiting + len(inputs) > self.max_queue:
            raise QueueFull(retry)
        # one request always fits an empty queue (its size was checked against the per-input limits)
        if self.max_cost is not None and self._jobs and self._cost + cost > self.max_cost:
            raise QueueFull(retry, "bytes")
        job = _Job(list(inputs), asyncio.get_running_loop().create_future(), cost)
        self._jobs.append(job)
        self._waiting += len(job.inputs)
        self._cost += cost
        self._notify_queue()
        self._wakeup.set()
        return job.future

    def _notify_queue(self) -> None:
        try:
            self.on_queue(self._waiting)
        except Exception:  # a metrics callback must never stop the batcher
            log.exception("queue-depth callback failed")

    async def close(self) -> None:
        """Stops accepting work, finishes every queued request, then stops the worker thread."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _gather(self) -> list[_Job]:
        """Waits for the first job, then up to ``max_wait`` for a full batch; returns the jobs to run."""
        loop = asyncio.get_running_loop()
        while not self._jobs:
            if self._closing:
                return []
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = loop.time() + self.max_wait
        while self._waiting < self.max_batch_size and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
        jobs, size = [], 0
        while self._jobs and (not jobs or size + len(self._jobs[0].inputs) <= self.max_batch_size):
            job = self._jobs.popleft()
            self._waiting -= len(job.inputs)
            self._cost -= job.cost
            if not job.future.done():  # skip requests that timed out or disconnected while queued
                jobs.append(job)
                size += len(job.inputs)
        self._notify_queue()
        return jobs

    async def _run(self) -> None:
        while True:
            jobs = await self._gather()
            if not jobs:
                if self._closing and not self._jobs:
                    return
                continue
            try:
                await self._run_batch(jobs)
            except Exception as err:  # a bug of ours: fail this batch's requests, keep serving the next
                log.exception("batch failed outside the predictor")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(err)

    async def _run_batch(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        inputs = [x for job in jobs for x in job.inputs]
        start = loop.time()
        try:
            outputs = await loop.run_in_executor(self._executor, self._predict_checked, inputs)
        except Exception as err:
            await self._isolate(jobs, err)
            return
        seconds = loop.time() - start
        self._seconds_per_input = 0.8 * self._seconds_per_input + 0.2 * seconds / len(inputs)
        offset = 0
        for job in jobs:
            n = len(job.inputs)
            if not job.future.done():
                job.future.set_result(outputs[offset : offset + n])
            offset += n
        try:
            self.on_batch(len(inputs), seconds)
        except Exception:  # a metrics callback must never stop the batcher
            log.exception("batch callback failed")

    def _predict_checked(self, inputs: list) -> list:
        outputs = self.predict(inputs)
        if len(outputs) != len(inputs):
            raise RuntimeError(f"predictor returned {len(outputs)} outputs for {len(inputs)} inputs")
        return outputs

    async def _isolate(self, jobs: list[_Job], err: Exception) -> None:
        """A failed batch: with one request it gets the error; with several each runs alone, so one bad
        input fails only its own request."""
        loop = asyncio.get_running_loop()
        if len(jobs) == 1:
            if not jobs[0].future.done():
                jobs[0].future.set_exception(err)
            return
        for job in jobs:
            try:
                out = await loop.run_in_executor(self._executor, self._predict_checked, job.inputs)
            except Exception as one:
                if not job.future.done():
                    job.future.set_exception(one)
                continue
            if not job.future.done():
                job.future.set_result(out)


__all__ = ["Closed", "MicroBatcher", "QueueFull"]
