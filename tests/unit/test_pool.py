"""The worker pool with real threads; the test thread plays the event loop."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wsgiserve.pool import WorkerPool

WAIT = 5.0  # seconds: the most any step may take before the test fails


class FakeLoop:
    """`call_soon_threadsafe` into a queue; `run_until` runs the callbacks on the test thread."""

    def __init__(self) -> None:
        self.scheduled: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()
        self.thread = threading.current_thread()

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self.scheduled.put((callback, args))

    def run_once(self, timeout: float = WAIT) -> None:
        callback, args = self.scheduled.get(timeout=timeout)
        callback(*args)

    def run_until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            assert remaining > 0, "timed out waiting on the loop"
            with contextlib.suppress(queue.Empty):
                self.run_once(min(remaining, 0.05))


class Gate:
    """Jobs block on it; counts how many run at once."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.open = False
        self.active = 0
        self.most = 0
        self.started = 0

    def run(self) -> None:
        with self.cond:
            self.started += 1
            self.active += 1
            self.most = max(self.most, self.active)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.open, WAIT)
            self.active -= 1

    def wait_started(self, count: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.started >= count, WAIT)

    def release(self) -> None:
        with self.cond:
            self.open = True
            self.cond.notify_all()


@pytest.fixture
def loop() -> FakeLoop:
    return FakeLoop()


@pytest.fixture
def pools() -> Iterator[list[WorkerPool[Any]]]:
    """Pools to stop at teardown, so no test leaves threads behind."""
    started: list[WorkerPool[Any]] = []
    yield started
    for pool in started:
        pool.stop(timeout=WAIT)


def make_pool(
    pools: list[WorkerPool[Any]],
    loop: FakeLoop,
    handler: Callable[[Any], None],
    threads: int,
    max_waiting: int | None = None,
) -> WorkerPool[Any]:
    pool: WorkerPool[Any] = WorkerPool(handler, threads, loop.call_soon_threadsafe, max_waiting)
    pool.start()
    pools.append(pool)
    return pool


def test_every_job_runs_on_a_worker_and_reports_back_on_the_loop(
    loop: FakeLoop, pools: list[WorkerPool[Any]]
) -> None:
    ran_on: dict[int, str] = {}
    completed_on: list[threading.Thread] = []
    done: list[int] = []

    def complete(job: int) -> None:
        completed_on.append(threading.current_thread())
        done.append(job)
        pool.finished()

    def handler(job: int) -> None:
        ran_on[job] = threading.current_thread().name
        pool.post(complete, job)

    pool = make_pool(pools, loop, handler, threads=3)
    for job in range(50):
        pool.submit(job)
    loop.run_until(lambda: len(done) == 50)
    assert sorted(done) == list(range(50))
    assert all(name.startswith("wsgiserve-worker-") for name in ran_on.values())
    assert set(completed_on) == {loop.thread}
    assert pool.statistics()["busy"] == 0


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_a_burst_fills_every_thread_and_never_more(
    loop: FakeLoop, pools: list[WorkerPool[Any]], threads: int
) -> None:
    gate = Gate()
    pool = make_pool(pools, loop, lambda job: gate.run(), threads=threads)
    for job in range(threads * 3):
        pool.submit(job)
    assert gate.wait_started(threads), "an idle thread was never woken"
    with gate.cond:
        assert not gate.cond.wait_for(lambda: gate.started > threads, 0.1)
    assert pool.statistics() == {
        "threads": threads,
        "busy": threads,
        "idle": 0,
        "waiting": threads * 2,
    }
    gate.release()
    assert gate.wait_started(threads * 3)
    assert gate.most == threads


def test_posts_share_one_wakeup_until_the_loop_drains(
    loop: FakeLoop, pools: list[WorkerPool[Any]]
) -> None:
    pool = make_pool(pools, loop, lambda job: None, threads=1)
    got: list[int] = []
    posted = threading.Event()

    def post_many() -> None:
        for number in range(5):
            pool.post(got.append, number)
        posted.set()

    threading.Thread(target=post_many).start()
    assert posted.wait(WAIT)
    assert loop.scheduled.qsize() == 1
    loop.run_once()
    assert got == [0, 1, 2, 3, 4]
    assert pool.wakeups == 1
    pool.post(got.append, 5)
    assert loop.scheduled.qsize() == 1
    loop.run_once()
    assert got[-1] == 5
    assert pool.wakeups == 2


def test_a_failing_completion_does_not_stop_the_batch(
    loop: FakeLoop, pools: list[WorkerPool[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="wsgiserve.error")
    pool = make_pool(pools, loop, lambda job: None, threads=1)
    got: list[str] = []

    def fail(argument: str) -> None:
        raise RuntimeError(argument)

    pool.post(fail, "first")
    pool.post(got.append, "second")
    loop.run_once()
    assert got == ["second"]
    assert any(record.exc_info for record in caplog.records)


def test_post_after_the_loop_closed_is_dropped(pools: list[WorkerPool[Any]]) -> None:
    def closed_loop(*args: Any) -> None:
        raise RuntimeError("Event loop is closed")

    pool: WorkerPool[Any] = WorkerPool(lambda job: None, 1, closed_loop)
    pool.post(print, "never")  # does not raise


def test_a_failing_handler_is_logged_and_its_thread_keeps_working(
    loop: FakeLoop, pools: list[WorkerPool[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="wsgiserve.error")
    done: list[int] = []

    def handler(job: int) -> None:
        if job == 0:
            raise RuntimeError("handler bug")
        pool.post(done.append, job)

    pool = make_pool(pools, loop, handler, threads=1)
    pool.submit(0)
    pool.submit(1)
    loop.run_until(lambda: done == [1])
    assert any(
        record.exc_info and "handler bug" in str(record.exc_info[1]) for record in caplog.records
    )


def test_stop_runs_the_queued_jobs_and_ends_the_threads(loop: FakeLoop) -> None:
    threads: set[threading.Thread] = set()
    ran: list[int] = []
    lock = threading.Lock()

    def handler(job: int) -> None:
        time.sleep(0.001)
        with lock:
            threads.add(threading.current_thread())
            ran.append(job)

    pool: WorkerPool[Any] = WorkerPool(handler, 3, loop.call_soon_threadsafe)
    pool.start()
    for job in range(30):
        pool.submit(job)
    pool.stop(timeout=WAIT)
    assert sorted(ran) == list(range(30))
    assert threads
    assert not any(thread.is_alive() for thread in threads)
