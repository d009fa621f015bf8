r"""The decoder's layers, each a pure function over multitensors.

Notation: a multitensor `x` maps a tensor name to float32 [*axes, K] (see
`multitensor`); E examples, C colours (black excluded), 8 directions, X, Y
cells. Weights are looked up by `xy_representative(dims).name`, so a tensor
with y but not x ("ey", "ecdy", ...) uses its x twin's weights. `masks`
below is always the union of a puzzle's input and output grids,
m[e, x, y] = 1 - (1 - masks[e, x, y, 0]) (1 - masks[e, x, y, 1]).

Normalisation (per tensor, per channel k, over every other axis):

    norm(x)_k = (x_k - mean(x_k)) / sqrt(1e-8 + mean((x_k - mean(x_k))^2))

Decoding layer (`decode_latents`). Per tensor a posterior mean mu [*axes, Z],
a local capacity adjustment a [*axes, Z] and a target capacity t [Z]; n is
the tensor's element count (its Z included). With T = 10 t,

    G = e^T * 1e4 + 0.5                      (desired capacity of the whole tensor, nats)
    g = 1 - exp(-2 G / n)                    (output scale)
    c = e^(T + a - mean(a)) * 1e4 + 0.5      (desired capacity per element; means over all axes but Z)
    sigma = exp(-c / n),  s = sqrt(1 - exp(-2 c / n))   (s = 1 where 2 c / n > 20)
    mu^ = norm(mu)   (mean-centred, divided by sqrt(mean(mu_c^2 + 1e-8)))
    z = g (s mu^ + sigma eps),   eps ~ N(0, 1)   (eps = 0 without noise)
    KL = 1/2 (sigma^2 + (1 - sigma^2) mu^2 - 1) + c / n   per element

and the stream starts as x = z W + b.

Residual wrapper (`residual`): x + P_up(f(P_down x)), with an optional
normalisation of f's output; no biases. (The reference passes a pre-norm flag
to this wrapper whose result is discarded, so no pre-normalisation happens.)

share_up: each tensor receives the sum of the down-projections of every
tensor whose axes it contains (itself included), broadcast to its shape;
then norm, up-projection, residual. share_down: each tensor receives the sum
of the down-projections of every tensor containing its axes, the missing axes
averaged out (y first, then x, d, c, e); when `in_out_same_size` or
`all_out_same_size` the x and y averages are weighted by the grid mask m:
sum(h m) / (sum(m) + 1e-4).

softmax: for every non-empty subset S of a tensor's non-example axes, a
softmax over S jointly; the results (k channels each) are concatenated on
the channel axis, subsets by size, then in axis order.

Directional layers (cummax, shift), only on "edxy" and "ecdxy": the input is
masked by m; for direction d the even channels run along d and the odd ones
along d + 4; the results of the even channels come first. Along a line of
cells (masked: M = 1e3 (1 - m)),

    cummax: (cummax(x - M) + M - lo) / (hi - lo) * 2 - 1,
            hi = max(x - M) + M + 1e-3,   lo = min(x + M) - M - 1e-3
    shift:  x moved one cell along the direction (0 enters)

and on the diagonals the running max and the line's max and min come from
doubling scans (shifts of 1, 2, 4, ... cells on both axes, -1e3/+1e3 entering),
rescaled as (cm - lo) / (hi - lo + 1e-5) * 2 - 1 and multiplied by m.

direction_share (tensors with a direction axis): x_d += sum_{d'} w(d' - d)
norm(x)_{d'} W[d, d'], w = (1, .2, .4, .2, 1, .2, .4, .2) by (d' - d) mod 8.

nonlinear: residual around SiLU. Heads: colour logits from "ecxy",
x "ecxy" W_h + 100 b_h [E, C, X, Y, 2]; mask logits from "ex" and "ey" with
one shared affine map [E, X, 2], [E, Y, 2]; `postprocess_mask` adds -1000
beyond each example's largest grid extent.

Equivariance. Every weight is shared along the example and colour axes and
every reduction over them is a mean or a sum, so permuting the examples (with
their masks and shapes) or the colours of the latents permutes the outputs
the same way. Transposing a puzzle (x <-> y, directions d -> 2 - d) maps
each layer onto itself under the x-y weight ties, except `softmax` on the
tensors with both x and y: its blocks for the subsets S and S with x and y
exchanged ({x} and {y}, {c, x} and {c, y}, ...) are read by different rows of
the up-projection, which the reference's ties leave independent. With those
rows equal the decoder is exactly transposition-equivariant (tested).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from contlearn.compress_arc.multitensor import N_DIRECTIONS, Dims, Multitensor, from_name, map_dims, xy_representative
from contlearn.compress_arc.puzzle import Signature

Weights = dict[str, dict[str, jax.Array]]

DIRECTIONAL_TENSORS = ("edxy", "ecdxy")
"""The tensors the cummax and shift layers act on (every other tensor passes through)."""

DIRECTION_SHARE_COEFFICIENTS = (1.0, 0.2, 0.4, 0.2, 1.0, 0.2, 0.4, 0.2)
"""direction_share's weight of direction d' seen from d, by (d' - d) mod 8."""

_OUTSIDE = 1e3  # the offset that keeps cells outside a grid out of the running max and min


def normalize(x: jax.Array) -> jax.Array:
  """Per channel, zero mean and unit mean square over every axis but the last ([..., K] -> same)."""
  axes = tuple(range(x.ndim - 1))
  x = x - jnp.mean(x, axis=axes, keepdims=True)
  return x / jnp.sqrt(1e-8 + jnp.mean(x**2, axis=axes, keepdims=True))


def normalize_all(x: Multitensor) -> Multitensor:
  return {name: normalize(value) for name, value in x.items()}


def affine(x: jax.Array, weights: dict[str, jax.Array], bias_scale: float = 1.0) -> jax.Array:
  """x W + bias_scale b on the last axis: [..., K] with W [K, K'], b [K'] -> [..., K']."""
  return x @ weights["w"] + bias_scale * jnp.reshape(weights["b"], (1,) * (x.ndim - 1) + (-1,))


def weights_of(weights: Weights, dims: Dims) -> dict[str, jax.Array]:
  """The weights a tensor uses (a y-only tensor borrows its x twin's)."""
  return weights[xy_representative(dims).name]


def union_mask(masks: jax.Array) -> jax.Array:
  """float32 [E, X, Y]: 1 where a cell lies inside the example's input or output grid."""
  return 1 - (1 - masks[..., 0]) * (1 - masks[..., 1])


# --- the decoding layer -------------------------------------------------------------------------------


def latent_sample(
  mean: jax.Array,
  capacity_adjustment: jax.Array,
  target_capacity: jax.Array,
  noise: jax.Array | None,
  *,
  min_capacity: float = 0.5,
  init_capacity: float = 1e4,
  capacity_log_scale: float = 10.0,
) -> tuple[jax.Array, jax.Array]:
  """One tensor's latent z and its KL per element (module docstring).

  mean, capacity_adjustment: float32 [*axes, Z]; target_capacity: float32 [Z];
  noise: float32 [*axes, Z] standard normal, or None for the posterior mean path.
  Returns (z, kl), both float32 [*axes, Z].
  """
  axes = tuple(range(mean.ndim - 1))
  n = math.prod(mean.shape)
  target = capacity_log_scale * jnp.reshape(target_capacity, (1,) * len(axes) + (-1,))
  output_scale = 1 - jnp.exp(-(jnp.exp(target) * init_capacity + min_capacity) / n * 2)
  local = target + capacity_adjustment - jnp.mean(capacity_adjustment, axis=axes, keepdims=True)
  capacity = jnp.exp(local) * init_capacity + min_capacity
  noise_std = jnp.exp(-capacity / n)
  noise_var = noise_std**2
  ratio = capacity / n * 2
  signal_std = jnp.where(ratio > 20, 1.0, jnp.sqrt(1 - jnp.exp(-jnp.minimum(ratio, 20.0))))
  centred = mean - jnp.mean(mean, axis=axes, keepdims=True)
  unit_mean = centred / jnp.sqrt(jnp.mean(centred**2 + 1e-8, axis=axes, keepdims=True))
  z = signal_std * unit_mean if noise is None else signal_std * unit_mean + noise_std * noise
  kl = 0.5 * (noise_var + (1 - noise_var) * unit_mean**2 - 1) + capacity / n
  return output_scale * z, kl


def decode_latents(
  latents: dict[str, dict[str, jax.Array]],
  decode_weights: Weights,
  noise: Multitensor | None,
  **capacity: float,
) -> tuple[Multitensor, Multitensor]:
  """The decoding layer: every tensor's latent sample, linearly decoded into the residual stream.

  latents: {name: {"mean", "capacity_adjustment": [*axes, Z], "target_capacity": [Z]}};
  decode_weights: {name: {"w": [Z, K], "b": [K]}} (x-y tied); noise: {name: [*axes, Z]} or None.
  Returns (x {name: [*axes, K]}, kl {name: [*axes, Z]}).
  """
  stream, kl = {}, {}
  for name, latent in latents.items():
    z, kl[name] = latent_sample(
      latent["mean"],
      latent["capacity_adjustment"],
      latent["target_capacity"],
      None if noise is None else noise[name],
      **capacity,
    )
    stream[name] = affine(z, weights_of(decode_weights, from_name(name)))
  return stream, kl


# --- the residual wrapper and the per-tensor layers --------------------------------------------------


def residual(
  x: Multitensor, weights: Weights, inner: Callable[[Dims, jax.Array], jax.Array], *, post_norm: bool = False
) -> Multitensor:
  """x + (inner(x W_down) [normalised]) W_up for every tensor that has weights; the others pass through.

  weights: {name: {"down": [K, k], "up": [k', K]}}; inner maps [*axes, k] to [*axes, k'].
  """

  def apply(dims, value):
    if xy_representative(dims).name not in weights:
      return value
    w = weights_of(weights, dims)
    z = inner(dims, value @ w["down"])
    if post_norm:
      z = normalize(z)
    return value + z @ w["up"]

  return map_dims(apply, x)


def subset_softmax(dims: Dims, z: jax.Array) -> jax.Array:
  """Softmaxes over every non-empty subset of the non-example axes, concatenated: [*axes, k] -> [*axes, k (2^a - 1)]."""
  axes = list(range(int(dims.example), dims.n_axes))
  subsets = [s for size in range(1, len(axes) + 1) for s in itertools.combinations(axes, size)]
  return jnp.concatenate([jax.nn.softmax(z, axis=subset) for subset in subsets], axis=-1)


def softmax(x: Multitensor, weights: Weights) -> Multitensor:
  return residual(x, weights, subset_softmax)


def nonlinear(x: Multitensor, weights: Weights) -> Multitensor:
  return residual(x, weights, lambda dims, z: jax.nn.silu(z))


# --- cross-tensor communication ------------------------------------------------------------------------


def _average_out(value: jax.Array, dims: Dims, index: int, grid: jax.Array | None) -> jax.Array:
  """Averages axis `index` (present in `dims`) out of `value`; x and y weighted by `grid` [E, X, Y] when given."""
  axis = sum(dims[:index])
  if grid is None or index < 3:
    return jnp.mean(value, axis=axis)
  weight = grid
  if index == 3 and not dims.y:  # the grids start at y = 0, so column 0 holds the x extent
    weight = weight[..., 0]
  if index == 4 and not dims.x:
    weight = weight[..., 0, :]
  weight = jnp.expand_dims(weight, tuple(range(1, 1 + dims.color + dims.direction)) + (-1,))
  return jnp.sum(value * weight, axis=axis) / (jnp.sum(weight, axis=axis) + 1e-4)


def _share(x: Multitensor, weights: Weights, gather: Callable[[Multitensor], Multitensor]) -> Multitensor:
  down = map_dims(lambda dims, value: value @ weights_of(weights, dims)["down"], x)
  shared = normalize_all(gather(down))
  return map_dims(lambda dims, value, s: value + s @ weights_of(weights, dims)["up"], x, shared)


def _without(dims: Dims, index: int) -> Dims:
  return Dims(*(flag and i != index for i, flag in enumerate(dims)))


def share_up(x: Multitensor, weights: Weights) -> Multitensor:
  """Each tensor gathers the (projected) tensors whose axes it contains, broadcast; a residual update.

  The sums over subsets are accumulated one axis at a time, the example axis first (so no tensor ever
  reads a subset that has x or y without the example axis), which is the same sum with fewer terms.
  """

  def gather(down):
    sums = {from_name(name): value for name, value in down.items()}
    for index in range(5):
      for dims in sums:
        lower = _without(dims, index)
        if dims[index] and lower.valid:
          sums[dims] = sums[dims] + jnp.expand_dims(sums[lower], sum(dims[:index]))
    return {dims.name: value for dims, value in sums.items()}

  return _share(x, weights, gather)


def share_down(sig: Signature, x: Multitensor, weights: Weights, masks: jax.Array) -> Multitensor:
  """Each tensor gathers the (projected) tensors that contain its axes, averaged down; a residual update.

  masks: float32 [E, X, Y, 2]; used (traced) when the signature says the output grids have known sizes.
  The sums over supersets are accumulated one axis at a time (y, x, d, c, e: the order in which each
  superset's extra axes are averaged), which is the same linear map with fewer reductions.
  """
  grid = union_mask(masks) if (sig.in_out_same_size or sig.all_out_same_size) else None

  def gather(down):
    sums = {from_name(name): value for name, value in down.items()}
    for index in reversed(range(5)):
      for dims, value in list(sums.items()):
        lower = _without(dims, index)
        if dims[index] and lower.valid:
          reduced = _average_out(value, dims, index, grid)
          sums[lower] = sums[lower] + reduced if lower in sums else reduced
    return {dims.name: value for dims, value in sums.items()}

  return _share(x, weights, gather)


# --- directional layers ------------------------------------------------------------------------------

_DIRECTION_VECTORS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))


