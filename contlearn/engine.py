"""The engine: the one place that scans, jits, donates, vmaps lanes and shards.

A learner is `Learner(init, step)`:

    init(key) -> LearnerState
    step(state, x, env) -> (state, metrics)

`x` is one step's slice of a fixed-shape block `xs` (leading axis: steps);
`env` is read-only data broadcast to every step and never carried (a
continual-learning scenario's arrays, a table of puzzles; None for a stream).
`compile(learner, state, ...)` returns the compiled block call

    run(state, xs, env=None) -> (state, metrics [steps, ...])
                             -> (state, (metrics [steps, ...], probes [steps // every, ...]))  with a probe

whose carry, the whole learner state, is donated so the device updates it in
place. Its options compose:

  probe, every   `probe(state, env)` evaluated after every `every` steps
                 inside the compiled call (accuracy on every task; a held-out
                 score), so measuring costs no host round trip;
  lanes          many learners stacked on a leading axis (seeds x
                 hyperparameters, learning-rate sweeps) advanced by one
                 `vmap`ped program on the same `xs` and `env`;
  lane_env       with lanes, `env` also has a leading lane axis: each lane
                 reads its own read-only data (a puzzle per lane);
  mesh           a `jax.sharding.Mesh` with axes "data", "fsdp" and "tensor"
                 (`sharding.make_mesh`): the batch axis of `xs` (axis 1) and
                 of the carried memory (axis 0) are split over data and fsdp,
                 or, with lanes, the lane axis over data; parameters and the
                 optimizer and strategy leaves that mirror them are split by
                 `sharding`'s fsdp and tensor rules; the rest is replicated.

>>> import jax, jax.numpy as jnp
>>> from contlearn.state import new_state
>>> def init(key):
...   return new_state({"w": jnp.zeros(())}, (), key)
>>> def step(state, x, env):                 # learns the running mean of x
...   w = state.params["w"] + (x - state.params["w"]) / (state.step + 1)
...   return state.replace(params={"w": w}, step=state.step + 1), w
>>> learner = Learner(init, step)
>>> state = init(jax.random.key(0))
>>> run = compile(learner, state)
>>> state, means = run(state, jnp.arange(1.0, 5.0))
>>> means.tolist()
[1.0, 1.5, 2.0, 2.5]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from contlearn import sharding
from contlearn.errors import ConfigError
from contlearn.state import LearnerState

PyTree = Any


class Learner(NamedTuple):
  """`init(key) -> LearnerState`; `step(state, x, env) -> (state, metrics)`, pure."""

  init: Callable[[jax.Array], LearnerState]
  step: Callable[[LearnerState, Any, Any], tuple[LearnerState, Any]]


def unshare_leaves(tree: PyTree) -> PyTree:
  """`tree` with every leaf its own array (a repeated leaf is copied).

  An update rule's or a strategy's `init` may put one array in several places
  of its state (`zeros` reused for two moments, a teacher equal to the
  parameters); a donated carry must not hold the same buffer twice.
  """
  seen = set()

  def own(leaf):
    if id(leaf) in seen:
      return jnp.array(leaf, copy=True)
    seen.add(id(leaf))
    return leaf

  return jax.tree.map(own, tree)


def place_state(state: LearnerState, mesh: Mesh | None = None, *, lanes: bool = False) -> LearnerState:
  """`state` on the mesh (or the default device), every leaf its own buffer."""
  state = unshare_leaves(state)
  if mesh is None:
    return jax.device_put(state)
  return jax.device_put(state, sharding.state_sharding(state, mesh, lanes=lanes))


def replicated(x: jax.Array, mesh: Mesh) -> jax.Array:
  """`x` (the same value in every process) as one array replicated over the whole mesh; a typed PRNG
  key array too. Under a trace (`jax.eval_shape` of an initialiser, as a resume does) `x` is already a
  value of the traced program and is returned as it is."""
  if isinstance(x, jax.core.Tracer):
    return x
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(replicated(jax.random.key_data(x), mesh), impl=jax.random.key_impl(x))
  return jax.device_put(np.asarray(x), NamedSharding(mesh, P()))


def place_xs(xs: PyTree, mesh: Mesh | None = None, *, lanes: bool = False) -> PyTree:
  """A block on the mesh, its batch axis split (see `sharding.xs_sharding`)."""
  if mesh is None:
    return jax.device_put(xs)
  return jax.device_put(xs, sharding.xs_sharding(xs, mesh, lanes=lanes))


def place_local_xs(xs: PyTree, mesh: Mesh) -> PyTree:
  """A block of which this process holds only its lanes (`sharding.local_lanes`) on the
  mesh, the whole block's batch axis split: each process passes its own share."""
  split = sharding.local_xs_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(split, np.asarray(x)), xs)


#### The scan and its compiled forms ####


