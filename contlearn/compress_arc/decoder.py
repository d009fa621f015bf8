"""The CompressARC decoder: weights for one puzzle and the forward pass.

The network (equations in `layers`) is

    x = decode_latents(latents)                                       (18 tensors, KL per tensor)
    repeat n_layers times, each with its own weights:
      x = share_up(x); x = softmax(x); x = cummax(x); x = shift(x)
      x = direction_share(x); x = nonlinear(x); x = share_down(x); x = norm(x)
    logits = [0, x["ecxy"] W_h + 100 b_h]  over colours (black's logit is the constant 0)
    x_mask, y_mask = postprocess_mask(x["ex"] W_m + b_m, x["ey"] W_m + b_m)

Params (a pytree of float32 arrays with string keys; the blocks are stacked
over layers on a leading [L] axis and run under `lax.scan`):

    latents[name]        mean [*axes, Z] ~ 0.01 N(0, 1), capacity_adjustment [*axes, Z] = 0, target_capacity [Z] = 0
    decode[name]         w [Z, K], b [K]
    blocks/<layer>[name] down [L, K, k], up [L, k', K]   (share_up, softmax, cummax, shift, nonlinear, share_down)
    blocks/direction_share[name]   [L, R, K, K]   the R distinct maps W[d, d'] of a directional tensor
    head                 w [16, 2] (its two columns equal at init), b [2]
    mask_head            w [16, 2], b [2]

Every linear map [n_in, n_out] and its bias start as N(0, 1) / sqrt(n_in).
Weights the reference creates but never reads are not created: the biases of
the residual projections and direction maps (they run without bias), the
weights of y tensors (tied to their x twins), and the cummax and shift
weights of tensors other than "edxy" and "ecdxy" (the only ones those layers
act on).

Weight ties. x-y: a tensor with y but not x has no weights of its own; it uses
those of its x twin ("ey" uses "ex"), so swapping the x and y axes of the
input swaps the roles of the tensors with the same weights. Directions: in
direction_share the 64 maps W[d, d'] of a tensor are tied along the orbits
of (d, d') under the symmetries the tensor has: for tensors with both or
neither of x and y, the dihedral group of the square acting on both
directions at once (10 orbits); for an x tensor, the reflections of x and of
y and the half turn (18 orbits); a y tensor uses its x twin's maps with its
directions turned a quarter (d -> d + 2). `DIRECTION_TIES` gives, per tensor
and (d, d'), the row of the stored [R, K, K] array it uses; the partition is
the reference's (tested against it).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from contlearn.compress_arc import layers
from contlearn.compress_arc.multitensor import (
  ALL_DIMS,
  N_DIRECTIONS,
  Dims,
  Multitensor,
  channels,
  from_name,
  shape,
  xy_representative,
)
from contlearn.compress_arc.puzzle import PuzzleArrays, Signature
from contlearn.field_checks import FieldError, require


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Sizes and constants of the decoder; the defaults are the reference's.

  Attributes:
    n_layers: blocks of the residual stack.
    share_up_dim: inner width of share_up's residual projections.
    share_down_dim: inner width of share_down's.
    softmax_dim: inner width of the softmax layer's.
    cummax_dim: inner width of the cummax layer's (even: half the channels run each way).
    shift_dim: inner width of the shift layer's (even).
    nonlinear_dim: inner width of the nonlinear layer's.
    decoding_dim: latent channels Z per tensor.
    channels: residual-stream channels K of a tensor without a direction axis.
    direction_channels: K of a tensor with a direction axis.
    posterior_init_scale: standard deviation of the initial posterior means.
    min_capacity: a tensor's desired capacity is e^(T) init_capacity + min_capacity nats.
    init_capacity: see min_capacity.
    capacity_log_scale: T = capacity_log_scale * target_capacity (a reparameterisation).
    head_bias_scale: the colour head's bias is multiplied by this.
    mask_fill: the logit added to mask positions beyond a grid's extent.
  """

  n_layers: int = 4
  share_up_dim: int = 16
  share_down_dim: int = 8
  decoding_dim: int = 4
  softmax_dim: int = 2
  cummax_dim: int = 4
  shift_dim: int = 4
  nonlinear_dim: int = 16
  channels: int = 16
  direction_channels: int = 8
  posterior_init_scale: float = 0.01
  min_capacity: float = 0.5
  init_capacity: float = 1e4
  capacity_log_scale: float = 10.0
  head_bias_scale: float = 100.0
  mask_fill: float = -1000.0

  def __post_init__(self):
    sizes = ("n_layers", "share_up_dim", "share_down_dim", "decoding_dim", "softmax_dim", "cummax_dim", "shift_dim")
    require(
      self,
      positive=(*sizes, "nonlinear_dim", "channels", "direction_channels", "posterior_init_scale", "init_capacity"),
      non_negative=("min_capacity", "capacity_log_scale", "head_bias_scale"),
    )
    for name in ("cummax_dim", "shift_dim"):
      if getattr(self, name) % 2:
        raise FieldError(type(self).__name__, name, getattr(self, name), "an even integer > 0")
    if not self.mask_fill < 0:
      raise FieldError(type(self).__name__, "mask_fill", self.mask_fill, "a finite number < 0")

  def channels_of(self, dims: Dims) -> int:
    return channels(dims, self.channels, self.direction_channels)