def _shift(x: jax.Array, axis: int, amount: int, fill: float) -> jax.Array:
  """x moved `amount` cells towards higher indices (lower when negative) along `axis`, `fill` entering."""
  length = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (amount, 0) if amount >= 0 else (0, -amount)
  start, stop = (0, length - amount) if amount >= 0 else (-amount, length)
  return jnp.pad(jax.lax.slice_in_dim(x, start, stop, axis=axis), pad, constant_values=fill)


def _shift_diagonal(x: jax.Array, axis: int, amount: int, fill: float) -> jax.Array:
  """x moved `amount` cells along both `axis` and `axis + 1`."""
  return _shift(_shift(x, axis, amount, fill), axis + 1, amount, fill)


def _cummax_line(x: jax.Array, axis: int, mask: jax.Array) -> jax.Array:
  outside = _OUTSIDE * (1 - mask)
  hi = jnp.max(x - outside, axis=axis, keepdims=True) + outside + 1e-3
  lo = jnp.min(x + outside, axis=axis, keepdims=True) - outside - 1e-3
  running = jax.lax.cummax(x - outside, axis=axis) + outside
  return (running - lo) / (hi - lo) * 2 - 1


def _cummax_diagonal(x: jax.Array, axis: int, mask: jax.Array) -> jax.Array:
  outside = _OUTSIDE * (1 - mask)
  steps = math.ceil(math.log2(min(x.shape[axis], x.shape[axis + 1])))

  def doubling_scan(value, combine, fill):  # (the running result after the forward pass, the line's result)
    passes = []
    for sign in (1, -1):
      for i in range(steps):
        value = combine(value, _shift_diagonal(value, axis, sign * 2**i, fill))
      passes.append(value)
    return passes

  running, hi = doubling_scan(x - outside, jnp.maximum, -_OUTSIDE)
  _, lo = doubling_scan(x + outside, jnp.minimum, _OUTSIDE)
  running, hi, lo = running + outside, hi + outside, lo - outside
  return ((running - lo) / (hi - lo + 1e-5) * 2 - 1) * mask


