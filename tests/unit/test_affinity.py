"""--cpu-affinity: which CPUs each worker is pinned to, as numbers."""

from __future__ import annotations

import pytest

from wsgiserve.affinity import check, worker_cpus
from wsgiserve.settings import Settings


def test_auto_pins_one_cpu_per_worker_when_workers_fill_the_cpus() -> None:
    assert [worker_cpus("auto", 2, slot, [0, 1]) for slot in range(2)] == [{0}, {1}]
    assert [worker_cpus("auto", 4, slot, [0, 1]) for slot in range(4)] == [{0}, {1}, {0}, {1}]
    # The CPUs this process may use, not CPU numbers from 0 (taskset, a cpuset).
    assert [worker_cpus("auto", 2, slot, [2, 5]) for slot in range(2)] == [{2}, {5}]


def test_auto_leaves_fewer_workers_than_cpus_to_the_kernel() -> None:
    # A worker with cores to spare may use them for app threads that release the GIL.
    assert worker_cpus("auto", 1, 0, [0, 1]) is None
    assert worker_cpus("auto", 3, 0, [0, 1, 2, 3]) is None
    assert worker_cpus("auto", 1, 0, [0]) is None  # one CPU: nothing to choose


def test_a_number_is_cpus_per_worker_handed_out_in_turn() -> None:
    cpus = [0, 1, 2, 3]
    assert [worker_cpus("2", 3, slot, cpus) for slot in range(3)] == [{0, 1}, {2, 3}, {0, 1}]
    assert worker_cpus("1", 1, 0, cpus) == {0}
    assert worker_cpus("8", 2, 1, cpus) == {0, 1, 2, 3}  # never more than there are


def test_off_or_no_slot_never_pins() -> None:
    assert worker_cpus("off", 2, 0, [0, 1]) is None
    assert worker_cpus("1", 2, -1, [0, 1]) is None


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_anything_else_is_refused_with_the_choices(value: str) -> None:
    with pytest.raises(ValueError, match="auto, off or"):
        check(value)
    with pytest.raises(ValueError, match="--cpu-affinity"):
        Settings(cpu_affinity=value)


def test_a_config_file_number_is_accepted() -> None:
    assert Settings(cpu_affinity=2).cpu_affinity == "2"  # type: ignore[arg-type]
    assert Settings(cpu_affinity="OFF").cpu_affinity == "off"
