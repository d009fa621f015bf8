"""Where each leaf of a learner state lives on the device mesh.

The mesh has three named axes, the conventions of MaxText, levanter and
EasyLM (`MeshConfig` gives their sizes):

  data    the batch (a stream's lanes) is split over it; nothing else is.
  fsdp    the batch is split over it too, and every parameter of at least
          `FSDP_MIN_ELEMENTS` elements is split on its largest dimension that
          the axis divides (big_vision's rule); XLA gathers it where it is used.
  tensor  the attention and MLP matrices are split by name (`TENSOR_RULES`:
          the input projections on their output dimension, the output
          projections on their input dimension); the batch is replicated.

The rules for a state (`state_sharding`):
  params            tensor rule by name, then the fsdp rule by shape;
  opt_state,        a leaf whose path ends with a parameter's path and that
  strategy          has its shape (Adam's moments, a CMS level's accumulated
                    gradients, EWC's anchor) follows that parameter; any
                    other leaf gets the fsdp rule alone;
  memory            split on its batch axis (0) over data and fsdp;
  hparams, step,    replicated.
  key
With lanes (learners stacked on a leading axis, `vmap`ped), every leaf's lane
axis is split over data (when data divides it), the rules above apply to the
rest, and the memory's batch axis (1) is split over fsdp.

A sharding is a layout only: the values a compiled block computes do not
depend on it beyond the order of floating-point sums.

>>> import jax
>>> mesh = make_mesh(MeshConfig(data=1, fsdp=1), jax.devices()[:1])
>>> dict(mesh.shape)
{'data': 1, 'fsdp': 1, 'tensor': 1}
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from contlearn.config import MeshConfig
from contlearn.errors import ConfigError
from contlearn.state import LearnerState

DATA, FSDP, TENSOR = "data", "fsdp", "tensor"
AXES = (DATA, FSDP, TENSOR)

# A leaf smaller than this stays whole: splitting it costs more in collectives than it saves.
FSDP_MIN_ELEMENTS = 512

# (pattern on a parameter's path, the dimension split over "tensor", counted from the end so that
# a stacked-layers axis in front changes nothing): column-parallel in, row-parallel out.
TENSOR_RULES: tuple[tuple[str, int], ...] = (
  (r"(^|/)mixer/(wqkv|wq|wk|wv|wg)$", -1),
  (r"(^|/)mixer/wo$", -2),
  (r"(^|/)ff/(\d+/)?w1$", -1),
  (r"(^|/)ff/(\d+/)?w2$", -2),
)

PyTree = Any


def make_mesh(cfg: MeshConfig | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The ("data", "fsdp", "tensor") mesh of `cfg` (default: all data) over `devices`
  (default: every device of every process), process-major so each process holds a
  contiguous range of the batch."""
  devices = list(devices) if devices is not None else jax.devices()
  sizes = (cfg or MeshConfig()).sizes(len(devices))
  return jax.make_mesh(sizes, AXES, devices=devices, axis_types=(AxisType.Auto,) * len(AXES))


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  """The mesh axes a batch is split over: data and fsdp (those the mesh has)."""
  return tuple(a for a in (DATA, FSDP) if a in mesh.axis_names)


def batch_ways(mesh: Mesh) -> int:
  """Into how many parts a batch is split."""
  return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def check_batch(batch: int, mesh: Mesh) -> None:
  """ConfigError unless `batch` splits evenly over the mesh's batch axes."""
  ways = batch_ways(mesh)
  if batch % ways:
    shape = " x ".join(f"{a}={mesh.shape[a]}" for a in batch_axes(mesh))
    raise ConfigError(f"data.batch={batch} must be a multiple of the {ways} parts ({shape}) it is split into")


def local_lanes(batch: int, mesh: Mesh) -> range:
  """The lanes (batch entries) of a block whose devices are this process's: a contiguous range.

  >>> local_lanes(8, make_mesh())
  range(0, 8)
  """
  sharding = NamedSharding(mesh, P(batch_axes(mesh)))
  starts = sorted({i[0].start or 0 for i in sharding.addressable_devices_indices_map((batch,)).values()})
  width = batch // batch_ways(mesh)
  lanes = range(starts[0], starts[-1] + width)
  if len(lanes) != width * len(starts):
    raise ConfigError(f"this process's devices hold lanes {starts} of {batch}, not a contiguous range")
  return lanes


def process_mesh() -> Mesh:
  """A data mesh of one device per process (the first of each): for learners small enough for one
  device (classic CL), as global arrays that every process checkpoints together; a block's batch
  and, when their number divides, the lanes are split over the processes.

  >>> process_mesh().devices.size == jax.process_count()
  True
  """
  first = {}
  for device in jax.devices():
    first.setdefault(device.process_index, device)
  return make_mesh(MeshConfig(), [first[p] for p in sorted(first)])


#### The rules ####