def _shift_line(x: jax.Array, axis: int, mask: jax.Array) -> jax.Array:
  del mask
  return _shift(x, axis, 1, 0.0)


def _shift_diagonal_line(x: jax.Array, axis: int, mask: jax.Array) -> jax.Array:
  del mask
  return _shift_diagonal(x, axis, 1, 0.0)


def _directional(
  dims: Dims, z: jax.Array, grid: jax.Array, along_axis: Callable, along_diagonal: Callable
) -> jax.Array:
  """Applies a line operation per direction: even channels along d, odd ones along d + 4.

  z: float32 [E, (C), 8, X, Y, k] with k even; grid: [E, X, Y]. Returns the same shape, the even
  channels' results first. The lines of one kind (along x, along y, diagonal) are flipped to run
  forwards and stacked, so each operation runs once per kind.
  """
  d_axis = dims.axis("d")
  mask = jnp.expand_dims(grid, tuple(range(1, d_axis)) + (-1,))  # [E, (1), X, Y, 1]
  z = z * jnp.expand_dims(mask, d_axis)
  channel_halves = (z[..., 0::2], z[..., 1::2])
  kinds: dict[str, list[tuple[int, int, tuple[int, ...]]]] = {"x": [], "y": [], "diagonal": []}
  for parity in range(2):
    for d in range(N_DIRECTIONS):
      vx, vy = _DIRECTION_VECTORS[(d + 4 * parity) % N_DIRECTIONS]
      flips = tuple(axis for axis, v in ((d_axis, vx), (d_axis + 1, vy)) if v < 0)
      kinds["diagonal" if vx and vy else "x" if vx else "y"].append((parity, d, flips))
  results = {}
  for kind, items in kinds.items():
    lines = jnp.stack(
      [jnp.flip(jax.lax.index_in_dim(channel_halves[p], d, d_axis, keepdims=False), flips) for p, d, flips in items]
    )
    line_masks = jnp.stack([jnp.flip(mask, flips) for _, _, flips in items])
    if kind == "diagonal":
      out = along_diagonal(lines, d_axis + 1, line_masks)
    else:
      out = along_axis(lines, d_axis + 1 + (kind == "y"), line_masks)
    for i, (p, d, flips) in enumerate(items):
      results[p, d] = jnp.flip(out[i], flips)
  halves = [jnp.stack([results[p, d] for d in range(N_DIRECTIONS)], axis=d_axis) for p in range(2)]
  return jnp.concatenate(halves, axis=-1)


