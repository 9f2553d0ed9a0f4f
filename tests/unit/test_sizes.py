"""--max-worker-memory sizes: what an operator types, in bytes."""

from __future__ import annotations

import pytest

from wsgiserve.roster import format_size
from wsgiserve.settings import Settings, convert, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1 << 20),
        ("512MB", 512 * 10**6),
        ("512 mb", 512 * 10**6),
        ("512M", 512 << 20),
        ("512MiB", 512 << 20),
        ("1GiB", 1 << 30),
        ("1.5G", 3 << 29),
        ("2gb", 2 * 10**9),
        ("100K", 100 << 10),
        ("100kb", 100_000),
        ("0", 0),
    ],
)
def test_sizes_with_and_without_units(text: str, size: int) -> None:
    assert parse_size(text) == size
    assert convert("max_worker_memory", text) == size  # a config file or an env variable
    assert Settings(max_worker_memory=text).max_worker_memory == size  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "MB", "12 parsecs", "-5MB", "1TB", "1..5G"])
def test_a_size_that_is_not_one_says_what_is(text: str) -> None:
    with pytest.raises(ValueError, match="like 512MB"):
        convert("max_worker_memory", text)


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_worker_memory must not be negative"):
        Settings(max_worker_memory=-1)


def test_sizes_in_the_log_read_as_mib_with_the_exact_count() -> None:
    assert format_size(150 << 20) == "150.0 MiB (157286400 bytes)"
    assert format_size(100_000_000) == "95.4 MiB (100000000 bytes)"
    assert format_size(512) == "512 bytes"
