"""Unit edges of `usp bench` that need no broker."""

from __future__ import annotations

import pytest

from agents.bench import BenchError, _worker_rss_mb
from agents.supervise import ChildProcess


def test_a_gone_worker_has_no_resident_set_figure() -> None:
    """`resident_mb` answers 0 for a process /proc no longer has; the bench must say so, not report 0."""
    child = ChildProcess(["--help"], "gone")
    try:
        child.proc.wait(120)
        with pytest.raises(BenchError, match="no resident set"):
            _worker_rss_mb(child)
    finally:
        child.stop()
        child.cleanup()