def cummax(x: Multitensor, weights: Weights, masks: jax.Array) -> Multitensor:
  """Residual directional running max (module docstring); masks: float32 [E, X, Y, 2]."""
  grid = union_mask(masks)
  inner = lambda dims, z: _directional(dims, z, grid, _cummax_line, _cummax_diagonal)  # noqa: E731
  return residual(x, weights, inner, post_norm=True)


def shift(x: Multitensor, weights: Weights, masks: jax.Array) -> Multitensor:
  """Residual directional one-cell shift (module docstring); masks: float32 [E, X, Y, 2]."""
  grid = union_mask(masks)
  inner = lambda dims, z: _directional(dims, z, grid, _shift_line, _shift_diagonal_line)  # noqa: E731
  return residual(x, weights, inner, post_norm=True)


def direction_share(x: Multitensor, maps: Multitensor) -> Multitensor:
  """x_d += sum_d' w(d' - d) norm(x)_d' W[d, d'] on every tensor with a direction axis.

  maps: {name: float32 [8, 8, K, K]} (W[d, d'], tied across directions by the decoder); the tensors
  without a direction axis pass through.
  """
  coefficients = jnp.array(DIRECTION_SHARE_COEFFICIENTS, jnp.float32)
  index = jnp.arange(N_DIRECTIONS)
  weights = coefficients[(index[None, :] - index[:, None]) % N_DIRECTIONS]  # [d, d']

  def apply(dims, value):
    if not dims.direction:
      return value
    d_axis = dims.axis("d")
    z = jnp.moveaxis(normalize(value), d_axis, -2)  # [..., d', K]
    update = jnp.einsum("...ek,dekl->...dl", z, weights[:, :, None, None] * maps[dims.name])
    return value + jnp.moveaxis(update, -2, d_axis)

  return map_dims(apply, x)


