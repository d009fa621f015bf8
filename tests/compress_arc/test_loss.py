"""CompressARC's reconstruction against a slow float64 reference with explicit loops; known sizes; lanes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.compress_arc import loss, task

reconstruction = jax.jit(loss.reconstruction, static_argnums=0)  # one compile per signature


def _grid(rng, shape, colours):
  return rng.choice(colours, size=shape).tolist()


def _challenge(rng, train_shapes, test_inputs, colours=(0, 1, 3, 8)):
  """A random challenge: train pairs of the given (input, output) shapes, test inputs of the given shapes."""
  return {
    "train": [{"input": _grid(rng, i, colours), "output": _grid(rng, o, colours)} for i, o in train_shapes],
    "test": [{"input": _grid(rng, i, colours)} for i in test_inputs],
  }


def puzzles():
  """Puzzles covering the size cases: in/out same size; all outputs one size only; neither (inputs vary too)."""
  rng = np.random.default_rng(0)
  same = task.puzzle("same", _challenge(rng, [((3, 4), (3, 4)), ((2, 5), (2, 5))], [(4, 3)]), None)
  outs = task.puzzle("outs", _challenge(rng, [((4, 4), (2, 3)), ((5, 3), (2, 3))], [(3, 5), (4, 2)]), None)
  neither = task.puzzle("neither", _challenge(rng, [((3, 3), (1, 4)), ((4, 2), (5, 3))], [(2, 5)]), None)
  assert same.signature.in_out_same_size and not same.signature.all_in_same_size
  assert outs.signature.all_out_same_size and not (outs.signature.in_out_same_size or outs.signature.all_in_same_size)
  assert not (neither.signature.in_out_same_size or neither.signature.all_out_same_size)
  assert not neither.signature.all_in_same_size
  return [same, outs, neither]


def decoder_outputs(p, seed):
  """Random colour and mask logits shaped as the decoder's, the masks post-processed (-1000 past the grids)."""
  sig, shapes = p.signature, p.arrays.shapes
  rng = np.random.default_rng(seed)
  logits = 2.0 * rng.normal(size=(sig.n_examples, sig.n_colors + 1, sig.n_x, sig.n_y, 2))
  logits[:, 0] = 0.0
  x_mask = 3.0 * rng.normal(size=(sig.n_examples, sig.n_x, 2))
  y_mask = 3.0 * rng.normal(size=(sig.n_examples, sig.n_y, 2))
  for e in range(sig.n_examples):
    x_mask[e, shapes[e, :, 0].max() :] -= 1000.0
    y_mask[e, shapes[e, :, 1].max() :] -= 1000.0
  return logits.astype(np.float32), x_mask.astype(np.float32), y_mask.astype(np.float32)


def _logsumexp(values):
  values = np.asarray(values, np.float64)
  top = values.max()
  return top + np.log(np.sum(np.exp(values - top)))


def _offsets(mask, length):
  """(partition, per-offset scores) of the slices of one length: inside summed, outside subtracted."""
  scores = [
    -mask[:a].sum() + mask[a : a + length].sum() - mask[a + length :].sum() for a in range(len(mask) - length + 1)
  ]
  return _logsumexp(scores), np.array(scores)


def reference(p, logits, x_mask, y_mask, step):
  """The reconstruction term written out one grid, offset and length at a time, in float64."""
  sig, arrays = p.signature, p.arrays
  logits, x_mask, y_mask = (np.asarray(a, np.float64) for a in (logits, x_mask, y_mask))
  total = 0.0
  for e in range(sig.n_examples):
    for mode in range(2):
      if e >= sig.n_train and mode == 1:
        continue
      known = sig.in_out_same_size or (sig.all_out_same_size and mode == 1) or (sig.all_in_same_size and mode == 0)
      c1 = 1.0 if known else 0.01 ** max(0.0, 1 - step / 100)
      h, w = arrays.shapes[e, mode]
      xz, xs = _offsets(c1 * x_mask[e, :, mode], h)
      yz, ys = _offsets(c1 * y_mask[e, :, mode], w)
      if not known:
        xz = _logsumexp([_offsets(c1 * x_mask[e, :, mode], n)[0] for n in range(1, sig.n_x + 1)])
        yz = _logsumexp([_offsets(c1 * y_mask[e, :, mode], n)[0] for n in range(1, sig.n_y + 1)])
      target = arrays.problem[e, :h, :w, mode]
      terms = np.zeros((len(xs), len(ys)))
      for a in range(len(xs)):
        for b in range(len(ys)):
          crop = logits[e, :, a : a + h, b : b + w, mode]
          logp = crop - np.log(np.exp(crop).sum(0))
          ce = -sum(logp[target[i, j], i, j] for i in range(h) for j in range(w))
          terms[a, b] = xs[a] - xz + ys[b] - yz - ce
      c2 = 1.0 if known else 0.1 ** max(0.0, 1 - step / 100)
      total -= _logsumexp(c2 * terms.ravel()) / c2
  return total


