"""A learner trained on a feed into a folder: the engine's compiled block, the host loop, checkpoints, resume.

    fit(learner, init_state, feed, out, config=..., hooks=[...])
      fresh:  state = init_state()                  position = feed.start()
      resume: state, position <- out/checkpoints    (refused under another config)
      then    loop.run(engine.compile(learner, state), ..., hooks + [Checkpoint])

Experiments that are not a plain stream run (recall tasks, a stream of
phases) assemble their run from this and their own hooks; `driver.train` is
the stream run's richer form of the same composition.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.sharding import Mesh

from contlearn import engine, loop
from contlearn.checkpoint import Checkpoints
from contlearn.engine import Learner
from contlearn.errors import CheckpointError


def fit(
  learner: Learner,
  init_state: Callable[[], Any],
  feed: loop.Feed,
  out: pathlib.Path,
  *,
  config: dict[str, Any],
  hooks: Sequence[loop.Hook] = (),
  lanes: bool = False,
  mesh: Mesh | None = None,
  size: Callable[[Any], int] = lambda xs: jax.tree.leaves(xs)[0].shape[0],
  resume: bool = False,
  checkpoint_every: int = 10,
  prefetch: int = 2,
) -> loop.Loop:
  """Trains `learner` on `feed` into `out` (checkpoints/); returns the finished loop.

  Args:
    learner: the learner; its step reads one entry of the feed's blocks.
    init_state: the placed initial state (e.g. `engine.init` plus lane settings).
    feed: the blocks.
    out: the run's folder.
    config: JSON of everything that defines the run; a resume under another
      configuration is refused.
    hooks: the run's hooks (their `meta` goes into every checkpoint).
    lanes: the state has a leading lane axis (`engine.compile(lanes=True)`).
    mesh: the devices' mesh the state and blocks are placed on (None: the
      default device).
    size: units in a host block (default: its steps).
    resume: continue from the latest checkpoint in `out/checkpoints`.
    checkpoint_every: blocks between checkpoints.
    prefetch: blocks prepared ahead on a host thread.

  Raises:
    CheckpointError: checkpoints exist but `resume` is False, or they hold
      another configuration.
  """
  out.mkdir(parents=True, exist_ok=True)
  checkpoints = Checkpoints(out / "checkpoints")
  hooks = list(hooks)
  saver = loop.Checkpoint(checkpoints, checkpoint_every, hooks, meta={"config": config})
  hooks.append(saver)

  def same_config(meta):
    if meta["config"] != config:
      raise CheckpointError(f"cannot resume {out}: its checkpoints hold a run of another configuration")

  if resume and checkpoints.latest() is not None:
    abstract = jax.eval_shape(init_state)
    if mesh is not None:
      abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        abstract,
        engine.state_sharding(abstract, mesh, lanes=lanes),
      )
    run, _ = loop.restore(checkpoints, abstract, hooks, check=same_config)
  else:
    if checkpoints.latest() is not None:
      checkpoints.close()
      raise CheckpointError(f"{out / 'checkpoints'} already holds checkpoints; resume that run, or choose another out")
    run = loop.Loop(state=init_state(), position=feed.start())
  saver.start_at(run.block)
  run_block = engine.compile(learner, run.state, mesh=mesh, lanes=lanes)
  return loop.run(
    run_block, run, feed, hooks, place=lambda xs: engine.place_xs(xs, mesh, lanes=lanes), size=size, prefetch=prefetch
  )
