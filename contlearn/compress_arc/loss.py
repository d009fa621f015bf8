"""CompressARC's reconstruction term and description length.

The decoder gives, per example e and grid m (0 input, 1 output), colour
logits `l[e, :, :, :, m]` over a canvas of `n_x` x `n_y` cells and mask logits
`u = x_mask[e, :, m]` (length n_x) and `v = y_mask[e, :, m]` (length n_y). A
grid of shape (h, w) is read off the canvas as a crop starting at an offset
(a, b). Along x, the score of the slice [a, a + h) is

  s_h(a) = sum_{a <= i < a+h} c1 u_i  -  sum_{i outside} c1 u_i,   0 <= a <= n_x - h,

a length's partition is Z_h = logsumexp_a s_h(a), and the log-probability of
the offset given the length is s_h(a) - Z where Z = Z_h when the puzzle
implies the grid's size, and Z = logsumexp_h Z_h (the length is part of what
is described) when it does not. Likewise along y with v and width w. With
CE(a, b) the summed cross-entropy of the grid's colours against the crop of
the logits at (a, b),

  log p(grid) = (1 / c2) logsumexp_{a, b} c2 [s_h(a) - Z_x + t_w(b) - Z_y - CE(a, b)],

and the reconstruction is -sum log p over the observed grids: every input
(test inputs included) and every train output; test outputs are left out.

A grid's size is implied (c1 = c2 = 1) when every train output has its
input's size, or, for inputs, when all inputs share one size, or, for
outputs, when all train outputs share one size. Otherwise the temperatures
are annealed over the first 100 steps: c1 = 0.01^max(0, 1 - step/100) and
c2 = 0.1^max(0, 1 - step/100), both 1 from step 100 on.

The sizes (h, w) come from `arrays.shapes`, traced: every offset and length
is scored at once and the ones that do not fit are masked out, so one
compiled program serves every puzzle of a signature.

>>> import jax.numpy as jnp
>>> description_length(jnp.float32(3.0), jnp.float32(0.5))
Array(8., dtype=float32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from contlearn.compress_arc.puzzle import PuzzleArrays, Signature

RECONSTRUCTION_WEIGHT = 10.0  # bits of data weighted against bits of latents
ANNEAL_STEPS = 100


def description_length(kl: jax.Array, recon: jax.Array) -> jax.Array:
  """The loss CompressARC minimises: `kl + 10 * recon` (float32 [])."""
  return kl + RECONSTRUCTION_WEIGHT * recon


def size_known(sig: Signature, mode: int) -> bool:
  """Whether the puzzle implies the size of its grids of `mode` (0 inputs, 1 outputs); static."""
  return sig.in_out_same_size or (sig.all_in_same_size if mode == 0 else sig.all_out_same_size)


def anneal(step: jax.Array, base: float) -> jax.Array:
  """`base ** max(0, 1 - step / 100)` (float32 []): `base` at step 0, 1 from step 100 on."""
  return jnp.float32(base) ** jnp.maximum(0.0, 1.0 - jnp.asarray(step, jnp.float32) / ANNEAL_STEPS)


def slice_scores(mask: jax.Array) -> tuple[jax.Array, np.ndarray]:
  """The score of every slice [offset, offset + length) of a mask's logits.

  mask  float32 [..., N]
  ->    scores float32 [..., N, N] (length - 1, offset): the mask summed inside the slice minus outside it;
        fits   bool [N, N] (numpy, static): whether the slice lies inside the N cells
  """
  n = mask.shape[-1]
  length = np.arange(1, n + 1)[:, None, None]
  offset = np.arange(n)[None, :, None]
  cell = np.arange(n)[None, None, :]
  sign = np.where((cell >= offset) & (cell < offset + length), 1.0, -1.0).astype(np.float32)
  batch = (1,) * (mask.ndim - 1)
  scores = jnp.sum(sign.reshape(batch + sign.shape) * mask[..., None, None, :], axis=-1)
  return scores, (offset + length <= n)[..., 0]


def crop_cross_entropy(logits: jax.Array, target: jax.Array, inside: jax.Array) -> jax.Array:
  """The summed cross-entropy of each grid against the logits cropped at every offset.

  logits  float32 [G, C, X, Y] colour logits of G canvases
  target  int32   [G, X, Y]   colour indices, the grid at the top-left corner
  inside  float32 [G, X, Y]   1 on the grid's cells, 0 elsewhere
  ->      float32 [G, X, Y]   out[g, a, b] = -sum_{p,q} inside[g,p,q] log_softmax(logits[g, :, a+p, b+q])[target[g,p,q]]
                              (cells past the canvas count 0: only offsets where the grid fits are meaningful)

  A cross-correlation of the grid's one-hot colours with the log-softmax,
  written as one contraction (grid row p against canvas row r, over colours
  and grid columns) and a skewed sum over p of canvas rows r = a + p.
  """
  _, c, x, y = logits.shape
  logp = jax.nn.log_softmax(logits, axis=1)
  columns = np.arange(y)[:, None] + np.arange(y)[None, :]  # [b, q]: canvas column b + q
  shifted = jnp.pad(logp, ((0, 0), (0, 0), (0, 0), (0, y - 1)))[..., columns]  # [G, C, X(r), Y(b), Y(q)]
  one_hot = jax.nn.one_hot(target, c, axis=1, dtype=logits.dtype) * inside[:, None]  # [G, C, X(p), Y(q)]
  rows = jnp.einsum("gcpq,gcrbq->gprb", one_hot, shifted, precision=jax.lax.Precision.HIGHEST)
  canvas_rows = np.arange(x)[:, None] + np.arange(x)[None, :]  # [p, a]: canvas row a + p
  aligned = rows[:, np.arange(x)[:, None], np.minimum(canvas_rows, x - 1)]  # [G, X(p), X(a), Y(b)]
  return -jnp.sum(jnp.where((canvas_rows < x)[None, :, :, None], aligned, 0.0), axis=1)


def _offset_logprobs(mask: jax.Array, length: jax.Array, known: bool) -> tuple[jax.Array, jax.Array]:
  """log p(offset | length) along one axis, for G grids.

  mask [G, N] (temperature applied), length int32 [G] -> logprobs float32 [G, N], fits bool [G, N]
  """
  scores, fits = slice_scores(mask)  # [G, N(length), N(offset)]
  partitions = jax.nn.logsumexp(scores, axis=-1, where=fits[None])  # [G, N(length)]
  row = (length - 1)[:, None, None]
  own = jnp.take_along_axis(scores, row, axis=1)[:, 0]  # [G, N(offset)]
  if known:
    partition = jnp.take_along_axis(partitions, row[:, 0], axis=1)[:, 0]
  else:
    partition = jax.nn.logsumexp(partitions, axis=-1)
  own_fits = np.arange(mask.shape[-1])[None, :] <= mask.shape[-1] - length[:, None]
  return own - partition[:, None], own_fits


def _grids_logprob(logits, target, inside, shape, x_mask, y_mask, known: bool, step) -> jax.Array:
  """log p of G grids of one mode: logits [G, C, X, Y], target/inside [G, X, Y], shape [G, 2] -> [G]."""
  mask_temperature = 1.0 if known else anneal(step, 0.01)
  crop_temperature = 1.0 if known else anneal(step, 0.1)
  x_logprobs, x_fits = _offset_logprobs(mask_temperature * x_mask, shape[:, 0], known)
  y_logprobs, y_fits = _offset_logprobs(mask_temperature * y_mask, shape[:, 1], known)
  logprobs = x_logprobs[:, :, None] + y_logprobs[:, None, :] - crop_cross_entropy(logits, target, inside)
  fits = x_fits[:, :, None] & y_fits[:, None, :]
  return jax.nn.logsumexp(crop_temperature * logprobs, axis=(1, 2), where=fits) / crop_temperature


def reconstruction(
  sig: Signature, arrays: PuzzleArrays, logits: jax.Array, x_mask: jax.Array, y_mask: jax.Array, step: jax.Array
) -> jax.Array:
  """-log p of the observed grids (the module docstring's equations), float32 [].

  sig     the puzzle's Signature (static)
  arrays  its PuzzleArrays (traced; no lane axis)
  logits  float32 [E, n_colors + 1, n_x, n_y, 2]  colour logits, black's (0) at index 0
  x_mask  float32 [E, n_x, 2], y_mask float32 [E, n_y, 2]  mask logits (post-processed)
  step    int32 []  the training step (traced), for the annealed temperatures
  """
  total = jnp.float32(0.0)
  for mode, count in ((0, sig.n_examples), (1, sig.n_train)):  # test outputs are not observed
    observed = slice(0, count)
    logprob = _grids_logprob(
      logits[observed, ..., mode],
      arrays.problem[observed, ..., mode],
      arrays.masks[observed, ..., mode],
      arrays.shapes[observed, mode],
      x_mask[observed, :, mode],
      y_mask[observed, :, mode],
      size_known(sig, mode),
      step,
    )
    total = total - jnp.sum(logprob)
  return total
