"""CompressARC as a learner: one puzzle's decoder, Adam and answer tracking, one step at a time.

The state of a puzzle is a `LearnerState`: params = the decoder's weights and
latent posteriors (`decoder.init_params`), opt_state = Adam(0.01, b1 0.5,
b2 0.9) (the official optimizer, no weight decay; its moments are kept for
the params raveled into one vector), memory = the moving
average of the test outputs (`selection.Average`), key = the puzzle's own
key (step s samples its latents with `fold_in(key, s)`). A step is

    out        = decode(params, puzzle, fold_in(key, s))
    loss       = KL(out) + 10 * reconstruction(out, puzzle, s)        (description length, nats)
    params     <- Adam(params, d loss / d params)
    memory, c  = track(memory, out's test outputs, s)                (two scored candidates)

with the candidates taken from the forward pass before the update, as the
official training step logs them. The puzzle is the step's read-only `env`
(`PuzzleArrays`); with `engine.compile(lanes=True, lane_env=True)` many
puzzles of one `Signature` are lanes of one compiled scan, each reading its
own arrays. The block entry is the step number (`contlearn.synthetic.StepFeed`
with `step_indices`), unused beyond its count: the state carries the step.

>>> from contlearn.compress_arc import task
>>> p = task.puzzle("demo", {"train": [{"input": [[1, 0]], "output": [[0, 1]]}], "test": [{"input": [[1, 1]]}]}, None)
>>> solver = learner(p.signature)            # compiled by the engine: `solve.solve` or `engine.compile`
>>> SolverConfig().lr, SolverConfig().b1, SolverConfig().b2
(0.01, 0.5, 0.9)
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import NamedTuple

import jax
import optax

from contlearn.compress_arc import decoder, loss, selection
from contlearn.compress_arc.puzzle import PuzzleArrays, Signature
from contlearn.engine import Learner
from contlearn.field_checks import require
from contlearn.state import LearnerState, new_state


@dataclasses.dataclass(frozen=True)
class SolverConfig:
  """The per-puzzle training rule and network.

  Attributes:
    lr: Adam's rate (the official 0.01).
    b1: its first-moment decay (0.5).
    b2: its second-moment decay (0.9).
    decoder: the network's sizes and constants (`decoder.DecoderConfig`).
  """

  lr: float = 0.01
  b1: float = 0.5
  b2: float = 0.9
  decoder: decoder.DecoderConfig = decoder.DecoderConfig()

  def __post_init__(self):
    require(self, positive=("lr",), fraction=("b1", "b2"))


class StepMetrics(NamedTuple):
  """One step's numbers (float32 []) and its two answer candidates."""

  loss: jax.Array
  kl: jax.Array
  reconstruction: jax.Array
  candidates: selection.Candidates


def learner(sig: Signature, cfg: SolverConfig = SolverConfig()) -> Learner:
  """The learner of one puzzle of signature `sig`; its step reads the puzzle's `PuzzleArrays` as `env`."""
  # Adam on the params raveled into one vector: the same arithmetic per element, as a few operations on one
  # array instead of a dozen on each of the ~200 weight arrays (thousands of small operations to compile).
  adam = optax.flatten(optax.adam(cfg.lr, b1=cfg.b1, b2=cfg.b2))

  def init(key: jax.Array) -> LearnerState:
    k_params, k_run = jax.random.split(key)
    params = decoder.init_params(sig, k_params, cfg.decoder)
    return new_state(params, adam.init(params), k_run, memory=selection.init(sig))

  def step(state: LearnerState, _, puzzle: PuzzleArrays) -> tuple[LearnerState, StepMetrics]:
    key = jax.random.fold_in(state.key, state.step)

    def objective(params):
      out = decoder.decode(sig, params, puzzle, key, config=cfg.decoder)
      recon = loss.reconstruction(sig, puzzle, out.logits, out.x_mask, out.y_mask, state.step)
      return loss.description_length(out.kl, recon), (out, recon)

    (total, (out, recon)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = adam.update(grads, state.opt_state, state.params)
    test = selection.predictions(sig, *jax.lax.stop_gradient((out.logits, out.x_mask, out.y_mask)))
    average, candidates = selection.track(sig, puzzle, state.memory, *test, state.step)
    new = state.replace(
      params=optax.apply_updates(state.params, updates), opt_state=opt_state, memory=average, step=state.step + 1
    )
    return new, StepMetrics(total, out.kl, recon, candidates)

  return Learner(init, step)


def puzzle_key(seed: int, task_id: str) -> jax.Array:
  """A puzzle's own key (from `seed` and its id): the same in a lane and alone, whatever trains beside it."""
  return jax.random.fold_in(jax.random.key(seed), zlib.crc32(task_id.encode()) & 0x7FFFFFFF)
