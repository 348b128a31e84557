"""The worker's step runtime (`agents.worker.pin_step_runtime`), each case in a fresh interpreter:
XLA reads its thread count once per process, when JAX makes its CPU client."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import os, sys
import jax, jax.numpy as jnp
from agents.worker import pin_step_runtime
threads = int(sys.argv[1])
pinned = pin_step_runtime(threads) if threads >= 0 else None
a = jnp.ones((1500, 1500))
ready_at_return = jax.jit(lambda m: (m @ m) @ m)(a).is_ready()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(pinned, names.count("tf_XLAEigen"), ready_at_return, pin_step_runtime(1))
"""


def _run(threads: int) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NPROC", "XLA_FLAGS")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(threads)], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    return done.stdout.split()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread names are read from /proc")
@pytest.mark.parametrize("threads", [1, 3])
def test_pinned_worker_runs_steps_inline_on_the_configured_threads(threads: int) -> None:
    pinned, eigen_threads, ready_at_return, again = _run(threads)
    assert pinned == "True"
    assert int(eigen_threads) == threads  # XLA's pool, one thread each
    assert ready_at_return == "True"  # computed before the call returned: no hand-off to another thread
    assert again == "False"  # too late once JAX has its client: refused, not silently ignored


def test_unpinned_process_dispatches_asynchronously() -> None:
    """The control: without the pin, the same call returns before its result is ready."""
    pinned, _, ready_at_return, _ = _run(-1)
    assert pinned == "None"
    assert ready_at_return == "False"