# --- heads -------------------------------------------------------------------------------------------


def heads(
  x: Multitensor, head: dict[str, jax.Array], mask_head: dict[str, jax.Array], *, head_bias_scale: float = 100.0
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Colour logits float32 [E, C, X, Y, 2] (black excluded) and raw x / y mask logits [E, X, 2], [E, Y, 2]."""
  colors = affine(x["ecxy"], head, head_bias_scale)
  x_mask = affine(x["ex"], mask_head)
  y_mask = affine(x["ey"], mask_head)
  return colors, x_mask, y_mask


def postprocess_mask(
  shapes: jax.Array, x_mask: jax.Array, y_mask: jax.Array, *, fill: float = -1000.0
) -> tuple[jax.Array, jax.Array]:
  """Adds `fill` to the mask logits beyond each example's largest grid extent.

  shapes: int32 [E, 2, 2] (example, input/output, x/y); x_mask: float32 [E, X, 2]; y_mask: [E, Y, 2].
  """

  def beyond(mask, axis):
    extent = jnp.max(shapes[:, :, axis], axis=1)  # [E]
    outside = jnp.arange(mask.shape[1])[None, :] >= extent[:, None]  # [E, L]
    return mask + jnp.where(outside, fill, 0.0)[:, :, None]

  return beyond(x_mask, 0), beyond(y_mask, 1)
