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
per block), rolls back to it and goes on with the next block. With
`on_nonfinite="retire"` and a state of lanes (seeds x rates, one process),
only the lanes that went non-finite are rolled back; they stay at that state
to the end (`Loop.retired`: lane -> the block that retired it, saved in every
checkpoint), their metrics are NaN, and the other lanes go on (the same cost
as "skip": a copy of the state and one host sync per block); when every lane
has gone, the run stops as with "stop", and a resume must keep "retire". A hook that changes the state at a
boundary (a strategy's end of task) changes retired lanes too: "retire" is
for runs whose boundaries leave the state alone.

Stopping: `STOP` (set by the CLI's first SIGTERM or Ctrl-C) ends the run at
the next block boundary with `Interrupted`, after the hooks' `on_interrupt`
(the checkpoint hook saves the whole state there, unless it just did). Any
other KeyboardInterrupt (a second Ctrl-C) stops at once: no hook runs but
`close`, and the last finished checkpoint stands.

Several processes (`contlearn.processes`) run this loop in step: before each
block they agree on a stop asked by a signal, the end of the feed, a hook's
stop and a `ContlearnError` of the feed or a hook's `before_block`, so every
process leaves at the same block with the same error. With `shares`, each
process's feed yields only its lanes of each block (`run_folder.fit`).

A run in an output folder (its lock, checkpoints and `--resume`) is
`contlearn.run_folder.fit`, which drives this loop.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
import numpy as np

from contlearn import nonfinite, processes
from contlearn.errors import ConfigError, ContlearnError, NonFiniteError
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
    seconds: wall seconds from the start of `run` until the last block's
      metrics reached the host (compilation, the hooks' work and waiting for
      the feed included), summed over every invocation of a resumed run, so
      `units / seconds` is the run's throughput; None after resuming a
      checkpoint written without it.
    env: the read-only data every step sees (None for a stream).
    stop: set by a hook to end the run after this block (a reason).
    skipped: blocks rolled back for a non-finite value (policy "skip").
    retired: lanes rolled back for a non-finite value and kept there (policy
      "retire"): lane -> the block that retired it.
  """

  state: Any
  position: Any
  block: int = 0
  units: int = 0
  seconds: float | None = 0.0
  env: Any = None
  stop: str | None = None
  skipped: int = 0
  retired: dict[int, int] = dataclasses.field(default_factory=dict)
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
    """A block boundary: the state is whole here (after a skipped block, the state from before it)."""

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


def check_policy(on_nonfinite: str, lanes: bool) -> None:
  """Raises ConfigError for an unknown non-finite policy, or "retire" without lanes or in several processes.

  `run` checks it; a caller that builds a state first (`run_folder.fit`) checks it before.
  """
  if on_nonfinite not in nonfinite.POLICIES:
    raise ConfigError(f"on_nonfinite={on_nonfinite!r}: choose one of {', '.join(nonfinite.POLICIES)}")
  if on_nonfinite == "retire" and not (lanes and jax.process_count() == 1):
    raise ConfigError(
      "on_nonfinite='retire' retires lanes: it needs a run of lanes (seeds or rates) in one process; "
      "use 'stop' or 'skip'"
    )


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
  lanes: bool = False,
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
    on_nonfinite: "stop", "skip" or "retire" (see the module docstring).
    shares: each process's feed yields only its share of every block (see
      `fit`); the units are summed over the processes, and a process whose
      share has ended feeds `feed.idle()` blocks until every share has.
    lanes: the state and the metrics have a leading lane axis (needed by
      `on_nonfinite="retire"`).

  Raises:
    Interrupted: `STOP` was set (by a signal); the hooks' `on_interrupt` ran.
    KeyboardInterrupt: any other interrupt, at once.
    NonFiniteError: a non-finite state or metric, with policy "stop"; every
      lane non-finite, with policy "retire".
    ConfigError: an unknown policy; "retire" without lanes, in several
      processes, or not chosen again when resuming a run that retired lanes.
  """
  check_policy(on_nonfinite, lanes)
  if loop.retired and on_nonfinite != "retire":
    raise ConfigError(
      f"this run retired lane(s) {', '.join(map(str, sorted(loop.retired)))} for a non-finite value: "
      f"resume it with on_nonfinite='retire', not {on_nonfinite!r}"
    )
  pending: list[tuple[int, int, int, Any, Any]] = []

  def nonfinite_in(block: int, metrics: Any, finite: Any) -> str | None:
    if finite is None:  # checked when the block ended ("skip", "retire")
      return None
    where = nonfinite.first_nonfinite(metrics)
    if where is None and not bool(finite):
      where = "the learner state"
    return None if where is None else f"chunk {block}: non-finite {where.lstrip('.')}"

  mark = time.perf_counter()

  def settle():
    nonlocal mark
    if not pending:
      return
    while pending:
      block, units, new_units, metrics, finite = pending.pop(0)
      host, finite = jax.device_get((metrics, finite))
      problem = nonfinite_in(block, host, finite)
      if problem is not None:
        raise NonFiniteError(
          f"{problem}; the run stopped, its last good checkpoint stands "
          "(lower the learning rate, or choose another on_nonfinite policy)"
        )
      for h in hooks:
        h.on_metrics(loop, block, units, new_units, host)
    now = time.perf_counter()  # the time up to these results on the host, into `loop.seconds`
    if loop.seconds is not None:
      loop.seconds += now - mark
    mark = now

  loop.settle = settle
  for h in hooks:
    h.on_start(loop)
  blocks = Prefetcher(feed, loop.position, prefetch)
  try:
    for xs, position_after, new_units in _agreed(blocks, loop, hooks, feed, size, shares):
      backup = None if on_nonfinite == "stop" else nonfinite.copy_state(loop.state)
      loop.state, metrics = run_block(loop.state, place(xs), loop.env)
      finite = (nonfinite.lanes_finite if on_nonfinite == "retire" else nonfinite.state_finite)(loop.state)
      settle()
      if backup is not None:  # checked now: one host sync per block
        metrics, finite = jax.device_get((metrics, finite))
      problem = nonfinite_in(loop.block + 1, metrics, finite) if on_nonfinite == "skip" else None
      if on_nonfinite == "retire":
        metrics = _retire(loop, backup, metrics, finite)
      if problem is not None:
        loop.state, loop.block, loop.position = backup, loop.block + 1, position_after
        loop.skipped += 1
        print(f"contlearn: {problem}; rolled back and skipped it ({loop.skipped} skipped)", file=sys.stderr)
      else:
        loop.block, loop.units, loop.position = loop.block + 1, loop.units + new_units, position_after
        pending.append((loop.block, loop.units, new_units, metrics, None if backup is not None else finite))
      for h in hooks:  # a skipped block's boundary too: a task or phase that ends there still ends
        h.after_block(loop)
    settle()
    for h in hooks:
      h.on_end(loop)
  finally:
    blocks.close()
    for h in hooks:
      h.close()
  return loop


def _retire(loop: Loop, before: Any, metrics: Any, finite: Any) -> Any:
  """Policy "retire" after a block: lanes newly non-finite join `loop.retired`; every retired lane's state
  goes back to `before` and its host `metrics` to NaN. Returns the metrics."""
  block = loop.block + 1
  new = [lane for lane in nonfinite.bad_lanes(metrics, finite) if lane not in loop.retired]
  n_lanes = len(finite)
  if len(loop.retired) + len(new) == n_lanes:
    raise NonFiniteError(
      f"chunk {block}: every lane is non-finite; the run stopped, its last good checkpoint stands "
      "(lower the learning rate)"
    )
  for lane in new:
    loop.retired[lane] = block
  if new:
    print(
      f"contlearn: chunk {block}: non-finite lane(s) {', '.join(map(str, new))}; rolled back and retired "
      f"({len(loop.retired)} of {n_lanes} lanes retired, the others go on)",
      file=sys.stderr,
    )
  if not loop.retired:
    return metrics
  kept = np.zeros(n_lanes, bool)
  kept[list(loop.retired)] = True
  loop.state = nonfinite.keep_lanes(loop.state, before, kept)
  return nonfinite.blank_lanes(metrics, list(loop.retired))


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


class StopAfter(Hook):
  """Ends the run before the block that would start past `units` units (0: never)."""

  def __init__(self, units: int):
    self.units = units

  def before_block(self, loop: Loop, xs: Any) -> None:
    if self.units and loop.units >= self.units:
      loop.stop = f"{self.units} units reached"
