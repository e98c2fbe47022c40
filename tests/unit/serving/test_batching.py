"""MicroBatcher: gathering, batch limits, order, bounded queue, isolation of failures, draining on close."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from transferkit.serving.batching import Closed, MicroBatcher, QueueFull


class Recorder:
    def __init__(self, delay: float = 0.0, fail_on=None):
        self.batches: list[list] = []
        self.delay, self.fail_on = delay, fail_on
        self.threads: set[str] = set()

    def __call__(self, inputs):
        self.batches.append(list(inputs))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on in inputs:
            raise ValueError(f"bad input {self.fail_on}")
        return [x * 10 for x in inputs]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_one_forward_pass() -> None:
    rec = Recorder()

    async def main():
        b = MicroBatcher(rec, max_batch_size=64, max_wait_ms=50)
        b.start()
        futures = [b.submit([i, i + 100]) for i in range(10)]
        out = await asyncio.gather(*futures)
        await b.close()
        return out

    out = run(main())
    assert out == [[i * 10, (i + 100) * 10] for i in range(10)]  # each request gets its own outputs, in order
    assert len(rec.batches) == 1 and len(rec.batches[0]) == 20
    assert all(name.startswith("transferkit-predict") for name in rec.threads)  # never on the event loop


def test_batches_respect_max_batch_size() -> None:
    rec = Recorder()

    async def main():
        b = MicroBatcher(rec, max_batch_size=4, max_wait_ms=20)
        b.start()
        out = await asyncio.gather(*[b.submit([i]) for i in range(10)])
        await b.close()
        return out

    assert run(main()) == [[i * 10] for i in range(10)]
    assert [len(x) for x in rec.batches] == [4, 4, 2]
    assert [x for batch in rec.batches for x in batch] == list(range(10))  # first come, first served


def test_a_request_larger_than_the_batch_runs_alone() -> None:
    rec = Recorder()

    async def main():
        b = MicroBatcher(rec, max_batch_size=3, max_wait_ms=0)
        b.start()
        out = await b.submit(list(range(7)))
        await b.close()
        return out

    assert run(main()) == [x * 10 for x in range(7)]
    assert rec.batches == [list(range(7))]


def test_lone_request_waits_at_most_max_wait() -> None:
    async def main():
        b = MicroBatcher(Recorder(), max_batch_size=32, max_wait_ms=30)
        b.start()
        start = time.perf_counter()
        await b.submit([1])
        took = time.perf_counter() - start
        await b.close()
        return took

    took = run(main())
    assert 0.02 <= took < 0.5


def test_full_queue_refuses_with_retry_after() -> None:
    async def main():
        b = MicroBatcher(Recorder(delay=0.2), max_batch_size=2, max_wait_ms=0, max_queue=4)
        b.start()
        first = b.submit([1, 2])
        await asyncio.sleep(0.05)  # the first batch is now computing; the queue is empty again
        queued = [b.submit([3, 4]), b.submit([5, 6])]
        assert b.queue_depth == 4
        with pytest.raises(QueueFull) as err:
            b.submit([7])
        await asyncio.gather(first, *queued)
        await b.close()
        return err.value

    err = run(main())
    assert err.retry_after >= 1 and "queue is full" in str(err)


def test_one_bad_input_fails_only_its_request() -> None:
    rec = Recorder(fail_on=13)

    async def main():
        b = MicroBatcher(rec, max_batch_size=64, max_wait_ms=30)
        b.start()
        futures = [b.submit([1]), b.submit([13]), b.submit([2])]
        out = await asyncio.gather(*futures, return_exceptions=True)
        await b.close()
        return out

    good1, bad, good2 = run(main())
    assert good1 == [10] and good2 == [20]
    assert isinstance(bad, ValueError) and "13" in str(bad)
    assert rec.batches[0] == [1, 13, 2]  # tried together first, then one by one


def test_wrong_output_count_is_an_error() -> None:
    async def main():
        b = MicroBatcher(lambda xs: xs[:-1], max_wait_ms=0)
        b.start()
        with pytest.raises(RuntimeError, match="1 outputs for 2 inputs"):
            await b.submit([1, 2])
        await b.close()

    run(main())


def test_close_finishes_queued_work_then_refuses() -> None:
    rec = Recorder(delay=0.05)

    async def main():
        b = MicroBatcher(rec, max_batch_size=1, max_wait_ms=0)
        b.start()
        futures = [b.submit([i]) for i in range(5)]
        await b.close()
        assert all(f.done() for f in futures)
        with pytest.raises(Closed):
            b.submit([9])
        return [f.result() for f in futures]

    assert run(main()) == [[i * 10] for i in range(5)]


def test_cancelled_requests_are_skipped() -> None:
    rec = Recorder(delay=0.1)

    async def main():
        b = MicroBatcher(rec, max_batch_size=1, max_wait_ms=0)
        b.start()
        first = b.submit([1])
        await asyncio.sleep(0.02)
        gone = b.submit([2])
        gone.cancel()  # e.g. its request timed out while queued
        last = b.submit([3])
        await asyncio.gather(first, last)
        await b.close()

    run(main())
    assert [2] not in rec.batches and rec.batches == [[1], [3]]


def test_metrics_callbacks() -> None:
    sizes, depths = [], []

    async def main():
        b = MicroBatcher(
            Recorder(),
            max_batch_size=8,
            max_wait_ms=20,
            on_batch=lambda n, s: sizes.append(n),
            on_queue=depths.append,
        )
        b.start()
        await asyncio.gather(*[b.submit([i, i]) for i in range(3)])
        await b.close()

    run(main())
    assert sizes == [6]
    assert depths[:3] == [2, 4, 6] and depths[-1] == 0


def test_a_raising_metrics_callback_does_not_stop_the_loop() -> None:
    rec = Recorder()

    def bad_metrics(*args):
        raise RuntimeError("metrics backend down")

    async def main():
        b = MicroBatcher(rec, max_batch_size=2, max_wait_ms=0, on_batch=bad_metrics, on_queue=bad_metrics)
        b.start()
        first = await b.submit([1])  # the old loop died here, in on_batch ...
        second = await asyncio.wait_for(b.submit([2]), 2)  # ... and this request then timed out
        alive = b.running
        await b.close()
        return first, second, alive

    assert run(main()) == ([10], [20], True)


def test_submit_refuses_once_the_loop_is_not_running() -> None:
    async def main():
        b = MicroBatcher(Recorder())
        with pytest.raises(Closed):
            b.submit([1])  # never started
        b.start()
        b._task.cancel()  # the loop is gone (crashed or cancelled)
        await asyncio.sleep(0)
        with pytest.raises(Closed):
            b.submit([1])  # the old code queued it and the request waited for its timeout
        b._executor.shutdown()

    run(main())


def test_the_queue_is_bounded_in_bytes_too() -> None:
    gate = threading.Event()

    def predict(inputs):
        gate.wait(5)
        return list(inputs)

    async def main():
        b = MicroBatcher(predict, max_batch_size=1, max_wait_ms=0, max_queue=100, max_cost=100)
        b.start()
        running = b.submit(["a"], cost=90)  # taken into the forward pass at once: leaves the queue
        await asyncio.sleep(0.05)
        queued = b.submit(["b"], cost=80)
        with pytest.raises(QueueFull, match="bytes"):
            b.submit(["c"], cost=30)  # 80 + 30 > 100, though only 2 inputs are waiting
        gate.set()
        await asyncio.gather(running, queued)
        big = b.submit(["d"], cost=500)  # alone in an empty queue: one request always fits
        assert await big == ["d"]
        await b.close()

    run(main())
