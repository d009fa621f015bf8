"""CompressARC on the engine: a lane equals its puzzle trained alone; padding is not the same computation;
`solve` trains groups of lanes, reports attempts and resumes exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import engine, loop
from contlearn.compress_arc import decoder, solve, task
from contlearn.compress_arc.learner import learner, puzzle_key
from contlearn.compress_arc.puzzle import PuzzleArrays


def _puzzle(task_id, seed, colours=(3, 4), n_x=3):
  """A hand-made puzzle: two 3x3 (or n_x x 3) train pairs whose output flips the input, one test input."""
  rng = np.random.default_rng(seed)
  palette = np.array([0, *colours])

  def grid():
    g = palette[rng.integers(0, len(palette), size=(n_x, 3))]
    g.flat[: len(palette)] = palette  # every colour present, so the colour count is fixed
    return g

  pairs = [grid() for _ in range(3)]
  challenge = {
    "train": [{"input": g.tolist(), "output": g[::-1].tolist()} for g in pairs[:2]],
    "test": [{"input": pairs[2].tolist()}],
  }
  return task.puzzle(task_id, challenge, [pairs[2][::-1].tolist()])


@pytest.mark.slow
def test_a_lane_equals_its_puzzle_trained_alone():
  a, b = _puzzle("aaaa", 0), _puzzle("bbbb", 1, colours=(5, 7))
  assert a.signature == b.signature
  sig, steps = a.signature, jnp.arange(3)
  solver = learner(sig)
  keys = jnp.stack([puzzle_key(0, p.task_id) for p in (a, b)])
  run = engine.compile(solver, engine.init(solver, keys, lanes=True), lanes=True, lane_env=True)
  lanes, metrics = run(engine.init(solver, keys, lanes=True), steps, jax.tree.map(jnp.asarray, task.stack([a, b])))
  for lane, p in enumerate((a, b)):
    alone = engine.compile(solver, solver.init(keys[lane]))
    _, m = alone(solver.init(keys[lane]), steps, jax.tree.map(jnp.asarray, p.arrays))
    np.testing.assert_allclose(metrics.loss[lane], m.loss, rtol=5e-4)  # float32 sums of ~1e5 nats, reordered
    # Step 0 exactly; after it Adam's first update (about lr * sign(g)) turns the rounding of tiny gradients
    # into visible differences, so later answers are not compared.
    np.testing.assert_allclose(metrics.candidates.score[lane, 0], m.candidates.score[0], rtol=1e-5)
    np.testing.assert_array_equal(metrics.candidates.colors[lane, 0], m.candidates.colors[0])
  assert not np.allclose(metrics.loss[0], metrics.loss[1])  # the lanes did read their own puzzles


def _grown(small, large):
  return jnp.asarray(np.pad(np.asarray(small), [(0, t - s) for s, t in zip(small.shape, large.shape)], mode="edge"))


@pytest.mark.slow
def test_padding_a_puzzle_into_a_larger_signature_changes_its_outputs():
  """The same puzzle on a canvas one row taller (masked off) decodes differently: padding is not exact."""
  p = _puzzle("aaaa", 0)
  sig, arrays = p.signature, p.arrays
  big = sig._replace(n_x=sig.n_x + 1)
  pad = lambda a: np.pad(a, [(0, 0), (0, 1)] + [(0, 0)] * (a.ndim - 2))  # noqa: E731
  padded = PuzzleArrays(pad(arrays.problem), pad(arrays.masks), arrays.shapes)
  params = decoder.init_params(sig, jax.random.key(0))
  # The same weights; a latent with an x axis grows by a copy of its last row.
  grown = jax.tree.map(_grown, params, decoder.init_params(big, jax.random.key(0)))
  out = decoder.decode(sig, params, jax.tree.map(jnp.asarray, arrays), jax.random.key(1), noise=False)
  out_big = decoder.decode(big, grown, jax.tree.map(jnp.asarray, padded), jax.random.key(1), noise=False)
  inside = out_big.logits[:, :, : sig.n_x]
  assert inside.shape == out.logits.shape
  assert not np.allclose(inside, out.logits, atol=1e-3)


@pytest.mark.slow
def test_solve_reports_attempts_per_group_and_resumes_exactly(tmp_path):
  puzzles = [_puzzle("aaaa", 0), _puzzle("bbbb", 1, colours=(5, 7)), _puzzle("cccc", 2, colours=(1, 2, 6))]
  # One group at a time here, two at once below: the same attempts either way.
  straight = solve.solve(
    puzzles, steps=6, block=2, report_at=(2,), out=tmp_path / "straight", progress=False, workers=1
  )
  assert set(straight["puzzles"]) == {"aaaa", "bbbb", "cccc"}
  assert straight["puzzles"]["aaaa"]["lanes"] == 2 and straight["puzzles"]["cccc"]["lanes"] == 1
  assert set(straight["pass@2"]) == {"2", "6"}
  row = straight["puzzles"]["aaaa"]["6"]
  assert len(row["attempts"]) == 2 and 0.0 <= row["pass@1"] <= row["pass@2"] <= 1.0
  # Interrupted after 2 of 6 steps (a checkpoint every block), then resumed: the same attempts and totals.
  cut = solve.solve(
    puzzles, steps=6, block=2, report_at=(2,), out=tmp_path / "resumed", progress=False, hooks=[loop.StopAfter(2)]
  )
  assert sorted(cut["unfinished"]) == ["aaaa", "bbbb", "cccc"] and "pass@2" not in cut
  resumed = solve.solve(
    puzzles, steps=6, block=2, report_at=(2,), out=tmp_path / "resumed", progress=False, resume=True
  )
  for task_id in ("aaaa", "bbbb", "cccc"):
    for at in ("2", "6"):
      assert resumed["puzzles"][task_id][at] == straight["puzzles"][task_id][at]
