"""Numeric kernels of USP: pure JAX array functions, jit- and vmap-able, no I/O.

Float64 is switched on here, once, because per-series state holds epoch-nanosecond timestamps (int64)
and must survive values like 1e300 without overflow in squared terms; float32 would corrupt both.
Every module of USP that computes reaches JAX through this package, so the setting is in force before
any array is made.

XLA's CPU flags set here (unless XLA_FLAGS already names them), read when the CPU backend starts,
which is after this import and before the first computation. A step is a long chain of tiny dependent
ops, and XLA's CPU runtime pays a fixed cost per op (a "thunk") on every tick, so:

- the "concurrency-optimised scheduler" is off: it reorders that chain for parallelism it cannot
  find (off, a back-test scan ran about 20% faster, 40-43k -> 50k ticks/s on the 2-core CI machine);
- a while loop of any size is emitted as one compiled function instead of one thunk per op
  (`xla_cpu_small_while_loop_byte_threshold`, whose default of 1 KB only covers tiny loops). A
  back-test's `lax.scan` over a chunk of ticks is such a loop: 22-30k -> 75-124k ticks/s on NAB's
  longest series, outputs within 3e-14 of the per-op runtime's (`python -m models.perf`, alternating runs);
- YNNPACK fusions are off (`xla_cpu_experimental_ynn_fusion_type` empty): kernel A's 27 x 27 Gram
  product became one, and a loop holding such a custom fusion cannot be emitted as one function.

The batched step the workers run is not a loop at its top level and was unchanged by the last two
(`run_round_rows` per series-tick within the machine's noise at 16 to 1,024 series).
"""

import os

_FLAGS = {
    "--xla_cpu_enable_concurrency_optimized_scheduler": "false",
    "--xla_backend_extra_options": "xla_cpu_small_while_loop_byte_threshold=9000000000000000000",
    "--xla_cpu_experimental_ynn_fusion_type": "",
}
_env = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join([_env] + [f"{k}={v}" for k, v in _FLAGS.items() if k not in _env]).strip()

import jax  # noqa: E402  (the flags above must be in the environment first)

jax.config.update("jax_enable_x64", True)
