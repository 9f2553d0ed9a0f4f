"""What the supervisor makes of the lines that come down a worker's heartbeat pipe."""

from __future__ import annotations

import json

from wsgiserve.roster import WorkerProcess


def line(**snapshot: object) -> bytes:
    return json.dumps(snapshot).encode() + b"\n"


def test_the_latest_complete_line_is_the_snapshot() -> None:
    worker = WorkerProcess(pid=1, heartbeat_fd=-1, generation=0, started=0.0, last_beat=0.0)
    assert worker.beat(line(served=1) + line(served=2), now=5.0)
    assert worker.snapshot == {"served": 2}
    assert worker.reported == 5.0


def test_a_line_split_across_reads_is_joined_not_lost() -> None:
    # Two answers back to back can exceed one read; the tail of the second arrives later.
    worker = WorkerProcess(pid=1, heartbeat_fd=-1, generation=0, started=0.0, last_beat=0.0)
    whole = line(served=1) + line(served=2, oldest=["x" * 100])
    worker.beat(whole[:30], now=1.0)
    assert worker.snapshot == {"served": 1}  # the half line is kept back, not parsed
    worker.beat(whole[30:60], now=2.0)
    assert worker.reported == 1.0  # nothing complete arrived: not an answer
    worker.beat(whole[60:], now=3.0)
    assert worker.snapshot == {"served": 2, "oldest": ["x" * 100]}
    assert worker.reported == 3.0
