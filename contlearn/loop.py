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

With them comes one device scalar: is the state after the block finite
(`contlearn.nonfinite`). A non-finite state or metric stops the run with a
`NonFiniteError` before any hook sees that block, so no log record and no
checkpoint of it is written; with `on_nonfinite="skip"` the loop keeps a copy
of the state before each block (one state's memory more, and one host sync
per block), rolls back to it and goes on with the next block.

Stopping: `STOP` (set by the CLI's first SIGTERM or Ctrl-C) ends the run at
the next block boundary with `Interrupted`, after the hooks' `on_interrupt`
(the checkpoint hook saves the whole state there, unless it just did). Any
other KeyboardInterrupt (a second Ctrl-C) stops at once: no hook runs but
`close`, and the last finished checkpoint stands.

Several processes (`contlearn.processes`) run this loop in step: before each
block they agree on a stop asked by a signal, the end of the feed, a hook's
stop and a `ContlearnError` of the feed or a hook's `before_block`, so every
process leaves at the same block with the same error. With `shares`, each
process's feed yields only its lanes of each block (`fit`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import jax
from jax.sharding import Mesh

from contlearn import engine, nonfinite, processes
from contlearn.checkpoint import Checkpoints
from contlearn.errors import CheckpointError, ConfigError, ContlearnError, NonFiniteError
from contlearn.lock import OutputLock
from contlearn.stream.prefetch import Prefetcher

# Set (by the CLI's signal handlers) to end the run at the next block boundary.
STOP = threading.Event()


class Interrupted(KeyboardInterrupt):
  """`STOP` ended the run at a block boundary (the hooks' `on_interrupt` ran)."""


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
    skipped: blocks rolled back for a non-finite value (policy "skip").
  """

  state: Any
  position: Any
  block: int = 0
  units: int = 0
  env: Any = None
  stop: str | None = None
  skipped: int = 0
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
    """`STOP` ended the run at a block boundary (the state is whole)."""

  def close(self) -> None:
    """Releases files and threads, whatever happened."""


def run(
  run_block: Callable[..., tuple[Any, Any]],
  loop: Loop,
  feed: Feed,
  hooks: list[Hook],
  *,
  place: Callable[[Any], Any] = lambda xs: xs,
  size: Callable[[Any], int] = lambda xs: 0,
  prefetch: int = 2,
  on_nonfinite: str = "stop",
  shares: bool = False,
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
    on_nonfinite: "stop" or "skip" (see the module docstring).
    shares: each process's feed yields only its share of every block (see
      `fit`); the units are summed over the processes, and a process whose
      share has ended feeds `feed.idle()` blocks until every share has.

  Raises:
    Interrupted: `STOP` was set (by a signal); the hooks' `on_interrupt` ran.
    KeyboardInterrupt: any other interrupt, at once.
    NonFiniteError: a non-finite state or metric, with policy "stop".
  """
  if on_nonfinite not in nonfinite.POLICIES:
    raise ConfigError(f"on_nonfinite={on_nonfinite!r}: choose one of {', '.join(nonfinite.POLICIES)}")
  pending: list[tuple[int, int, int, Any, Any]] = []

  def nonfinite_in(block: int, metrics: Any, finite: Any) -> str | None:
    where = nonfinite.first_nonfinite(metrics)
    if where is None and not bool(finite):
      where = "the learner state"
    return None if where is None else f"chunk {block}: non-finite {where.lstrip('.')}"

  def settle():
    while pending:
      block, units, new_units, metrics, finite = pending.pop(0)
      host, finite = jax.device_get((metrics, finite))
      problem = nonfinite_in(block, host, finite)
      if problem is not None:
        raise NonFiniteError(
          f"{problem}; the run stopped, its last good checkpoint stands "
          "(lower the learning rate, or set train.on_nonfinite=skip)"
        )
      for h in hooks:
        h.on_metrics(loop, block, units, new_units, host)

  loop.settle = settle
  for h in hooks:
    h.on_start(loop)
  blocks = Prefetcher(feed, loop.position, prefetch)
  try:
    for xs, position_after, new_units in _agreed(blocks, loop, hooks, feed, size, shares):
      backup = nonfinite.copy_state(loop.state) if on_nonfinite == "skip" else None
      loop.state, metrics = run_block(loop.state, place(xs), loop.env)
      finite = nonfinite.state_finite(loop.state)
      settle()
      if backup is not None:
        problem = nonfinite_in(loop.block + 1, *jax.device_get((metrics, finite)))
        if problem is not None:
          loop.state, loop.block, loop.position = backup, loop.block + 1, position_after
          loop.skipped += 1
          print(f"contlearn: {problem}; rolled back and skipped it ({loop.skipped} skipped)", file=sys.stderr)
          continue
      loop.block, loop.units, loop.position = loop.block + 1, loop.units + new_units, position_after
      pending.append((loop.block, loop.units, new_units, metrics, finite))
      for h in hooks:
        h.after_block(loop)
    settle()
    for h in hooks:
      h.on_end(loop)
  finally:
    blocks.close()
    for h in hooks:
      h.close()
  return loop


def _agreed(
  blocks: Prefetcher, loop: Loop, hooks: list[Hook], feed: Feed, size: Callable[[Any], int], shares: bool
) -> Iterator[tuple[Any, Any, int]]:
  """`(block, position after it, its units)` to dispatch, each after the hooks'
  `before_block` and one decision every process shares (`processes.agree`): a
  signal to stop, a hook's stop or an error in any process, or the end of the
  feed in every process, ends every process at the same block. Raises
  `Interrupted` after the hooks' `on_interrupt`."""
  items = iter(blocks)
  while True:
    interrupt, stopped, item, error = STOP.is_set(), loop.stop is not None, None, None
    try:
      if not stopped:  # an `after_block` hook ended the run
        item = next(items, None)
        if item is not None and not interrupt:
          for h in hooks:
            h.before_block(loop, item[0])
    except ContlearnError as e:
      error = e
    end = not stopped and item is None
    units = size(item[0]) if item is not None else 0
    mine = processes.Flags(interrupt and not (stopped or end), end, loop.stop is not None, units, error)
    agreed = processes.agree(mine)
    if agreed.error is not None:
      raise error or agreed.error
    if agreed.end or agreed.stop:
      loop.stop = loop.stop or ("another process stopped" if agreed.stop else None)
      return
    if agreed.interrupt:  # a signal asked to stop: the state is whole here
      STOP.set()
      for h in hooks:
        h.on_interrupt(loop)
      raise Interrupted
    if item is None:  # this process's share has ended, another's has not
      item = feed.idle(), loop.position
    yield (*item, agreed.units if shares else units)


#### Hooks every family uses ####


class Checkpoint(Hook):
  """Orbax checkpoints every `every` blocks, at the end, on interrupt and when asked.

  Each checkpoint holds the state and, as JSON, the feed position, the block
  and unit counts and every hook's `meta()`. `also(loop)` asks for an extra
  save at a boundary (e.g. every task end). `gather(position)` is the position
  saved (default: the loop's own; with `shares`, every process's lanes).
  """

  def __init__(
    self,
    checkpoints: Checkpoints,
    every: int,
    hooks: list[Hook],
    meta: dict[str, Any] | None = None,
    also: Callable[[Loop], bool] = lambda loop: False,
    gather: Callable[[Any], Any] = lambda position: position,
  ):
    self.checkpoints, self.every, self.hooks = checkpoints, every, hooks
    self.extra, self.also, self.gather = dict(meta or {}), also, gather
    self.saved_at: int | None = None

  def on_start(self, loop: Loop) -> None:
    self.saved_at = loop.block

  def save(self, loop: Loop) -> None:
    loop.settle()  # raises on a non-finite block: nothing non-finite is saved
    meta = {
      "position": self.gather(loop.position),
      "block": loop.block,
      "units": loop.units,
      "skipped": loop.skipped,
      **self.extra,
    }
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
    if self.saved_at != loop.block:
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
  """The loop where the newest intact checkpoint left it; each hook takes back its meta.

  `check(meta)` runs on the saved metadata before any array is read (e.g.
  refuse a changed config); a checkpoint that cannot be read or fails its
  fingerprint is set aside for the one before it (`Checkpoints.restore_intact`).
  """
  state, meta, block = checkpoints.restore_intact(abstract_state, check)
  for h in hooks:
    h.restore(meta)
  loop = Loop(state=state, position=meta["position"], block=block, units=int(meta["units"]))
  loop.skipped = int(meta.get("skipped", 0))
  return loop, meta


def check_same_config(
  saved: dict[str, Any],
  now: dict[str, Any],
  where: pathlib.Path,
  resumable: Sequence[str] = (),
  added: dict[str, Any] | None = None,
) -> None:
  """Raises CheckpointError naming every key of the flat config `now` whose
  saved value differs, beyond the `resumable` keys (those a resume may change).

  `added` maps settings introduced after a run may have been saved to the
  value that behaves as the code did before them: a saved config without such
  a key reads as having that value.
  """
  saved = {**(added or {}), **saved}
  changed = [k for k in now if k not in resumable and saved.get(k) != now[k]]
  if changed:
    detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
    raise CheckpointError(f"cannot resume {where}: the configuration changed ({detail})")


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
  lane_env: bool = False,
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
  on_nonfinite: str = "stop",
  compiled: Callable[..., Any] | None = None,
  shares: bool = False,
) -> Loop:
  """Trains `learner` on `feed` into `out`, from scratch or from its newest intact checkpoint.

      lock:   out/.contlearn.lock (one writer per folder)
      fresh:  state = init_state()                 position = feed.start()
      resume: config checked, then state, position, hooks' meta <- out/checkpoints
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
    lane_env: `env` has a leading lane axis too, one entry per lane.
    mesh: the mesh the state and blocks are placed on (None: the default device).
    probe, every: `probe(state, env)` every `every` steps inside the compiled
      call (see `engine.compile`); the block's metrics are then `(metrics, probes)`.
    size: units in a host block (default: its steps).
    resume: continue from the newest intact checkpoint; without one, say so
      in a line and start (the models or cells of a resumed experiment that
      had not begun).
    checkpoint_every: blocks between checkpoints.
    keep: checkpoints kept (>= 1).
    also: an extra checkpoint at the boundaries where it returns True.
    same_run: `same_run(saved_config)` raises CheckpointError when a resume
      would continue another run (default: any difference from `config`).
    prefetch: blocks prepared ahead on a host thread.
    on_nonfinite: "stop" or "skip" a block with a non-finite value (see `run`).
    compiled: the block call already compiled for this run's shapes
      (`engine.compile_ahead`); None: compiled here.
    shares: each process's feed yields only its lanes of every block (a
      `contlearn.stream.share_of` stream: `idle()`, `gather(position)`), placed
      with `engine.place_local_xs`; its position is gathered into each
      checkpoint, so a resume on another number of processes finds every lane.

  Raises:
    CheckpointError: checkpoints exist but `resume` is False, or they hold
      another run, or none of them is intact.
    RunLocked: another live process writes into `out`.
    OutputError: `out` cannot be written.
  """
  if keep < 1 or checkpoint_every < 1:
    raise ConfigError(f"keep={keep} and checkpoint_every={checkpoint_every} must be >= 1")
  out = pathlib.Path(out)
  with OutputLock(out):
    checkpoints = Checkpoints(out / "checkpoints", keep=keep)
    hooks = list(hooks)
    gather = feed.gather if shares else lambda position: position
    hooks.append(Checkpoint(checkpoints, checkpoint_every, hooks, meta={"config": config}, also=also, gather=gather))
    try:
      start = _resumed(checkpoints, init_state, hooks, config, out, mesh, lanes, same_run) if resume else None
      if start is None and checkpoints.latest() is not None:
        raise CheckpointError(
          f"{out / 'checkpoints'} already holds checkpoints; pass --resume to continue that run, "
          "or choose another --out"
        )
      if start is None:
        if resume:
          print(
            f"contlearn: no checkpoint to resume from in {out / 'checkpoints'}; starting from the beginning",
            file=sys.stderr,
          )
        start = Loop(state=init_state(), position=feed.start())
      start.env = env
      checkpoints.remove_partial()
      run_block = compiled or engine.compile(
        learner, start.state, mesh=mesh, lanes=lanes, probe=probe, every=every, lane_env=lane_env
      )
    except BaseException:
      checkpoints.close()
      raise
    try:
      return run(
        run_block,
        start,
        feed,
        hooks,
        place=(lambda xs: engine.place_local_xs(xs, mesh))
        if shares
        else lambda xs: engine.place_xs(xs, mesh, lanes=lanes),
        size=size,
        prefetch=prefetch,
        on_nonfinite=on_nonfinite,
        shares=shares,
      )
    except KeyboardInterrupt as e:
      e.resume_note = resume_note(out / "checkpoints")
      raise


