"""The write gate's budget across connections, with real threads: a writer waits while the
worker's stalled transports hold more than the budget, and goes on once they hold less."""

from __future__ import annotations

import threading

import pytest

from tests.support.polling import wait_until
from wsgiserve.errors import ClientDisconnected
from wsgiserve.flow import ResponseBudget, WriteGate


def writer(gate: WriteGate, size: int, done: threading.Event, errors: list[str]) -> None:
    try:
        gate.reserve(size)
    except ClientDisconnected as error:
        errors.append(type(error).__name__)
    done.set()


def start_writer(gate: WriteGate) -> tuple[threading.Event, list[str], threading.Thread]:
    done = threading.Event()
    errors: list[str] = []
    thread = threading.Thread(target=writer, args=(gate, 1000, done, errors))
    thread.start()
    return done, errors, thread


def test_writers_wait_while_the_budget_is_spent_and_go_on_when_it_frees() -> None:
    budget = ResponseBudget(limit=1_000_000)
    gates = [WriteGate(budget=budget) for _ in range(3)]
    budget.change(600_000)
    assert not budget.over
    budget.change(600_000)  # two stalled connections now hold 1.2 MB
    assert budget.over
    started = [start_writer(gate) for gate in gates]
    wait_until(lambda: len(budget._waiting) == 3, "all three writers to wait")
    assert not any(done.is_set() for done, _, _ in started)
    budget.change(-600_000)  # one slow reader was dropped
    for done, errors, thread in started:
        assert done.wait(5)
        thread.join()
        assert errors == []
    assert budget._waiting == set()


def test_a_waiting_writer_learns_its_client_left() -> None:
    budget = ResponseBudget(limit=10)
    gate = WriteGate(budget=budget)
    budget.change(11)
    done, errors, thread = start_writer(gate)
    wait_until(lambda: gate in budget._waiting, "the writer to wait")
    gate.abort()
    assert done.wait(5)
    thread.join()
    assert errors == ["ClientDisconnected"]


@pytest.mark.parametrize("limit", [0, 100])
def test_within_the_budget_or_without_one_nobody_waits(limit: int) -> None:
    budget = ResponseBudget(limit=limit)
    budget.change(100)
    assert not budget.over
    gate = WriteGate(budget=budget)
    gate.reserve(10**9)  # returns at once