@pytest.mark.parametrize("step", [0, 50, 200])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_reconstruction_equals_the_loop_reference(index, step):
  p = puzzles()[index]
  outputs = decoder_outputs(p, seed=10 * index + 1)
  got = reconstruction(p.signature, p.arrays, *outputs, jnp.int32(step))
  want = reference(p, *outputs, step)
  assert got.shape == () and got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), want, rtol=2e-5, atol=2e-3)


def test_known_sizes_and_certain_masks_give_the_summed_cross_entropy():
  p = puzzles()[0]  # in/out same size: every size is known
  sig, arrays = p.signature, p.arrays
  logits, _, _ = decoder_outputs(p, seed=5)
  big = 50.0  # the true crop at offset 0 wins by e^-100 or more
  x_mask = np.where(np.arange(sig.n_x)[None, :, None] < arrays.shapes[:, None, :, 0], big, -big).astype(np.float32)
  y_mask = np.where(np.arange(sig.n_y)[None, :, None] < arrays.shapes[:, None, :, 1], big, -big).astype(np.float32)
  wide = logits.astype(np.float64)
  logp = wide - np.log(np.exp(wide).sum(1, keepdims=True))
  ce = 0.0
  for e in range(sig.n_examples):
    for mode in range(2 if e < sig.n_train else 1):
      h, w = arrays.shapes[e, mode]
      target = arrays.problem[e, :h, :w, mode]
      ce -= np.take_along_axis(logp[e, :, :h, :w, mode], target[None], axis=0).sum()
  got = reconstruction(sig, arrays, logits, x_mask, y_mask, jnp.int32(0))
  np.testing.assert_allclose(float(got), ce, rtol=1e-5)


def test_two_lanes_under_jit_and_vmap_equal_separate_calls_and_have_finite_gradients():
  rng = np.random.default_rng(3)
  a = task.puzzle("a", _challenge(rng, [((3, 3), (1, 4)), ((4, 2), (5, 3))], [(2, 5)]), None)
  b = task.puzzle("b", _challenge(rng, [((2, 5), (5, 1)), ((3, 4), (2, 2))], [(5, 5)]), None)
  assert a.signature == b.signature and not np.array_equal(a.arrays.shapes, b.arrays.shapes)
  sig = a.signature
  outputs = [decoder_outputs(p, seed=s) for s, p in enumerate((a, b))]
  stacked = [np.stack(parts) for parts in zip(*outputs)]
  steps = jnp.array([7, 130], jnp.int32)
  lanes = jax.jit(jax.vmap(lambda *args: loss.reconstruction(sig, *args)))(task.stack([a, b]), *stacked, steps)
  for lane, p in enumerate((a, b)):
    alone = reconstruction(sig, p.arrays, *outputs[lane], steps[lane])
    np.testing.assert_allclose(float(lanes[lane]), float(alone), rtol=1e-5)
  grads = jax.jit(jax.grad(lambda lx: loss.reconstruction(sig, a.arrays, *lx, jnp.int32(3))))(outputs[0])
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
  assert float(jnp.abs(grads[0]).sum()) > 0 and float(jnp.abs(grads[1]).sum()) > 0


def test_description_length_weights_the_reconstruction_ten_times():
  assert float(loss.description_length(jnp.float32(2.5), jnp.float32(0.25))) == 5.0


@pytest.mark.slow
def test_reconstruction_equals_the_official_take_step(official):
  torch = official.torch
  problems = official.dataset("training")

  class Fixed:  # the official model's interface, giving fixed outputs (black's logit is added by take_step)
    def __init__(self, logits, x_mask, y_mask):
      self.outputs = [torch.tensor(a, requires_grad=True) for a in (logits[:, 1:], x_mask, y_mask)]

    def forward(self):
      return *self.outputs, [torch.zeros(())], ["none"]

  class NoUpdate:
    def zero_grad(self):
      pass

    def step(self):
      pass

  class Last:  # keeps the reconstruction term take_step logs
    def log(self, step, logits, x_mask, y_mask, kls, names, total_kl, recon, total):
      self.recon = float(recon.detach())

  for index, task_id in enumerate(official.ids):
    reference = official.preprocessing.Task(task_id, problems[task_id], None)
    p = task.puzzle(task_id, problems[task_id], None)
    outputs = decoder_outputs(p, seed=100 + index)
    for step in (0, 50, 200):
      last = Last()
      official.train.take_step(reference, Fixed(*outputs), NoUpdate(), step, last)
      got = reconstruction(p.signature, p.arrays, *outputs, jnp.int32(step))
      np.testing.assert_allclose(float(got), last.recon, rtol=1e-5, err_msg=f"{task_id} step {step}")