def path_name(path: tuple[Any, ...]) -> str:
  """A leaf's path as "blocks/0/mixer/wqkv"."""
  parts = []
  for key in path:
    for attr in ("key", "idx", "name"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


def _size(mesh: Mesh, axis: str) -> int:
  return mesh.shape[axis] if axis in mesh.axis_names else 1


def _fsdp_dim(shape: tuple[int, ...], taken: set[int], mesh: Mesh) -> int | None:
  n = _size(mesh, FSDP)
  if n == 1 or math.prod(shape) < FSDP_MIN_ELEMENTS:
    return None
  dims = [i for i in range(len(shape)) if i not in taken and shape[i] % n == 0]
  return max(dims, key=lambda i: (shape[i], -i)) if dims else None


def _tensor_dim(name: str, shape: tuple[int, ...], mesh: Mesh, rules: Sequence[tuple[str, int]]) -> int | None:
  n = _size(mesh, TENSOR)
  if n == 1:
    return None
  for pattern, dim in rules:
    if re.search(pattern, name):
      dim += len(shape)
      return dim if 0 <= dim < len(shape) and shape[dim] % n == 0 else None
  return None


def param_spec(name: str, shape: tuple[int, ...], mesh: Mesh, rules=TENSOR_RULES) -> tuple[str | None, ...]:
  """The partition of one parameter: its tensor dimension by name, then its fsdp dimension.

  >>> import jax
  >>> mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2), jax.devices()[:8])
  >>> param_spec("blocks/0/ff/0/w1", (128, 512), mesh)
  ('fsdp', 'tensor')
  >>> param_spec("embed", (256, 128), mesh), param_spec("blocks/0/ff/0/norm", (128,), mesh)
  (('fsdp', None), (None,))
  """
  spec: list[str | None] = [None] * len(shape)
  tensor = _tensor_dim(name, shape, mesh, rules)
  if tensor is not None:
    spec[tensor] = TENSOR
  fsdp = _fsdp_dim(shape, {tensor}, mesh)
  if fsdp is not None:
    spec[fsdp] = FSDP
  return tuple(spec)


def _param_specs(params: PyTree, mesh: Mesh, lead: int, rules) -> dict[str, tuple[tuple[int, ...], tuple]]:
  """Each parameter's path -> (shape, partition), the first `lead` (lane) dimensions left out."""
  specs = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    shape = tuple(np.shape(leaf))[lead:]
    specs[path_name(path)] = (shape, param_spec(path_name(path), shape, mesh, rules))
  return specs


def _follower_spec(name: str, shape: tuple[int, ...], params: dict, mesh: Mesh) -> tuple:
  """The partition of a leaf that may mirror a parameter (see the module docstring)."""
  parts = name.split("/")
  for i in range(len(parts)):
    match = params.get("/".join(parts[i:]))
    if match is not None and match[0] == shape:
      return match[1]
  spec: list[str | None] = [None] * len(shape)
  fsdp = _fsdp_dim(shape, set(), mesh)
  if fsdp is not None:
    spec[fsdp] = FSDP
  return tuple(spec)


def state_sharding(
  state: LearnerState, mesh: Mesh, *, lanes: bool = False, rules: Sequence[tuple[str, int]] = TENSOR_RULES
) -> LearnerState:
  """A `LearnerState` of `NamedSharding`s, one per leaf of `state` (module docstring)."""
  lead = 1 if lanes else 0
  params = _param_specs(state.params, mesh, lead, rules)

  def lane(shape: tuple[int, ...]) -> tuple[str | None, ...]:
    if not lanes:
      return ()
    return (DATA if shape and DATA in mesh.axis_names and shape[0] % mesh.shape[DATA] == 0 else None,)

  def sharded(tree: PyTree, spec_of) -> PyTree:
    def one(path, leaf):
      shape = tuple(np.shape(leaf))
      return NamedSharding(mesh, P(*lane(shape), *spec_of(path_name(path), shape[lead:])))

    return jax.tree_util.tree_map_with_path(one, tree)

  def memory_spec(name: str, shape: tuple[int, ...]) -> tuple:
    axes = (FSDP,) if lanes else batch_axes(mesh)
    ways = math.prod(_size(mesh, a) for a in axes)
    if not shape:
      return ()
    return (axes if shape[0] % ways == 0 and ways > 1 else None,)

  follow = lambda name, shape: _follower_spec(name, shape, params, mesh)  # noqa: E731
  replicate = lambda name, shape: ()  # noqa: E731
  return state.replace(
    params=sharded(state.params, lambda name, shape: params[name][1]),
    opt_state=sharded(state.opt_state, follow),
    strategy=sharded(state.strategy, follow),
    memory=sharded(state.memory, memory_spec),
    hparams=sharded(state.hparams, replicate),
    step=sharded(state.step, replicate),
    key=sharded(state.key, replicate),
  )


def xs_sharding(xs: PyTree, mesh: Mesh, *, lanes: bool = False) -> PyTree:
  """A block's batch axis (1) split over data and fsdp; replicated with lanes (they share xs)."""
  ways = batch_ways(mesh)

  def one(x):
    shape = np.shape(x)
    if lanes or len(shape) < 2 or shape[1] % ways:
      return NamedSharding(mesh, P())
    return NamedSharding(mesh, P(None, batch_axes(mesh)))

  return jax.tree.map(one, xs)


def local_xs_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of a block assembled from each process's lanes."""
  return NamedSharding(mesh, P(None, batch_axes(mesh)))


__all__ = [
  "AXES",
  "DATA",
  "FSDP",
  "FSDP_MIN_ELEMENTS",
  "TENSOR",
  "TENSOR_RULES",
  "batch_axes",
  "batch_ways",
  "check_batch",
  "local_lanes",
  "local_xs_sharding",
  "make_mesh",
  "param_spec",
  "path_name",
  "process_mesh",
  "state_sharding",
  "xs_sharding",
]
