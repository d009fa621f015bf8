"""The host loop: feed blocks, run the compiled call, call hooks at boundaries.

    feed --prefetch--> xs --(one compiled call, state donated)--> state
                                 |                                  |
                         metrics [steps] (read back               hooks, after
                         one block late)                          every block:
                                 v                                  v
                      hooks.on_metrics: logs,            checkpoint, task end,
                      progress, TensorBoard              evaluation, stop

Nothing per step runs here. A *feed* is a resumable source of fixed-shape
blocks (`start() -> position`, `next(position) -> (xs or None, position)`,
`describe() -> str`; a `contlearn.stream.Stream` is one). A *hook* is any
object with some of the methods of `Hook`; `run` calls them in order, so a
user's own writer (W&B, a plot, an early stop) is one more hook, not a copy of
the loop.

The metrics of block i are read back after block i+1 is dispatched, so the
host never waits for the device between blocks; `Loop.settle()` reads any
pending metrics at once (the checkpoint hook calls it before saving).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
from jax.sharding import Mesh

from contlearn import engine
from contlearn.checkpoint import Checkpoints
from contlearn.errors import CheckpointError
from contlearn.stream.prefetch import Prefetcher

# Set (by the CLI's signal handlers) to end the run at the next block boundary.
STOP = threading.Event()


class Feed(Protocol):
  """A resumable source of fixed-shape blocks."""

  def start(self) -> Any:
    """The position of the beginning."""

  def next(self, position: Any) -> tuple[Any, Any]:
    """The block at `position` and the position after it; None at the end."""

  def describe(self) -> str:
    """One line naming the source, for logs and error messages."""


@dataclasses.dataclass
class Loop:
  """The run as the hooks see it at a block boundary.

  Attributes:
    state: the learner state after the last block (a hook may replace it,
      e.g. a strategy's end of task).
    position: the feed's position after the last block consumed.
    block: blocks done.
    units: units learned from so far (tokens of a stream, examples of a
      classic-CL run), as counted by `run`'s `size`.
    env: the read-only data every step sees (None for a stream).
    stop: set by a hook to end the run after this block (a reason).
  """

  state: Any
  position: Any
  block: int = 0
  units: int = 0
  env: Any = None
  stop: str | None = None
  settle: Callable[[], None] = lambda: None


class Hook:
  """The points of the loop a hook may act at; every method is optional."""

  def on_start(self, loop: Loop) -> None:
    """The run starts at `loop.block` (0, or where a checkpoint left it)."""

  def before_block(self, loop: Loop, xs: Any) -> None:
    """A host block about to be dispatched (check it; set `loop.stop` to end here)."""

  def on_metrics(self, loop: Loop, block: int, units: int, new_units: int, metrics: Any) -> None:
    """Block `block`'s metrics on the host (`units` learned from up to its end)."""

  def after_block(self, loop: Loop) -> None:
    """A block boundary: the state is whole here."""

  def meta(self) -> dict[str, Any]:
    """What this hook adds to each checkpoint's metadata (JSON)."""
    return {}

  def restore(self, meta: dict[str, Any]) -> None:
    """Takes back what `meta` saved, on resume."""

  def on_end(self, loop: Loop) -> None:
    """The feed ended or a hook stopped the run."""

  def on_interrupt(self, loop: Loop) -> None:
    """A signal stopped the run (`loop.state` may be gone if it came mid-call)."""

  def close(self) -> None:
    """Releases files and threads, whatever happened."""


def state_intact(state: Any) -> bool:
  """False when an interrupted call had already taken the donated state."""
  return not any(leaf.is_deleted() for leaf in jax.tree.leaves(state) if hasattr(leaf, "is_deleted"))


def run(
  run_block: Callable[..., tuple[Any, Any]],
  loop: Loop,
  feed: Feed,
  hooks: list[Hook],
  *,
  place: Callable[[Any], Any] = lambda xs: xs,
  size: Callable[[Any], int] = lambda xs: 0,
  prefetch: int = 2,
) -> Loop:
  """Runs blocks from `loop.position` until the feed ends or a hook stops it.

  Args:
    run_block: the compiled call, `run_block(state, xs, env) -> (state, metrics)`.
    loop: where to start (fresh, or restored by `restore`).
    feed: the source of blocks.
    hooks: called in order at each point (see `Hook`).
    place: puts a host block on the devices.
    size: units in a host block (e.g. unmasked tokens).
    prefetch: blocks prepared ahead on a host thread.

  Raises:
    KeyboardInterrupt: `STOP` was set (by a signal) or Ctrl-C; hooks'
      `on_interrupt` ran first (the checkpoint hook saves a whole state).
  """
  pending: list[tuple[int, int, int, Any]] = []

  def settle():
    while pending:
      block, units, new_units, metrics = pending.pop(0)
      host = jax.device_get(metrics)
      for h in hooks:
        h.on_metrics(loop, block, units, new_units, host)

  loop.settle = settle
  for h in hooks:
    h.on_start(loop)
  blocks = Prefetcher(feed, loop.position, prefetch)
  try:
    for xs, position_after in blocks:
      if STOP.is_set():  # a signal asked to stop: the state is whole here
        raise KeyboardInterrupt
      for h in hooks:
        h.before_block(loop, xs)
      if loop.stop:
        break
      new_units = size(xs)
      loop.state, metrics = run_block(loop.state, place(xs), loop.env)
      settle()
      loop.block, loop.units, loop.position = loop.block + 1, loop.units + new_units, position_after
      pending.append((loop.block, loop.units, new_units, metrics))
      for h in hooks:
        h.after_block(loop)
      if loop.stop:
        break
    settle()
    for h in hooks:
      h.on_end(loop)
  except KeyboardInterrupt:
    for h in hooks:
      h.on_interrupt(loop)
    raise
  finally:
    blocks.close()
    for h in hooks:
      h.close()
  return loop


#### Hooks every family uses ####


class Checkpoint(Hook):
  """Orbax checkpoints every `every` blocks, at the end, on interrupt and when asked.

  Each checkpoint holds the state and, as JSON, the feed position, the block
  and unit counts and every hook's `meta()`. `also(loop)` asks for an extra
  save at a boundary (e.g. every task end).
  """

  def __init__(
    self,
    checkpoints: Checkpoints,
    every: int,
    hooks: list[Hook],
    meta: dict[str, Any] | None = None,
    also: Callable[[Loop], bool] = lambda loop: False,
  ):
    self.checkpoints, self.every, self.hooks = checkpoints, every, hooks
    self.extra, self.also = dict(meta or {}), also
    self.saved_at: int | None = None

  def on_start(self, loop: Loop) -> None:
    self.saved_at = loop.block

  def save(self, loop: Loop) -> None:
    loop.settle()
    meta = {"position": loop.position, "block": loop.block, "units": loop.units, **self.extra}
    for h in self.hooks:
      meta.update(h.meta())
    self.checkpoints.save(loop.block, loop.state, meta)
    self.saved_at = loop.block

  def after_block(self, loop: Loop) -> None:
    if loop.block % self.every == 0 or self.also(loop):
      self.save(loop)

  def on_end(self, loop: Loop) -> None:
    if loop.block and self.saved_at != loop.block:
      self.save(loop)

  def on_interrupt(self, loop: Loop) -> None:
    # An interrupt inside a call may find the donated state gone; the last
    # checkpoint then stands. At a boundary the state is whole: save it once.
    if self.saved_at != loop.block and state_intact(loop.state):
      self.save(loop)

  def close(self) -> None:
    self.checkpoints.close()


class StopAfter(Hook):
  """Ends the run before the block that would start past `units` units (0: never)."""

  def __init__(self, units: int):
    self.units = units

  def before_block(self, loop: Loop, xs: Any) -> None:
    if self.units and loop.units >= self.units:
      loop.stop = f"{self.units} units reached"


def restore(
  checkpoints: Checkpoints,
  abstract_state: Any,
  hooks: list[Hook],
  check: Callable[[dict[str, Any]], None] = lambda meta: None,
) -> tuple[Loop, dict[str, Any]]:
  """The loop where the latest checkpoint left it; each hook takes back its meta.

  `check(meta)` runs before any hook restores (e.g. refuse a changed config).
  """
  state, meta, block = checkpoints.restore(abstract_state)
  check(meta)
  for h in hooks:
    h.restore(meta)
  return Loop(state=state, position=meta["position"], block=block, units=int(meta["units"])), meta


def fit(
  learner: engine.Learner,
  init_state: Callable[[], Any],
  feed: Feed,
  out: str | pathlib.Path,
  *,
  config: dict[str, Any],
  hooks: Sequence[Hook] = (),
  env: Any = None,
  lanes: bool = False,
  mesh: Mesh | None = None,
  probe: Callable[[Any, Any], Any] | None = None,
  every: int = 0,
  size: Callable[[Any], int] = lambda xs: jax.tree.leaves(xs)[0].shape[0],
  resume: bool = False,
  checkpoint_every: int = 10,
  keep: int = 2,
  also: Callable[[Loop], bool] = lambda loop: False,
  same_run: Callable[[dict[str, Any]], None] | None = None,
  prefetch: int = 2,
) -> Loop:
  """Trains `learner` on `feed` into `out`, from scratch or from its latest checkpoint.

      fresh:  state = init_state()                 position = feed.start()
      resume: state, position, hooks' meta <- out/checkpoints
      then    run(engine.compile(learner, state), ..., hooks + [Checkpoint])

  Every family's run is this call with its own hooks (the stream's log, a
  classic-CL run's task ends, a recall task's evaluation).

  Args:
    learner: the learner; its step reads one entry of the feed's blocks.
    init_state: the placed initial state (e.g. `engine.init(...)`).
    feed: the blocks.
    out: the run's folder; checkpoints go to `out/checkpoints`.
    config: JSON of everything that defines the run, saved in every checkpoint.
    hooks: the run's hooks (their `meta` goes into every checkpoint).
    env: read-only data every step sees (e.g. a classic-CL scenario).
    lanes: the state has a leading lane axis (`engine.compile(lanes=True)`).
    mesh: the mesh the state and blocks are placed on (None: the default device).
    probe, every: `probe(state, env)` every `every` steps inside the compiled
      call (see `engine.compile`); the block's metrics are then `(metrics, probes)`.
    size: units in a host block (default: its steps).
    resume: continue from the latest checkpoint; without one, say so in a
      line and start (the models or cells of a resumed experiment that had not
      begun).
    checkpoint_every: blocks between checkpoints.
    keep: checkpoints kept.
    also: an extra checkpoint at the boundaries where it returns True.
    same_run: `same_run(saved_config)` raises CheckpointError when a resume
      would continue another run (default: any difference from `config`).
    prefetch: blocks prepared ahead on a host thread.

  Raises:
    CheckpointError: checkpoints exist but `resume` is False, or they hold
      another run.
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  checkpoints = Checkpoints(out / "checkpoints", keep=keep)
  if not resume and checkpoints.latest() is not None:
    checkpoints.close()
    raise CheckpointError(
      f"{out / 'checkpoints'} already holds checkpoints; pass --resume to continue that run, or choose another --out"
    )

  def check(meta: dict[str, Any]) -> None:
    if same_run is not None:
      same_run(meta["config"])
    elif meta["config"] != config:
      raise CheckpointError(f"cannot resume {out}: its checkpoints hold a run of another configuration")

  hooks = list(hooks)
  hooks.append(Checkpoint(checkpoints, checkpoint_every, hooks, meta={"config": config}, also=also))
  if resume and checkpoints.latest() is not None:
    abstract = jax.eval_shape(init_state)
    if mesh is not None:
      abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        abstract,
        engine.state_sharding(abstract, mesh, lanes=lanes),
      )
    try:
      run_, _ = restore(checkpoints, abstract, hooks, check=check)
    except BaseException:
      checkpoints.close()
      raise
    run_.env = env
  else:
    if resume:
      print(
        f"contlearn: no checkpoint to resume from in {out / 'checkpoints'}; starting from the beginning",
        file=sys.stderr,
      )
    run_ = Loop(state=init_state(), position=feed.start(), env=env)
  run_block = engine.compile(learner, run_.state, mesh=mesh, lanes=lanes, probe=probe, every=every)
  return run(
    run_block, run_, feed, hooks, place=lambda xs: engine.place_xs(xs, mesh, lanes=lanes), size=size, prefetch=prefetch
  )
