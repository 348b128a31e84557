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
pinned = pin_step_runtime(int(sys.argv[1]))
a = jnp.ones((1500, 1500))
ready_at_return = jax.jit(lambda m: (m @ m) @ m)(a).is_ready()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(pinned, names.count("tf_XLAEigen"), ready_at_return, pin_step_runtime(1))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread names are read from /proc")
@pytest.mark.parametrize("threads", [1, 3])
def test_pinned_worker_runs_steps_on_the_configured_threads(threads: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NPROC", "XLA_FLAGS")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(threads)], capture_output=True, text=True,
                          env=env, timeout=120, check=True)
    pinned, eigen_threads, ready_at_return, again = done.stdout.split()
    assert pinned == "True"
    assert int(eigen_threads) == threads  # XLA's pool, one thread each
    assert ready_at_return == "False"  # dispatch stays asynchronous (`round_chunks` overlaps on it)
    assert again == "False"  # too late once JAX has its client: refused, not silently ignored
