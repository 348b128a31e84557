"""Numeric kernels of USP: pure JAX array functions, jit- and vmap-able, no I/O.

Float64 is switched on here, once, because per-series state holds epoch-nanosecond timestamps (int64)
and must survive values like 1e300 without overflow in squared terms; float32 would corrupt both.
Every module of USP that computes reaches JAX through this package, so the setting is in force before
any array is made.

XLA's CPU "concurrency-optimised scheduler" is turned off (unless XLA_FLAGS already says otherwise):
a step is a long chain of tiny dependent ops, which that scheduler reorders for parallelism it cannot
find and pays for on every tick; off, a back-test scan runs about 20% faster (40-43k -> 50k ticks/s on
the 2-core CI machine, `python -m models.perf`), with no change to the batched step. XLA reads the flag
when its CPU backend starts, which is after this import and before the first computation.
"""

import os

_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=false".strip()

import jax  # noqa: E402  (the flag above must be in the environment first)

jax.config.update("jax_enable_x64", True)