def scan(
  learner: Learner,
  state: LearnerState,
  xs: PyTree,
  env: PyTree = None,
  *,
  probe: Callable[[LearnerState, PyTree], PyTree] | None = None,
  every: int = 0,
):
  """The un-jitted block: `lax.scan` of `learner.step` over the leading axis of `xs`.

  With `probe`, the steps run in groups of `every` and `probe(state, env)` is
  evaluated after each group; returns `(state, (metrics, probes))`.
  """
  body = lambda s, x: learner.step(s, x, env)  # noqa: E731
  if probe is None:
    return jax.lax.scan(body, state, xs)
  steps = jax.tree.leaves(xs)[0].shape[0]
  if every < 1 or steps % every:
    raise ConfigError(f"a block of {steps} steps cannot be probed every {every} steps")
  grouped = jax.tree.map(lambda a: a.reshape(steps // every, every, *a.shape[1:]), xs)

  def group(s, xg):
    s, metrics = jax.lax.scan(body, s, xg)
    return s, (metrics, probe(s, env))

  state, (metrics, probes) = jax.lax.scan(group, state, grouped)
  metrics = jax.tree.map(lambda a: a.reshape(steps, *a.shape[2:]), metrics)
  return state, (metrics, probes)


def _over_lanes(fn: Callable, lanes: bool, per_lane: tuple[int, ...] = ()) -> Callable:
  """`fn(state, *args)` mapped over the state's leading lane axis; the args
  whose positions are in `per_lane` are mapped over their leading axis too,
  the others shared."""
  if not lanes:
    return fn

  def mapped(state, *args):
    axes = tuple(0 if i in per_lane else None for i in range(len(args)))
    return jax.vmap(fn, in_axes=(0, *axes))(state, *args)

  return mapped


def compile(
  learner: Learner,
  state: LearnerState,
  *,
  mesh: Mesh | None = None,
  lanes: bool = False,
  probe: Callable[[LearnerState, PyTree], PyTree] | None = None,
  every: int = 0,
  lane_env: bool = False,
) -> Callable[..., tuple[LearnerState, Any]]:
  """The jitted, donated (and sharded) block call for states shaped like `state`.

  Returns `run(state, xs, env=None)`; see the module docstring. Place blocks
  with `place_xs` (and states with `place_state`) on the same mesh. With
  `lanes` and `lane_env`, `env` has a leading lane axis too: each lane reads
  its own data (one ARC puzzle per lane) while `xs` stays shared.
  """
  if lane_env and not lanes:
    raise ConfigError("lane_env needs lanes: an env with a lane axis belongs to a state with one")
  fn = _over_lanes(functools.partial(scan, learner, probe=probe, every=every), lanes, (1,) if lane_env else ())
  if mesh is None:
    return jax.jit(lambda s, xs, env=None: fn(s, xs, env), donate_argnums=0)
  s_sharding = sharding.state_sharding(state, mesh, lanes=lanes)
  return jax.jit(
    lambda s, xs, env=None: fn(s, xs, env),
    out_shardings=(s_sharding, NamedSharding(mesh, P())),
    donate_argnums=0,
  )


def compile_ahead(learner: Learner, state: PyTree, xs: PyTree, env: PyTree = None, **options) -> Callable[..., Any]:
  """`compile(learner, state, **options)` compiled now for blocks shaped like `xs` and `env`.

  `state`, `xs` and `env` may be abstract (`jax.ShapeDtypeStruct` leaves,
  e.g. from `jax.eval_shape`), so a program can be compiled on a worker
  thread while another one runs (XLA's compiler releases the interpreter
  lock): the next signature group of ARC puzzles compiles while this one
  trains. Returns the compiled `run(state, xs, env)` (donating the state).
  """
  return compile(learner, state, **options).lower(state, xs, env).compile()


def compile_call(fn: Callable[..., Any], *, lanes: bool = False, donate: bool = True) -> Callable[..., Any]:
  """A boundary call `fn(state, *args)` (a strategy's end of task, an
  evaluation) jitted once, mapped over lanes, the state donated if `donate`."""
  return jax.jit(_over_lanes(fn, lanes), donate_argnums=0 if donate else ())


def seed_keys(seeds) -> jax.Array:
  """One PRNG key per seed, stacked: uint32 [len(seeds), 2], the `key` of `init(..., lanes=True)`.

  >>> seed_keys([0, 1]).shape
  (2, 2)
  """
  return jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])


def init(
  learner: Learner,
  key: jax.Array,
  *,
  mesh: Mesh | None = None,
  lanes: bool = False,
  hparams: dict[str, Any] | None = None,
) -> LearnerState:
  """A placed learner state, initialised under `jit`.

  With a mesh, the state is made by one program whose outputs have the state's
  shardings (`sharding.state_sharding`): each device computes its own part
  and no device ever holds the whole of a split leaf. With `lanes`, `key`
  holds one key per lane (uint32 `[L, 2]` from `seed_keys`, or typed keys `[L]`) and the
  state gets a leading lane axis.
  `hparams` (scalars, or `[L]` arrays with lanes) override the learner's own
  hyperparameters; a name the learner lacks is a ConfigError.
  """
  make = jax.vmap(learner.init) if lanes else learner.init
  if mesh is None:
    state = jax.jit(make)(key)
  else:
    key = replicated(key, mesh)
    shardings = sharding.state_sharding(jax.eval_shape(make, key), mesh, lanes=lanes)
    state = jax.jit(make, out_shardings=shardings)(key)
  n_lanes = jax.tree.leaves(state.step)[0].shape[0] if lanes else 0
  state = with_hparams(state, hparams or {}, lanes=n_lanes)
  return place_state(state, mesh, lanes=lanes)


def with_hparams(state: LearnerState, hparams: dict[str, Any], *, lanes: int = 0) -> LearnerState:
  """`state` with some traced hyperparameters replaced (broadcast over lanes)."""
  unknown = sorted(set(hparams) - set(state.hparams))
  if unknown:
    raise ConfigError(f"unknown hyperparameter(s) {unknown}; the learner has {sorted(state.hparams)}")
  shape = (lanes,) if lanes else ()
  new = {k: jnp.broadcast_to(jnp.asarray(v, jnp.float32), shape) for k, v in hparams.items()}
  return state.replace(hparams={**state.hparams, **new})