class DecoderOutput(NamedTuple):
  """What one forward pass gives.

  logits    float32 [E, n_colors + 1, X, Y, 2]  colour logits, black's constant 0 at colour index 0
  x_mask    float32 [E, X, 2]                   mask logits along x (post-processed)
  y_mask    float32 [E, Y, 2]                   mask logits along y (post-processed)
  kl        float32 []                          the summed KL of every latent
  kl_terms  {name: float32 []}                  each tensor's summed KL
  """

  logits: jax.Array
  x_mask: jax.Array
  y_mask: jax.Array
  kl: jax.Array
  kl_terms: dict[str, jax.Array]


RESIDUAL_LAYERS = ("share_up", "softmax", "cummax", "shift", "nonlinear", "share_down")


def _direction_symmetries(dims: Dims) -> tuple[tuple[int, int], ...]:
  """The maps d -> (s d + r) mod 8, as (s, r), under which a weight-owning tensor's direction maps are tied.

  With one of x and y (an x tensor): the reflections of x and of y and the half turn. With both or neither:
  the dihedral group of the square (quarter turns and the four reflections).
  """
  if dims.x != dims.y:
    return ((1, 0), (-1, 0), (-1, 4), (1, 4))
  return tuple((s, r) for s in (1, -1) for r in (0, 2, 4, 6))


def _direction_ties() -> tuple[dict[str, np.ndarray], dict[str, int]]:
  orbits: dict[str, dict[tuple[int, int], int]] = {}  # owner -> (d, d') -> its orbit's row
  for dims in ALL_DIMS:
    if dims.direction and xy_representative(dims) == dims:
      rows = orbits[dims.name] = {}
      for pair in itertools.product(range(N_DIRECTIONS), repeat=2):
        if pair not in rows:
          row = len(set(rows.values()))
          rows.update({tuple((s * d + r) % N_DIRECTIONS for d in pair): row for s, r in _direction_symmetries(dims)})
  ties = {}
  for dims in ALL_DIMS:
    if dims.direction:
      turn = 2 if dims.y and not dims.x else 0  # a y tensor is its x twin turned a quarter
      rows = orbits[xy_representative(dims).name]
      ties[dims.name] = np.array(
        [
          [rows[(d1 + turn) % N_DIRECTIONS, (d2 + turn) % N_DIRECTIONS] for d2 in range(N_DIRECTIONS)]
          for d1 in range(N_DIRECTIONS)
        ],
        np.int32,
      )
  return ties, {owner: len(set(rows.values())) for owner, rows in orbits.items()}


