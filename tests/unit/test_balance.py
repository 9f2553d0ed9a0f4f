"""Sharing new connections among workers: the rule in numbers, and the shared slots."""

from __future__ import annotations

import os

import pytest

from wsgiserve.balance import STALE_AFTER, SharedCounts, back_in_share, over_share


@pytest.mark.parametrize(
    ("mine", "others", "stop"),
    [
        (10, [], False),  # alone: always accept
        (4, [0], False),  # within the minimum slack
        (5, [0], True),
        (30, [20], True),  # 20 + max(4, 5) = 25
        (25, [20], False),
        (120, [90, 200], True),  # the least loaded sibling decides: 90 + 22
        (112, [90, 200], False),
        (30, [20, 30], True),
        (0, [0, 0, 0], False),
    ],
)
def test_over_share(mine: int, others: list[int], stop: bool) -> None:
    assert over_share(mine, others) is stop


@pytest.mark.parametrize(
    ("mine", "others", "resume"),
    [
        (30, [], True),
        (22, [20], True),  # 20 + 5 // 2
        (23, [20], False),
        (2, [0], True),
        (3, [0], False),
    ],
)
def test_back_in_share_leaves_a_gap_against_flapping(
    mine: int, others: list[int], resume: bool
) -> None:
    assert back_in_share(mine, others) is resume


def test_slots_are_claimed_written_read_and_released() -> None:
    counts = SharedCounts()
    first, second, third = counts.claim(), counts.claim(), counts.claim()
    assert (first, second, third) == (0, 1, 2)
    counts.write(first, 7)
    counts.write(second, 3)
    assert sorted(counts.others(third)) == [3, 7]
    assert counts.others(first) == [3]  # third has not written: not accepting yet
    counts.write(third, 0)
    assert sorted(counts.others(first)) == [0, 3]
    counts.leave(third)  # stopping: no longer a share to measure by
    assert counts.others(first) == [3]
    counts.release(second)
    assert counts.others(first) == []
    assert counts.claim() == 1  # a freed slot is reused


def test_a_fork_sees_the_parents_slots_and_writes_back() -> None:
    counts = SharedCounts()
    parent_view = counts.claim()
    child_slot = counts.claim()
    pid = os.fork()
    if pid == 0:  # the child: write and leave without running any test machinery
        counts.write(child_slot, 42)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert counts.others(parent_view) == [42]


def test_a_silent_sibling_does_not_count() -> None:
    counts = SharedCounts()
    quiet, busy = counts.claim(), counts.claim()
    counts.write(quiet, 1, now=100.0)
    counts.write(busy, 50, now=100.0 + STALE_AFTER + 1)
    assert counts.others(busy, now=100.0 + STALE_AFTER + 1) == []  # quiet is wedged or gone
    assert counts.others(quiet, now=100.0 + STALE_AFTER + 1) == [50]
    assert counts.others(busy, now=100.0 + STALE_AFTER) == [1]  # just within the limit