def resume_note(directory: pathlib.Path) -> str:
  """Which checkpoint in `directory` a `--resume` would continue from, in words."""
  finished = [int(p.name) for p in directory.glob("*") if p.name.isdigit()] if directory.is_dir() else []
  if finished:
    return f"--resume continues from checkpoint {max(finished)} in {directory}"
  return f"no checkpoint was written in {directory}; --resume starts that run from the beginning"


def _resumed(
  checkpoints: Checkpoints,
  init_state: Callable[[], Any],
  hooks: list[Hook],
  config: dict[str, Any],
  out: pathlib.Path,
  mesh: Mesh | None,
  lanes: bool,
  same_run: Callable[[dict[str, Any]], None] | None,
) -> Loop | None:
  """The loop restored from the newest intact checkpoint, or None when there is none."""
  if checkpoints.latest() is None:
    return None

  def check(meta: dict[str, Any]) -> None:
    if "config" not in meta:
      raise CheckpointError(f"cannot resume {out}: its checkpoints hold no configuration")
    if same_run is not None:
      same_run(meta["config"])
    elif meta["config"] != config:
      raise CheckpointError(f"cannot resume {out}: its checkpoints hold a run of another configuration")

  abstract = jax.eval_shape(init_state)
  if mesh is not None:
    abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      abstract,
      engine.state_sharding(abstract, mesh, lanes=lanes),
    )
  loop, _ = restore(checkpoints, abstract, hooks, check=check)
  return loop