DIRECTION_TIES, DIRECTION_MAP_COUNTS = _direction_ties()
"""DIRECTION_TIES[name][d, d'] is the row of blocks/direction_share[xy twin of name] that W[d, d'] is;
DIRECTION_MAP_COUNTS[name] is R, the number of distinct maps stored for a tensor that owns its weights."""


class _Normal(NamedTuple):
  """An initial weight: `scale` times a standard normal array of `shape` (a zero array when scale is 0)."""

  shape: tuple[int, ...]
  scale: float


def _linear(n_in: int, n_out: int, leading: tuple[int, ...] = ()) -> dict[str, _Normal]:
  """A linear map's weight [*leading, n_in, n_out] and bias [n_out], both N(0, 1) / sqrt(n_in)."""
  return {"w": _Normal((*leading, n_in, n_out), n_in**-0.5), "b": _Normal((n_out,), n_in**-0.5)}


def _projections(n_in: int, inner: int, inner_out: int, n_layers: int) -> dict[str, _Normal]:
  return {"down": _linear(n_in, inner, (n_layers,))["w"], "up": _linear(inner_out, n_in, (n_layers,))["w"]}


def _inner_widths(config: DecoderConfig, layer: str, dims: Dims) -> tuple[int, int] | None:
  """(k, k') of a residual layer's projections for a weight-owning tensor, or None when it has no weights."""
  if layer == "softmax":
    subsets = 2 ** (dims.n_axes - dims.example) - 1
    return config.softmax_dim, config.softmax_dim * subsets
  if layer in ("cummax", "shift"):
    width = config.cummax_dim if layer == "cummax" else config.shift_dim
    return (width, width) if dims.name in layers.DIRECTIONAL_TENSORS else None
  width = {"share_up": config.share_up_dim, "share_down": config.share_down_dim, "nonlinear": config.nonlinear_dim}
  return width[layer], width[layer]


def _initial_weights(sig: Signature, config: DecoderConfig) -> dict:
  """The parameter tree with a `_Normal` at every leaf."""
  owners = [dims for dims in ALL_DIMS if xy_representative(dims) == dims]
  z, n_layers = config.decoding_dim, config.n_layers
  latents = {
    dims.name: {
      "mean": _Normal((*shape(dims, sig), z), config.posterior_init_scale),
      "capacity_adjustment": _Normal((*shape(dims, sig), z), 0.0),
      "target_capacity": _Normal((z,), 0.0),
    }
    for dims in ALL_DIMS
  }
  blocks = {
    layer: {
      dims.name: _projections(config.channels_of(dims), *widths, n_layers)
      for dims in owners
      if (widths := _inner_widths(config, layer, dims)) is not None
    }
    for layer in RESIDUAL_LAYERS
  }
  k = config.direction_channels
  blocks["direction_share"] = {
    name: _linear(k, k, (n_layers, count))["w"] for name, count in DIRECTION_MAP_COUNTS.items()
  }
  head = _linear(config.channels, 1)  # one column, copied for the input and the output grids below
  return {
    "latents": latents,
    "decode": {dims.name: _linear(z, config.channels_of(dims)) for dims in owners},
    "blocks": blocks,
    "head": {"w": head["w"], "b": _Normal((2,), head["b"].scale)},
    "mask_head": _linear(config.channels, 2),
  }


def init_params(sig: Signature, key: jax.Array, config: DecoderConfig = DecoderConfig()) -> dict:
  """Fresh weights for a puzzle of signature `sig` (see the module docstring for the tree).

  All the random weights are cut from one normal draw (one random-bit generation, a small program).
  """
  leaves, tree = jax.tree.flatten(_initial_weights(sig, config), is_leaf=lambda leaf: isinstance(leaf, _Normal))
  sizes = [math.prod(leaf.shape) for leaf in leaves]
  pieces = jnp.split(jax.random.normal(key, (sum(sizes),), jnp.float32), np.cumsum(sizes)[:-1])
  params = tree.unflatten(
    [
      leaf.scale * piece.reshape(leaf.shape) if leaf.scale else jnp.zeros(leaf.shape)
      for leaf, piece in zip(leaves, pieces)
    ]
  )
  params["head"]["w"] = jnp.concatenate([params["head"]["w"]] * 2, axis=1)
  return params


