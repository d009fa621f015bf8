"""The non-finite guard of the host loop: is a block's loss, metric or state finite?

After each compiled call the loop dispatches `state_finite(state)` (one
boolean scalar reduced on the device, read back with the block's metrics, so
the step itself never waits for the host) and checks the metrics it reads
back anyway. What to do about a non-finite block is the run's policy
(`train.on_nonfinite`): "stop" raises `NonFiniteError` before any hook sees
the block (no log record, no checkpoint of it); "skip" rolls the state back
to a copy taken before the block and goes on with the next one.

>>> import jax.numpy as jnp, numpy as np
>>> bool(state_finite({"w": jnp.ones(3), "step": jnp.int32(1)}))
True
>>> first_nonfinite({"loss": np.array([0.5, np.nan]), "count": np.array([2, 2])})
"['loss'][1]"
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import engine

POLICIES = ("stop", "skip")


def _finite(state: Any) -> jax.Array:
  floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats])) if floats else jnp.bool_(True)


state_finite = engine.compile_call(_finite, donate=False)
"""`state_finite(state)`: True when every floating-point leaf of `state` is finite; bool [] (a boundary call)."""


def first_nonfinite(metrics: Any) -> str | None:
  """Where the first non-finite value of host `metrics` is, e.g. ".nll[3]"; None when all are finite."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(metrics):
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
      where = np.argwhere(~np.isfinite(a))[0] if a.ndim else ()
      index = f"[{', '.join(str(int(i)) for i in where)}]" if a.ndim else ""
      return f"{jax.tree_util.keystr(path)}{index}"
  return None


def copy_state(state: Any) -> Any:
  """A device copy of `state` that survives the block call donating the original."""
  return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, state)
