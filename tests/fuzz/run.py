"""A longer, bounded fuzzing pass: `python -m tests.fuzz.run --seconds N`.

Runs the properties of `test_fuzz_protocol` against one live server, with fresh random
examples (not the CI pass's fixed ones), in batches, until N seconds have passed; prints
progress after each batch and a final count. Exits 1 on the first failure, after hypothesis
has shrunk it and printed the falsifying example, and 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.test_fuzz_protocol import CUTS, RANDOM_BYTES, Harness, mutated_pipelines

BATCH = 200  # examples per property per batch


def make_property(
    name: str,
    data: st.SearchStrategy[bytes],
    harness: Harness,
    deadline: float,
    counts: dict[str, int],
) -> Callable[[], None]:
    """A hypothesis test of `data` through `harness.check`; it stops working at `deadline`."""

    @settings(
        max_examples=BATCH,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(data=data, cuts=CUTS)
    def prop(data: bytes, cuts: list[float]) -> None:
        # Past the deadline, the rest of the batch passes without connecting: the run
        # ends within about one example's time of N seconds.
        if time.monotonic() >= deadline:
            return
        harness.check(data, cuts)
        counts[name] += 1

    prop.__name__ = name
    return prop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.seconds
    counts: dict[str, int] = {"mutated": 0, "random": 0}
    with Harness.running() as harness:
        properties: list[Callable[[], Any]] = [
            make_property("mutated", mutated_pipelines(), harness, deadline, counts),
            make_property("random", RANDOM_BYTES, harness, deadline, counts),
        ]
        try:
            while time.monotonic() < deadline:
                for prop in properties:
                    prop()
                elapsed = time.monotonic() - started
                print(
                    f"fuzz: {sum(counts.values())} connections in {elapsed:.0f}s "
                    f"(mutated {counts['mutated']}, random {counts['random']})",
                    flush=True,
                )
            harness.assert_serves()
        except Exception:
            traceback.print_exc()
            print(f"fuzz: FAILED after {sum(counts.values())} connections", flush=True)
            return 1
    total = sum(counts.values())
    print(
        f"fuzz: OK, {total} connections in {time.monotonic() - started:.0f}s, "
        "and the server still serves",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