def sample_noise(sig: Signature, key: jax.Array, config: DecoderConfig = DecoderConfig()) -> Multitensor:
  """Standard normal noise for every latent: {name: float32 [*axes, Z]} (one draw, cut into tensors)."""
  shapes = [(*shape(dims, sig), config.decoding_dim) for dims in ALL_DIMS]
  sizes = [int(np.prod(s)) for s in shapes]
  flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
  pieces = jnp.split(flat, np.cumsum(sizes)[:-1])
  return {dims.name: piece.reshape(s) for dims, piece, s in zip(ALL_DIMS, pieces, shapes)}


def direction_maps(stored: dict[str, jax.Array]) -> Multitensor:
  """Every directional tensor's [8, 8, K, K] maps W[d, d'] from the stored distinct ones ([R, K, K] each).

  W = onehot(DIRECTION_TIES) . stored, one product per tensor: each W[d, d'] is one stored row times 1 plus
  zeros, so exactly that row, and its gradient is one product too (64 slices and a stack per tensor, and
  their 64 pads and sums in the gradient, made thousands of small operations to compile).
  """

  def tied(maps: jax.Array, table: np.ndarray) -> jax.Array:
    selector = np.eye(maps.shape[0], dtype=np.float32)[table]  # [8, 8, R]
    return jnp.einsum("der,rkl->dekl", selector, maps, precision=jax.lax.Precision.HIGHEST)

  return {name: tied(stored[xy_representative(from_name(name)).name], table) for name, table in DIRECTION_TIES.items()}


def _block(sig: Signature, masks: jax.Array, x: Multitensor, weights: dict) -> Multitensor:
  x = layers.share_up(x, weights["share_up"])
  x = layers.softmax(x, weights["softmax"])
  x = layers.cummax(x, weights["cummax"], masks)
  x = layers.shift(x, weights["shift"], masks)
  x = layers.direction_share(x, direction_maps(weights["direction_share"]))
  x = layers.nonlinear(x, weights["nonlinear"])
  x = layers.share_down(sig, x, weights["share_down"], masks)
  return layers.normalize_all(x)


def decode(
  sig: Signature,
  params: dict,
  arrays: PuzzleArrays,
  key: jax.Array,
  *,
  noise: bool = True,
  config: DecoderConfig = DecoderConfig(),
) -> DecoderOutput:
  """One forward pass of the decoder for a puzzle of signature `sig` (static).

  params: from `init_params(sig, ...)`; arrays: the puzzle's (traced) arrays; key: the latent noise's
  key (unused when `noise` is False, which decodes the posterior means).
  """
  eps = sample_noise(sig, key, config) if noise else None
  capacity = dict(
    min_capacity=config.min_capacity, init_capacity=config.init_capacity, capacity_log_scale=config.capacity_log_scale
  )
  x, kl = layers.decode_latents(params["latents"], params["decode"], eps, **capacity)

  def block(x, weights):
    return _block(sig, arrays.masks, x, weights), None

  x, _ = jax.lax.scan(block, x, params["blocks"])
  colors, x_mask, y_mask = layers.heads(x, params["head"], params["mask_head"], head_bias_scale=config.head_bias_scale)
  x_mask, y_mask = layers.postprocess_mask(arrays.shapes, x_mask, y_mask, fill=config.mask_fill)
  logits = jnp.concatenate([jnp.zeros_like(colors[:, :1]), colors], axis=1)
  kl_terms = {name: jnp.sum(value) for name, value in kl.items()}
  return DecoderOutput(logits, x_mask, y_mask, sum(kl_terms.values()), kl_terms)
