"""The non-finite guard of the host loop: is a block's loss, metric or state finite?

After each compiled call the loop dispatches `state_finite(state)` (one
boolean scalar reduced on the device, read back with the block's metrics, so
the step itself never waits for the host) and checks the metrics it reads
back anyway. What to do about a non-finite block is the run's policy
(`train.on_nonfinite`): "stop" raises `NonFiniteError` before any hook sees
the block (no log record, no checkpoint of it); "skip" rolls the state back
to a copy taken before the block and goes on with the next one; "retire",
for a state of lanes (seeds x rates), rolls back only the lanes that went
non-finite (`lanes_finite`, `bad_lanes`) and keeps them at that state for the
rest of the run (`keep_lanes`), their metrics blanked (`blank_lanes`), while
the other lanes go on.

>>> import jax.numpy as jnp, numpy as np
>>> bool(state_finite({"w": jnp.ones(3), "step": jnp.int32(1)}))
True
>>> first_nonfinite({"loss": np.array([0.5, np.nan]), "count": np.array([2, 2])})
"['loss'][1]"
>>> bad_lanes({"loss": np.array([[0.5, 0.4], [np.inf, 0.3], [0.2, 0.1]])}, np.array([True, True, False]))
[1, 2]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import engine

POLICIES = ("stop", "skip", "retire")


def _finite(state: Any) -> jax.Array:
  floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats])) if floats else jnp.bool_(True)


state_finite = engine.compile_call(_finite, donate=False)
"""`state_finite(state)`: True when every floating-point leaf of `state` is finite; bool [] (a boundary call)."""


lanes_finite = engine.compile_call(_finite, lanes=True, donate=False)
"""`lanes_finite(state)`: per lane of a lane-stacked `state`, whether its floating-point leaves are finite;
bool [L] (a boundary call)."""


def bad_lanes(metrics: Any, finite: np.ndarray) -> list[int]:
  """The lanes whose state is not `finite` (bool [L]) or whose host `metrics` (leading axis: lanes) hold a
  non-finite value, in order."""
  bad = ~np.asarray(finite)
  for leaf in jax.tree.leaves(metrics):
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.inexact):
      bad |= ~np.all(np.isfinite(a.reshape(a.shape[0], -1)), axis=1)
  return [int(i) for i in np.flatnonzero(bad)]


def _keep_lanes(state: Any, before: Any, kept: jax.Array) -> Any:
  def pick(now, then):
    return jnp.where(kept.reshape(kept.shape + (1,) * (now.ndim - 1)), then, now)

  return jax.tree.map(pick, state, before)


keep_lanes = engine.compile_call(_keep_lanes)
"""`keep_lanes(state, before, kept)`: `state` (donated) with the lanes where `kept` (bool [L]) is True
taken from `before`."""


def blank_lanes(metrics: Any, lanes: list[int]) -> Any:
  """Host `metrics` (leading axis: lanes) with the floating-point values of `lanes` set to NaN."""

  def blank(leaf):
    a = np.array(leaf)
    if np.issubdtype(a.dtype, np.inexact):
      a[lanes] = np.nan
    return a

  return jax.tree.map(blank, metrics)


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
