"""CompressARC's answer selection: crop search and scores against a loop reference; the ballot's rule; pass@k."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.compress_arc import selection, task

track = jax.jit(selection.track, static_argnums=0)  # one compile per signature
A, B, C = (((1,),),), (((2,),),), (((3,),),)  # one-test-example answers


def _challenge(rng, train_shapes, test_inputs):
  grid = lambda shape: rng.choice([0, 2, 5, 6], size=shape).tolist()
  return {
    "train": [{"input": grid(i), "output": grid(o)} for i, o in train_shapes],
    "test": [{"input": grid(i)} for i in test_inputs],
  }


def puzzles():
  """Two test examples each: output sizes implied (all train outputs one size) and not implied."""
  rng = np.random.default_rng(0)
  known = task.puzzle("known", _challenge(rng, [((5, 4), (2, 3)), ((3, 6), (2, 3))], [(4, 4), (6, 2)]), None)
  unknown = task.puzzle("unknown", _challenge(rng, [((5, 4), (2, 3)), ((3, 6), (4, 1))], [(4, 4), (6, 2)]), None)
  assert known.signature.all_out_same_size and not unknown.signature.all_out_same_size
  assert not unknown.signature.in_out_same_size
  return known, unknown


def _outputs(p, rng):
  """Random decoder outputs of the test examples: logits [n_test, C, X, Y], masks [n_test, X], [n_test, Y]."""
  sig = p.signature
  logits = rng.normal(size=(sig.n_test, sig.n_colors + 1, sig.n_x, sig.n_y)).astype(np.float32)
  x_mask = (3 * rng.normal(size=(sig.n_test, sig.n_x))).astype(np.float32)
  y_mask = (3 * rng.normal(size=(sig.n_test, sig.n_y))).astype(np.float32)
  return logits, x_mask, y_mask


def reference_slice(mask, length):
  """The official crop search, one length and offset at a time: the first strictly better length wins."""
  n = len(mask)
  best = None
  for size in range(1, n + 1) if length is None else [length]:
    scores = [-mask[:a].sum() + mask[a : a + size].sum() - mask[a + size :].sum() for a in range(n - size + 1)]
    if best is None or max(scores) > best[0]:
      best = (max(scores), int(np.argmax(scores)), int(np.argmax(scores)) + size)
  return best[1:]


def reference_candidate(p, logits, x_mask, y_mask):
  """(colors, x ranges, y ranges, mean uncertainty) of one candidate, written out per test example."""
  sig = p.signature
  known = sig.in_out_same_size or sig.all_out_same_size
  colors = logits.argmax(1)
  top = logits.max(1)
  uncertain = top + np.log(np.exp(logits - top[:, None]).sum(1)) - top
  x_ranges, y_ranges, values = [], [], []
  for t in range(sig.n_test):
    h, w = p.arrays.shapes[sig.n_train + t, 1] if known else (None, None)
    (x0, x1), (y0, y1) = reference_slice(x_mask[t], h), reference_slice(y_mask[t], w)
    x_ranges.append((x0, x1))
    y_ranges.append((y0, y1))
    values.append(uncertain[t, x0:x1, y0:y1].mean())
  return colors, np.array(x_ranges), np.array(y_ranges), np.mean(values)


@pytest.mark.parametrize("index", [0, 1])
def test_track_equals_the_loop_reference_over_steps(index):
  p = puzzles()[index]
  rng = np.random.default_rng(index)
  average = selection.init(p.signature)
  reference_average = [np.zeros(a.shape, np.float64) for a in average]
  for step in (0, 149, 150, 400):
    outputs = _outputs(p, rng)
    average, got = track(p.signature, p.arrays, average, *outputs, jnp.int32(step))
    reference_average = [0.97 * a + 0.03 * o for a, o in zip(reference_average, outputs)]
    for name, mine, theirs in zip(selection.Average._fields, average, reference_average):
      np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6, err_msg=name)
    assert got.colors.shape == (2, 2, p.signature.n_x, p.signature.n_y) and got.colors.dtype == jnp.int32
    assert got.x_range.shape == got.y_range.shape == (2, 2, 2) and got.score.shape == (2,)
    for k, (candidate, penalty) in enumerate(((outputs, 0.0), (reference_average, 4.0))):
      colors, x_ranges, y_ranges, uncertainty = reference_candidate(p, *candidate)
      np.testing.assert_array_equal(got.colors[k], colors)
      np.testing.assert_array_equal(got.x_range[k], x_ranges)
      np.testing.assert_array_equal(got.y_range[k], y_ranges)
      want = -10 * uncertainty - (10.0 if step < 150 else 0.0) - penalty
      np.testing.assert_allclose(float(got.score[k]), want, rtol=1e-5)
    if index == 0:  # sizes known: the crops have the predicted output shape
      assert (np.diff(got.x_range, axis=-1)[..., 0] == 2).all() and (np.diff(got.y_range, axis=-1)[..., 0] == 3).all()


def test_best_slice_breaks_ties_as_the_official_search_does():
  rng = np.random.default_rng(1)
  search = jax.jit(selection.best_slice, static_argnums=1)
  fixed = jax.jit(selection.best_slice)
  for _ in range(40):
    mask = rng.integers(-2, 3, size=int(rng.integers(1, 8))).astype(np.float32)  # integer sums: exact ties
    assert tuple(search(mask, None).tolist()) == reference_slice(mask, None), mask
    length = int(rng.integers(1, len(mask) + 1))
    assert tuple(fixed(mask, jnp.int32(length)).tolist()) == reference_slice(mask, length), (mask, length)
  assert search(np.zeros(5, np.float32), None).tolist() == [0, 1]  # all equal: the shortest, first slice
  assert fixed(np.zeros(5, np.float32), jnp.int32(3)).tolist() == [0, 3]


def test_two_lanes_under_vmap_equal_separate_calls():
  rng = np.random.default_rng(4)
  a = task.puzzle("a", _challenge(rng, [((5, 4), (2, 3)), ((3, 6), (2, 3))], [(4, 4), (6, 2)]), None)
  b = task.puzzle("b", _challenge(rng, [((6, 4), (2, 3)), ((3, 6), (2, 3))], [(4, 2), (1, 2)]), None)
  assert a.signature == b.signature
  sig = a.signature
  outputs = [_outputs(p, rng) for p in (a, b)]
  averages = [selection.Average(*(0.5 * o for o in outs)) for outs in outputs]
  steps = jnp.array([3, 300], jnp.int32)
  stacked = lambda parts: jax.tree.map(lambda *x: jnp.stack(x), *parts)
  lanes = jax.jit(jax.vmap(lambda *args: selection.track(sig, *args)))(
    task.stack([a, b]), stacked(averages), *stacked(outputs), steps
  )
  for lane, p in enumerate((a, b)):
    alone = track(sig, p.arrays, averages[lane], *outputs[lane], steps[lane])
    for got, want in zip(jax.tree.leaves(lanes), jax.tree.leaves(alone)):
      np.testing.assert_allclose(got[lane], want, rtol=1e-6)


def test_predictions_pick_the_test_outputs():
  p = puzzles()[0]
  sig = p.signature
  logits = np.arange(sig.n_examples * (sig.n_colors + 1) * sig.n_x * sig.n_y * 2, dtype=np.float32)
  logits = logits.reshape(sig.n_examples, sig.n_colors + 1, sig.n_x, sig.n_y, 2)
  x_mask, y_mask = np.ones((sig.n_examples, sig.n_x, 2)), np.ones((sig.n_examples, sig.n_y, 2))
  x_mask[2:, :, 1] = 7
  got = selection.predictions(sig, logits, x_mask, y_mask)
  np.testing.assert_array_equal(got.logits, logits[2:, ..., 1])
  assert (got.x_mask == 7).all() and got.y_mask.shape == (2, sig.n_y)


def _ballot(solution=None):
  challenge = {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[3]]}]}
  return selection.Ballot(task.puzzle("t", challenge, solution))


def test_ballot_accumulates_identical_answers_with_logaddexp():
  ballot = _ballot()
  assert ballot.attempts == ((((0, 0), (0, 0)),),) * 2  # the placeholders
  ballot.vote(A, -1.0)
  assert ballot.attempts == (A, (((0, 0), (0, 0)),))
  ballot.vote(B, -0.5)
  assert ballot.attempts == (B, A)
  ballot.vote(A, -1.0)  # e^-1 + e^-1 > e^-0.5
  assert ballot.totals[A] == pytest.approx(np.log(2 * np.exp(-1.0)))
  assert ballot.attempts == (A, B)
  ballot.vote(C, -0.6)  # below the second: not an attempt
  assert ballot.attempts == (A, B)
  ballot.vote(C, -0.6)  # log(2 e^-0.6) = 0.093 > -0.307: first
  assert ballot.attempts == (C, A) and set(ballot.totals) == {A, B, C}


def test_ballot_ties_go_to_the_newcomer_and_the_first_answer_stays():
  ballot = _ballot()
  ballot.vote(A, 0.0)
  ballot.vote(B, 0.0)  # ties the first: B moves ahead
  assert ballot.attempts == (B, A)
  ballot.vote(C, 0.0)  # ties both: C first, B second, A out
  assert ballot.attempts == (C, B)
  ballot.vote(C, -50.0)  # the first answer again: no change
  assert ballot.attempts == (C, B)
  ballot.vote(A, -60.0)  # A's total rises above B's, stays below C's: A takes the second place
  assert ballot.attempts == (C, A)


def test_add_takes_many_steps_at_once_and_renders_crops_in_arc_colours():
  p = puzzles()[1]
  sig = p.signature
  rng = np.random.default_rng(2)
  steps = 6
  colors = rng.integers(0, 2, size=(steps, 2, sig.n_test, sig.n_x, sig.n_y)).astype(np.int32)  # few distinct answers
  x_range = np.broadcast_to(np.array([1, 2]), (steps, 2, sig.n_test, 2))
  y_range = np.broadcast_to(np.array([0, 1]), (steps, 2, sig.n_test, 2))
  scores = rng.normal(size=(steps, 2)).astype(np.float32)
  at_once, one_by_one = selection.Ballot(p), selection.Ballot(p)
  at_once.add(selection.Candidates(colors, x_range, y_range, scores))
  for s in range(steps):
    one_by_one.add(selection.Candidates(colors[s], x_range[s], y_range[s], scores[s]))
  assert at_once.totals == one_by_one.totals and at_once.attempts == one_by_one.attempts
  assert len(at_once.totals) < 2 * steps  # the 1x1 crops repeat: totals accumulated
  first = tuple(((p.colors[colors[0, 0, t, 1, 0]],),) for t in range(sig.n_test))
  assert first in at_once.totals


def test_passes_count_each_test_example():
  p = puzzles()[0]
  right = (((0, 2, 5), (5, 5, 5)), ((6, 6, 6), (0, 0, 0)))
  ballot = selection.Ballot(p._replace(solution=right))
  ballot.vote((right[0], right[1]), -1.0)
  assert ballot.passes() == (1.0, 1.0)
  ballot.vote((right[0], ((0, 0, 0), (0, 0, 0))), 0.0)  # now first: right on the first test example only
  assert ballot.passes() == (0.5, 1.0)
  assert ballot.passes([right[1], right[1]]) == (0.0, 0.5)
  with pytest.raises(ValueError, match="no solution"):
    selection.Ballot(p).passes()


@pytest.mark.slow
def test_track_and_ballot_equal_the_official_logger(official):
  problems = official.dataset("training")
  for index, task_id in enumerate(official.ids):
    reference = official.preprocessing.Task(task_id, problems[task_id], None)
    logger = official.solution_selection.Logger(reference)
    placeholder = tuple(((0, 0), (0, 0)) for _ in range(reference.n_test))
    logger.solution_most_frequent = logger.solution_second_most_frequent = placeholder
    p = task.puzzle(task_id, problems[task_id], None)
    sig = p.signature
    rng = np.random.default_rng(index)
    base = 3 * rng.normal(size=(sig.n_examples, sig.n_colors + 1, sig.n_x, sig.n_y, 2))
    x_base, y_base = (
      3 * rng.normal(size=(sig.n_examples, sig.n_x, 2)),
      3 * rng.normal(size=(sig.n_examples, sig.n_y, 2)),
    )
    ballot, average = selection.Ballot(p), selection.init(sig)
    for step in range(140, 160):  # small noise around fixed logits: answers repeat and change
      logits = (base + 0.5 * rng.normal(size=base.shape)).astype(np.float32)
      logits[:, 0] = 0.0
      x_mask = (x_base + rng.normal(size=x_base.shape)).astype(np.float32)
      y_mask = (y_base + rng.normal(size=y_base.shape)).astype(np.float32)
      logger._track_solution(step, *(official.torch.tensor(a) for a in (logits, x_mask, y_mask)))
      average, candidates = track(sig, p.arrays, average, *selection.predictions(sig, logits, x_mask, y_mask), step)
      ballot.add(jax.tree.map(np.asarray, candidates))
    assert ballot.attempts == (logger.solution_most_frequent, logger.solution_second_most_frequent), task_id
    assert len(ballot.totals) == len(logger.solution_hashes_count) >= 2
    for answer, total in ballot.totals.items():
      assert total == pytest.approx(logger.solution_hashes_count[hash(answer)], rel=1e-5, abs=1e-4), task_id
