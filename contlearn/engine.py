"""One chunk, one compiled call: `lax.scan` of the learner's step, sharded.

`compile_chunk(learner, mesh)` returns `run(state, chunk) -> (state, metrics)`:
a jitted scan over the chunk's steps whose carry (the whole learner state) is
donated, so the device updates it in place. The batch axis of the chunk and
of the model's memory is split over the mesh's "data" axis; parameters and
optimizer states are replicated. Metrics (`[steps]` arrays) are the only
thing that leaves the device, once per chunk.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from contlearn.errors import ConfigError
from contlearn.learner import Learner, LearnerState, StepMetrics
from contlearn.stream.base import Chunk

DATA = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A one-axis mesh ("data") over `devices` (default: all local devices)."""
  devices = list(devices) if devices is not None else jax.local_devices()
  return Mesh(np.array(devices), (DATA,))


def check_batch(batch: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if batch % n:
    raise ConfigError(f"data.batch={batch} must be a multiple of the {n} devices it is split over")


def state_sharding(state: LearnerState, mesh: Mesh) -> LearnerState:
  """Memory split over lanes ("data"); everything else replicated."""
  replicated = NamedSharding(mesh, P())
  lanes = NamedSharding(mesh, P(DATA))
  return LearnerState(
      params=jax.tree.map(lambda _: replicated, state.params),
      opt_state=jax.tree.map(lambda _: replicated, state.opt_state),
      memory=jax.tree.map(lambda _: lanes, state.memory),
      step=replicated,
      key=replicated,
  )


def chunk_sharding(mesh: Mesh) -> Chunk:
  lanes = NamedSharding(mesh, P(None, DATA))
  return Chunk(tokens=lanes, mask=lanes)


def scan_chunk(learner: Learner, state: LearnerState, chunk: Chunk):
  """The un-jitted chunk: `lax.scan` of `learner.step` over the leading axis."""
  return jax.lax.scan(learner.step, state, chunk)


def compile_chunk(
    learner: Learner, state: LearnerState, mesh: Mesh
) -> Callable[[LearnerState, Chunk], tuple[LearnerState, StepMetrics]]:
  """The jitted, donated, sharded chunk call for states shaped like `state`."""
  s_sharding = state_sharding(state, mesh)
  replicated = NamedSharding(mesh, P())
  return jax.jit(
      lambda s, c: scan_chunk(learner, s, c),
      in_shardings=(s_sharding, chunk_sharding(mesh)),
      out_shardings=(s_sharding, StepMetrics(replicated, replicated, replicated)),
      donate_argnums=0,
  )


def unshare_leaves(tree):
  """`tree` with every leaf its own array (a repeated leaf is copied).

  An update rule's `init` may put one array in several places of its state
  (`zeros` reused for two moments); a donated carry must not hold the same
  buffer twice.
  """
  seen = set()

  def own(leaf):
    if id(leaf) in seen:
      return jnp.array(leaf, copy=True)
    seen.add(id(leaf))
    return leaf

  return jax.tree.map(own, tree)


def place_state(state: LearnerState, mesh: Mesh) -> LearnerState:
  """`state` on the mesh with `state_sharding`, every leaf its own buffer."""
  return jax.device_put(unshare_leaves(state), state_sharding(state, mesh))


def place_chunk(chunk: Chunk, mesh: Mesh) -> Chunk:
  return jax.device_put(Chunk(*chunk), chunk_sharding(mesh))
