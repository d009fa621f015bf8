"""A run in an output folder: its lock, its checkpoints and `--resume`, around the host loop.

    fit(learner, init_state, feed, out, config=...)
      lock:   out/.contlearn.lock (one writer per folder)
      fresh:  state = init_state()                 position = feed.start()
      resume: config checked, then state, position, hooks' meta <- out/checkpoints
      run:    `loop.run` with the `Checkpoint` hook added after the caller's hooks

`Checkpoint` saves the state, the feed position, the block and unit counts
and every hook's `meta()` every few blocks, at an interrupt and at the end;
`restore` reads the newest intact checkpoint back (a damaged one is set aside
for the one before it); `check_same_config` refuses a resume whose
configuration changed.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.sharding import Mesh

from contlearn import engine, sharding
from contlearn.checkpoint import Checkpoints
from contlearn.errors import CheckpointError, ConfigError
from contlearn.lock import OutputLock
from contlearn.loop import Feed, Hook, Loop, check_policy, run
from contlearn.processes import is_writer


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
      "seconds": loop.seconds,
      "skipped": loop.skipped,
      "retired": [[lane, block] for lane, block in sorted(loop.retired.items())],
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
  loop.seconds = meta.get("seconds")  # None: saved before it was recorded
  loop.skipped = int(meta.get("skipped", 0))
  loop.retired = {int(lane): int(at) for lane, at in meta.get("retired", [])}
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
    on_nonfinite: "stop", "skip" a block with a non-finite value, or (lanes)
      "retire" its non-finite lanes (see `run`).
    compiled: the block call already compiled for this run's shapes
      (`engine.compile_ahead`); None: compiled here.
    shares: each process's feed yields only its lanes of every block (a
      `contlearn.stream.share_of` stream: `idle()`, `gather(position)`; or a
      classic-CL `TaskFeed` with `rows`, whose shares all end together), placed
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
  check_policy(on_nonfinite, lanes)  # before any state is built or compiled
  out = pathlib.Path(out)
  config = json.loads(json.dumps(config))  # as the checkpoints hold it (tuples as lists): a resume compares alike
  with OutputLock(out):
    checkpoints = Checkpoints(out / "checkpoints", keep=keep)
    hooks = list(hooks)
    gather = feed.gather if shares else lambda position: position
    meta = {"config": config, "topology": topology(mesh)}
    hooks.append(Checkpoint(checkpoints, checkpoint_every, hooks, meta=meta, also=also, gather=gather))
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
        lanes=lanes,
      )
    except KeyboardInterrupt as e:
      e.resume_note = resume_note(out / "checkpoints")
      raise


def topology(mesh: Mesh | None) -> dict[str, Any]:
  """The processes, devices and mesh a run's state lives on (saved with each checkpoint)."""
  devices = mesh.devices.size if mesh is not None else 1
  return {"processes": jax.process_count(), "devices": devices, "mesh": dict(mesh.shape) if mesh is not None else {}}


def _words(topology: dict[str, Any]) -> str:
  mesh = " x ".join(f"{axis}={size}" for axis, size in topology["mesh"].items()) or "no mesh"
  return f"{topology['processes']} process(es) with {topology['devices']} device(s) ({mesh})"


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
    saved, now = meta.get("topology"), topology(mesh)
    if saved is not None and saved != now and is_writer():
      print(
        f"contlearn: resuming a run saved on {_words(saved)} on {_words(now)}: the state is resharded, "
        "so it continues equal to the uninterrupted run within float tolerance, not bit for bit",
        file=sys.stderr,
      )

  abstract = jax.eval_shape(init_state)
  if mesh is not None:
    abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      abstract,
      sharding.state_sharding(abstract, mesh, lanes=lanes),
    )
  loop, _ = restore(checkpoints, abstract, hooks, check=check)
  return loop
