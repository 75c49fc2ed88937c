"""Waiting for something another thread or process does, with a bound (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any], timeout_s: float = 15.0, what: str = "", interval_s: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that value.

    Raises:
        AssertionError: naming ``what`` (or the predicate) when ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
