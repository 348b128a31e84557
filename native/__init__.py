"""Numeric kernels of USP: pure JAX array functions, jit- and vmap-able, no I/O.

Float64 is switched on here, once, because per-series state holds epoch-nanosecond timestamps (int64)
and must survive values like 1e300 without overflow in squared terms; float32 would corrupt both.
Every module of USP that computes reaches JAX through this package, so the setting is in force before
any array is made.
"""

import jax

jax.config.update("jax_enable_x64", True)
