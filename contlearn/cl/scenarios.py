"""Continual-learning scenarios as fixed-shape arrays.

A `Scenario` stacks T tasks. Each task's training and test rows are padded to
a common length (with a count of valid rows), so a whole scenario is one
pytree, and every task trains under the same compiled program. The permuted,
rotated and concept-shift streams hold their inputs once and gather each
task's features as its rows are read (`Scenario.feature_index`), so their
inputs do not grow with the number of tasks.

Three ways a label reaches the model (van de Ven et al., "Three scenarios"):
  * "task":   task-incremental, one head per task, label within the task;
  * "domain": domain-incremental, one shared head, label within the task;
  * "class":  class-incremental, one head over the labels of all tasks.

Streams: `split`, `permuted`, `rotated` and `concept_shift` differ only in
the input transform and label map each task applies to the base dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from contlearn.cl.datasets import Dataset
from contlearn.errors import ConfigError

KINDS = ("task", "domain", "class")


@struct.dataclass
class Scenario:
  """T tasks, each with padded train and test rows.

  Read a task's rows with `train_rows` and `test_rows`, which apply `feature_index`.

  Attributes:
    train_x: float32 [T, N, D], or [1, N, D] shared by every task when `feature_index` is set.
    train_y: int32 [T, N], label within the task's head.
    train_n: int32 [T], valid train rows of each task.
    test_x: float32 [T, M, D], or [1, M, D] when `feature_index` is set.
    test_y: int32 [T, M].
    test_n: int32 [T], valid test rows of each task.
    head: int32 [T], output head each task uses.
    head_size: output units per head (static).
    n_heads: number of heads (static).
    kind: "task", "domain" or "class" (static).
    name: description (static).
    feature_index: None, or int32 [T, D]: task t's feature j is the shared
      row's feature `feature_index[t, j]`, or 0 where that index is D (a
      permutation, a rotation with its corners zero-filled, the identity).
  """

  train_x: np.ndarray
  train_y: np.ndarray
  train_n: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray
  test_n: np.ndarray
  head: np.ndarray
  head_size: int = struct.field(pytree_node=False)
  n_heads: int = struct.field(pytree_node=False)
  kind: str = struct.field(pytree_node=False)
  name: str = struct.field(pytree_node=False)
  feature_index: np.ndarray | None = None

  @property
  def n_tasks(self) -> int:
    return int(self.head.shape[0])

  def train_rows(self, task, idx) -> tuple[jax.Array, jax.Array]:
    """Inputs float32 [n, D] and labels int32 [n] of train rows `idx` [n] of `task` (int32, scalar or [n])."""
    task, idx = jnp.broadcast_to(task, jnp.shape(idx)), jnp.asarray(idx)
    shared = self.feature_index is not None
    x = jnp.asarray(self.train_x)[jnp.zeros_like(task) if shared else task, idx]
    if shared:
      x = jnp.take_along_axis(x, jnp.asarray(self.feature_index)[task], axis=-1, mode="fill", fill_value=0)
    return x, jnp.asarray(self.train_y)[task, idx]

  def test_rows(self, task) -> tuple[jax.Array, jax.Array]:
    """Inputs float32 [M, D] and labels int32 [M] of `task`'s padded test rows (`test_n[task]` valid); `task`: a
    scalar (vmap it for several)."""
    y = jnp.asarray(self.test_y)[task]
    if self.feature_index is None:
      return jnp.asarray(self.test_x)[task], y
    return _gather(jnp.asarray(self.test_x)[0], jnp.asarray(self.feature_index)[task]), y

  def map_test_rows(self, fn: Callable, tasks_at_once: int = 32) -> jax.Array:
    """`fn(x [M, D], y [M], n, head)` on every task's padded test rows, stacked over the tasks: [T, ...].

    Copies are vmapped; rows held once are gathered `tasks_at_once` tasks at a time (`lax.map`), so this never
    holds one gathered copy per task.
    """
    if self.feature_index is None:
      return jax.vmap(fn)(self.test_x, self.test_y, self.test_n, self.head)
    rows = jnp.asarray(self.test_x)[0]
    return jax.lax.map(
      lambda a: fn(_gather(rows, a[0]), *a[1:]),
      (self.feature_index, self.test_y, self.test_n, self.head),
      batch_size=tasks_at_once,
    )

  @property
  def in_dim(self) -> int:
    return int(self.train_x.shape[-1])


def _gather(rows: jax.Array, index: jax.Array) -> jax.Array:
  """`rows [M, D]` with their features gathered by `index [D]`; index D reads 0."""
  return jnp.take(rows, index, axis=-1, mode="fill", fill_value=0)


def _pad(rows: Sequence[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
  n = max(len(r) for r in rows)
  out = np.zeros((len(rows), n, *rows[0].shape[1:]), dtype)
  for t, r in enumerate(rows):
    out[t, : len(r)] = r
  return out, np.asarray([len(r) for r in rows], np.int32)


def stack_tasks(
  tasks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
  kind: str,
  classes_per_task: int,
  name: str,
  label_offsets: Sequence[int],
  max_test: int | None = None,
  feature_index: np.ndarray | None = None,
) -> Scenario:
  """Builds a scenario from per-task `(x_train, y_train, x_test, y_test)`.

  Args:
    tasks: per task, inputs [N_t, D] and labels in [0, classes_per_task).
    kind: "task", "domain" or "class".
    classes_per_task: labels each task uses.
    name: description.
    label_offsets: per task, what class-incremental learning adds to a label.
    max_test: keep at most this many test rows per task (the first ones; `first_test_rows`).
    feature_index: None, or int32 [T, D] (`Scenario.feature_index`): every
      task's inputs are then the first task's, held once and gathered as
      they are read.

  Returns:
    The padded scenario.
  """
  if kind not in KINDS:
    raise ConfigError(f"scenario kind must be one of {KINDS}, got {kind!r}")
  if not tasks:
    raise ConfigError(f"scenario {name}: no tasks")
  n_tasks = len(tasks)
  offsets = np.asarray(label_offsets, np.int32) if kind == "class" else np.zeros(n_tasks, np.int32)
  xs, ys, xts, yts = [], [], [], []
  for t, (x, y, xt, yt) in enumerate(tasks):
    if len(x) == 0 or len(xt) == 0:
      raise ConfigError(f"scenario {name}: task {t} has no train or test rows")
    xt, yt = first_test_rows(xt, yt, max_test, f"scenario {name}, task {t}")
    xs.append(x)
    ys.append(y + offsets[t])
    xts.append(xt)
    yts.append(yt + offsets[t])
  shared = feature_index is not None
  if shared and not all(x is tasks[0][0] and xt is tasks[0][2] for x, _, xt, _ in tasks):
    raise ConfigError(f"scenario {name}: with feature_index, every task must share the first task's inputs")
  train_x, train_n = _pad(xs[:1] if shared else xs, np.float32)
  train_y, _ = _pad(ys, np.int32)
  test_x, test_n = _pad(xts[:1] if shared else xts, np.float32)
  test_y, _ = _pad(yts, np.int32)
  if shared:
    feature_index, d = np.asarray(feature_index, np.int32), train_x.shape[-1]
    if feature_index.shape != (n_tasks, d) or feature_index.min() < 0 or feature_index.max() > d:
      raise ConfigError(
        f"scenario {name}: feature_index must be [{n_tasks}, {d}] with entries in [0, {d}], "
        f"got shape {feature_index.shape} with entries in [{feature_index.min()}, {feature_index.max()}]"
      )
    train_n, test_n = np.repeat(train_n, n_tasks), np.repeat(test_n, n_tasks)
  if kind == "task":
    head, n_heads, head_size = np.arange(n_tasks, dtype=np.int32), n_tasks, classes_per_task
  elif kind == "domain":
    head, n_heads, head_size = np.zeros(n_tasks, np.int32), 1, classes_per_task
  else:
    head, n_heads = np.zeros(n_tasks, np.int32), 1
    head_size = int(max(int(offsets.max()) + classes_per_task, int(train_y.max()) + 1))
  return Scenario(
    train_x, train_y, train_n, test_x, test_y, test_n, head, head_size, n_heads, kind, name, feature_index
  )


def split(
  ds: Dataset, n_tasks: int, kind: str, class_order: Sequence[int] | None = None, max_test: int | None = None
) -> Scenario:
  """Split: task t holds classes `class_order[t*k:(t+1)*k]`, k = n_classes / n_tasks.

  Labels within a task are the class's position in its group; class-incremental
  learning adds `t*k` (so labels are the positions in `class_order`).
  """
  if n_tasks < 1 or ds.n_classes % n_tasks:
    raise ConfigError(f"split: {ds.n_classes} classes do not divide into {n_tasks} tasks")
  order = np.arange(ds.n_classes) if class_order is None else np.asarray(class_order)
  if sorted(order.tolist()) != list(range(ds.n_classes)):
    raise ConfigError(f"split: class_order must permute 0..{ds.n_classes - 1}, got {list(order)}")
  k = ds.n_classes // n_tasks
  rank = np.argsort(order)  # class -> position in order
  tasks = []
  for t in range(n_tasks):
    group = order[t * k : (t + 1) * k]
    tr, te = np.isin(ds.y_train, group), np.isin(ds.y_test, group)
    tasks.append((ds.x_train[tr], rank[ds.y_train[tr]] - t * k, ds.x_test[te], rank[ds.y_test[te]] - t * k))
  return stack_tasks(
    tasks, kind, k, f"split {ds.name}, {n_tasks} tasks, {kind}-IL", [t * k for t in range(n_tasks)], max_test
  )


def first_test_rows(x: np.ndarray, y: np.ndarray, max_test: int | None, where: str) -> tuple[np.ndarray, np.ndarray]:
  """The first `max_test` test inputs and labels (all of them if None or 0).

  Raises `ConfigError` where the rows are stored class by class (each class's rows one run) and the cut
  leaves a class out: the scores would then be read off some classes only.

  >>> y = np.array([0, 0, 0, 1, 1, 1])
  >>> first_test_rows(y, y, 4, "demo")[1].tolist()
  [0, 0, 0, 1]
  >>> first_test_rows(y, y, 2, "demo")  # doctest: +ELLIPSIS
  Traceback (most recent call last):
  contlearn.errors.ConfigError: demo: the first 2 of 6 test rows hold no row of class(es) [1]: the rows are ...
  """
  if not max_test or max_test >= len(y):
    return x, y
  present = np.unique(y)
  missing = np.setdiff1d(present, y[:max_test])
  class_by_class = np.count_nonzero(np.diff(y)) == len(present) - 1
  if class_by_class and len(missing):
    raise ConfigError(
      f"{where}: the first {max_test} of {len(y)} test rows hold no row of class(es) {missing.tolist()}: "
      f"the rows are stored class by class; shuffle them or raise max_test to {len(y)}"
    )
  return x[:max_test], y[:max_test]


def available_host_memory() -> int | None:
  """Bytes of host memory available now (Linux's `MemAvailable`), or None where the system does not say."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def check_fits_in_memory(name: str, n_tasks: int, rows: int, features: int) -> None:
  """Raises `ConfigError` when T tasks of `rows` float32 rows would not fit in the host memory available.

  Building holds each task's rows twice (the tasks, then their padded stack), so that is the estimate.
  """
  need, have = 2 * n_tasks * rows * features * 4, available_host_memory()
  if have is not None and need > have:
    raise ConfigError(
      f"scenario {name}: {n_tasks} tasks of {rows:,} rows x {features} features need about "
      f"{need / 2**30:.1f} GiB of host memory to build, {have / 2**30:.1f} GiB is available; use fewer tasks "
      "or fewer rows (a CL run's max_train)"
    )


def _label_maps(ds: Dataset, name: str, n_tasks: int, label_maps: Sequence[np.ndarray] | None) -> list[np.ndarray]:
  """Per task, the map from the dataset's labels to the task's (the identity for every task when None)."""
  if label_maps is None:
    return [np.arange(ds.n_classes)] * n_tasks
  if len(label_maps) != n_tasks:
    raise ConfigError(f"scenario {name}: {len(label_maps)} label maps for {n_tasks} tasks")
  return [np.asarray(m) for m in label_maps]


def transformed(
  ds: Dataset,
  transforms: Sequence[Callable[[np.ndarray], np.ndarray]],
  kind: str,
  name: str,
  label_maps: Sequence[np.ndarray] | None = None,
  max_test: int | None = None,
) -> Scenario:
  """One task per input transform (row by row) and optional label map of the whole dataset.

  Every task is a transformed copy of the dataset held in host memory (the first `max_test` test rows
  only): a `ConfigError` says so before building when the copies would not fit. A transform that gathers
  features (a permutation, a rotation) is better held once (`held_once`).
  """
  x_test, y_test = first_test_rows(ds.x_test, ds.y_test, max_test, f"scenario {name}")
  check_fits_in_memory(name, len(transforms), len(ds.x_train) + len(x_test), ds.x_train.shape[1])
  tasks = [
    (f(ds.x_train), lmap[ds.y_train], f(x_test), lmap[y_test])
    for f, lmap in zip(transforms, _label_maps(ds, name, len(transforms), label_maps))
  ]
  return stack_tasks(tasks, kind, ds.n_classes, name, [t * ds.n_classes for t in range(len(transforms))], max_test)


def held_once(
  ds: Dataset,
  feature_index: np.ndarray,
  kind: str,
  name: str,
  label_maps: Sequence[np.ndarray] | None = None,
  max_test: int | None = None,
) -> Scenario:
  """One task per row of `feature_index [T, D]` (`Scenario.feature_index`) and optional label map, the inputs
  held once and gathered as they are read."""
  feature_index, d = np.asarray(feature_index), ds.x_train.shape[1]
  if feature_index.ndim != 2 or feature_index.shape[1] != d or not np.issubdtype(feature_index.dtype, np.integer):
    raise ConfigError(
      f"scenario {name}: feature_index must be integers of shape [tasks, {d}], "
      f"got {feature_index.dtype} of shape {feature_index.shape}"
    )
  x_test, y_test = first_test_rows(ds.x_test, ds.y_test, max_test, f"scenario {name}")
  tasks = [
    (ds.x_train, lmap[ds.y_train], x_test, lmap[y_test])
    for lmap in _label_maps(ds, name, len(feature_index), label_maps)
  ]
  offsets = [t * ds.n_classes for t in range(len(tasks))]
  return stack_tasks(tasks, kind, ds.n_classes, name, offsets, max_test, feature_index=feature_index)


def permuted(
  ds: Dataset, n_tasks: int, kind: str, seed: int = 0, first_identity: bool = False, max_test: int | None = None
) -> Scenario:
  """Permuted: task t applies a fixed random permutation of the input features (held once, `held_once`)."""
  rng = np.random.default_rng(seed)
  d = ds.x_train.shape[1]
  perms = [np.arange(d) if (t == 0 and first_identity) else rng.permutation(d) for t in range(n_tasks)]
  return held_once(
    ds, np.reshape(perms, (n_tasks, d)), kind, f"permuted {ds.name}, {n_tasks} tasks, {kind}-IL", max_test=max_test
  )


def rotation_index(image_shape: tuple[int, ...], degrees: float) -> np.ndarray:
  """int [H*W]: feature j of an (H, W) image rotated counter-clockwise by `degrees` about its centre (nearest
  neighbour) is the original's feature `index[j]`, and 0 where `index[j]` is H*W (outside the original)."""
  if len(image_shape) != 2:
    raise ConfigError(f"a rotation needs (H, W) images, got image_shape={image_shape}")
  h, w = image_shape
  a = np.deg2rad(degrees)
  yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
  src_y = np.rint(np.cos(a) * yy + np.sin(a) * xx + (h - 1) / 2).astype(int)
  src_x = np.rint(-np.sin(a) * yy + np.cos(a) * xx + (w - 1) / 2).astype(int)
  ok = (src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)
  return np.where(ok, src_y * w + src_x, h * w).reshape(-1)


def rotated(ds: Dataset, angles: Sequence[float], kind: str, max_test: int | None = None) -> Scenario:
  """Rotated: task t rotates every image by `angles[t]` degrees (`rotation_index`; held once, `held_once`)."""
  index = np.reshape([rotation_index(ds.image_shape, a) for a in angles], (len(angles), ds.x_train.shape[1]))
  return held_once(ds, index, kind, f"rotated {ds.name}, angles {list(angles)}, {kind}-IL", max_test=max_test)


def concept_shift(ds: Dataset, n_tasks: int, seed: int = 0, max_test: int | None = None) -> Scenario:
  """Concept shift: the same inputs, but task t>0 remaps labels by a random permutation.

  Domain-incremental by construction: one head must follow the current mapping. The inputs are held once
  (`held_once`, every task's `feature_index` the identity).
  """
  rng = np.random.default_rng(seed)
  maps = [np.arange(ds.n_classes)] + [rng.permutation(ds.n_classes) for _ in range(n_tasks - 1)]
  index = np.tile(np.arange(ds.x_train.shape[1]), (n_tasks, 1))
  return held_once(ds, index, "domain", f"concept shift {ds.name}, {n_tasks} label maps", maps, max_test)
