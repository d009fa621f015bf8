"""The CompressARC decoder: KL closed form, equivariances, lanes, and the reference forward pass."""

import functools
import itertools
import json
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.compress_arc import decoder, layers, multitensor
from contlearn.compress_arc.multitensor import ALL_DIMS, xy_representative
from contlearn.compress_arc.puzzle import PuzzleArrays, Signature
from contlearn.field_checks import FieldError

REPO = pathlib.Path(__file__).resolve().parents[2]


def peer_folder() -> pathlib.Path:
  root = os.environ.get("CONTLEARN_PEERS")
  return (pathlib.Path(root) if root else REPO.parent / "shared" / "peers") / "CompressARC"


SIG = Signature(
  n_train=2, n_test=1, n_colors=3, n_x=3, n_y=3, in_out_same_size=True, all_in_same_size=False, all_out_same_size=False
)  # square, so the transposed puzzle runs through the same compiled program
SHAPES = np.array([[[3, 3], [3, 3]], [[2, 3], [2, 3]], [[3, 1], [3, 1]]], np.int32)  # [E, in/out, x/y]


def make_arrays(shapes: np.ndarray, n_x: int, n_y: int, seed: int = 0) -> PuzzleArrays:
  """Random grids of the given shapes (colour 0..3), zero outside them."""
  inside = (np.arange(n_x)[None, :, None, None] < shapes[:, None, None, :, 0]) & (
    np.arange(n_y)[None, None, :, None] < shapes[:, None, None, :, 1]
  )  # [E, X, Y, 2]
  problem = np.random.default_rng(seed).integers(0, 4, inside.shape) * inside
  return PuzzleArrays(jnp.asarray(problem, jnp.int32), jnp.asarray(inside, jnp.float32), jnp.asarray(shapes))


@functools.cache
def compiled(sig: Signature, lanes: bool):
  """decode(sig, noise=False), jitted, vmapped over lanes when `lanes` (one compilation each, shared by the tests)."""
  decode = functools.partial(decoder.decode, sig, noise=False)
  return jax.jit(jax.vmap(decode) if lanes else decode)


def decode_lanes(*lanes: tuple[dict, PuzzleArrays]) -> list[decoder.DecoderOutput]:
  """Noiseless outputs of (params, arrays) pairs of signature SIG, run as the lanes of one call."""
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *lanes)
  together = compiled(SIG, True)(*stacked, jax.random.split(jax.random.key(0), len(lanes)))
  return [jax.tree.map(lambda a, i=i: a[i], together) for i in range(len(lanes))]


def random_params(sig: Signature, seed: int) -> dict:
  """Weights of the initial tree's shapes, all drawn at random (capacities too, so every term matters)."""
  template = jax.eval_shape(functools.partial(decoder.init_params, sig), jax.random.key(0))
  leaves, tree = jax.tree.flatten(template)
  rng = np.random.default_rng(seed)
  return tree.unflatten([jnp.asarray(0.3 * rng.normal(size=leaf.shape), jnp.float32) for leaf in leaves])


# --- the decoding layer ----------------------------------------------------------------------------


def test_latent_kl_and_sample_equal_their_closed_form():
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(3, 5, 4, 4))
  adjustment = rng.normal(size=(3, 5, 4, 4))
  target = rng.normal(scale=0.3, size=(4,)) - 0.6
  noise = rng.normal(size=mean.shape)
  z, kl = layers.latent_sample(*(jnp.asarray(a, jnp.float32) for a in (mean, adjustment, target, noise)))

  n = mean.size
  axes = (0, 1, 2)
  capacity = np.exp(10 * target + adjustment - adjustment.mean(axes)) * 1e4 + 0.5
  noise_var = np.exp(-2 * capacity / n)
  centred = mean - mean.mean(axes)
  unit = centred / np.sqrt((centred**2 + 1e-8).mean(axes))
  expected_kl = 0.5 * (noise_var + (1 - noise_var) * unit**2 - 1) + capacity / n
  scale = 1 - np.exp(-2 * (np.exp(10 * target) * 1e4 + 0.5) / n)
  expected_z = scale * (np.sqrt(1 - noise_var) * unit + np.sqrt(noise_var) * noise)
  assert kl.dtype == jnp.float32 and kl.shape == mean.shape
  np.testing.assert_allclose(kl, expected_kl, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(z, expected_z, rtol=2e-5, atol=1e-6)
  assert np.all(np.asarray(kl) > 0)


def test_postprocess_mask_closes_each_example_beyond_its_largest_grid():
  shapes = jnp.array([[[2, 3], [1, 4]], [[3, 1], [3, 1]]], jnp.int32)  # [E, in/out, x/y]
  x_mask, y_mask = layers.postprocess_mask(shapes, jnp.zeros((2, 3, 2)), jnp.ones((2, 4, 2)))
  np.testing.assert_array_equal(x_mask[:, :, 0], [[0, 0, -1000], [0, 0, 0]])
  np.testing.assert_array_equal(y_mask[:, :, 1], [[1, 1, 1, 1], [1, -999, -999, -999]])
  np.testing.assert_array_equal(x_mask[..., 0], x_mask[..., 1])


def test_directional_shift_moves_even_channels_along_the_direction_and_odd_ones_against_it():
  dims = multitensor.from_name("edxy")
  z = np.zeros((1, 8, 4, 4, 2), np.float32)
  z[0, :, 1, 2, :] = 1.0  # one cell lit in every direction and both channels
  out = np.asarray(
    layers._directional(dims, jnp.asarray(z), jnp.ones((1, 4, 4)), layers._shift_line, layers._shift_diagonal_line)
  )
  for d, (vx, vy) in enumerate([(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]):
    assert out[0, d, 1 + vx, 2 + vy, 0] == 1.0 and out[0, d, :, :, 0].sum() == 1.0
    assert out[0, d, 1 - vx, 2 - vy, 1] == 1.0 and out[0, d, :, :, 1].sum() == 1.0


# --- equivariances ---------------------------------------------------------------------------------


def permute_latents(params: dict, letter: str, perm: np.ndarray) -> dict:
  """Permutes axis `letter` of every latent that has it."""
  latents = {}
  for dims in ALL_DIMS:
    latent = dict(params["latents"][dims.name])
    if letter in dims.name:
      for part in ("mean", "capacity_adjustment"):
        latent[part] = jnp.take(latent[part], perm, axis=dims.axis(letter))
    latents[dims.name] = latent
  return {**params, "latents": latents}


@pytest.mark.slow  # (make test-all) 36 s on 2 cores; the colour and transpose symmetries stay in make test
def test_permuting_examples_permutes_the_outputs():
  params, arrays = random_params(SIG, 1), make_arrays(SHAPES, SIG.n_x, SIG.n_y)
  perm = np.array([2, 0, 1])
  out, moved = decode_lanes(
    (params, arrays), (permute_latents(params, "e", perm), jax.tree.map(lambda a: a[perm], arrays))
  )
  np.testing.assert_allclose(moved.logits, out.logits[perm], rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(moved.x_mask, out.x_mask[perm], rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(moved.y_mask, out.y_mask[perm], rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(moved.kl, out.kl, rtol=1e-6)
  assert not np.allclose(out.logits, out.logits[perm], atol=1e-2)  # the examples differ, so the check can fail


COLOUR_PERMUTATION = np.array([1, 2, 0])


@pytest.fixture(scope="session")
def symmetry_outputs() -> dict[str, tuple[decoder.DecoderOutput, decoder.DecoderOutput]]:
  """The symmetry tests' pairs of lanes (a puzzle and the puzzle moved), all decoded by one call: one compile.
  (Two calls of `compiled(SIG, True)` in two tests may compile twice: jax's global caches of compiled programs,
  least recently used first, can drop the program between the tests. A session fixture: under xdist a worker
  may run other modules' tests between these two, which would end a module fixture.)"""
  arrays = make_arrays(SHAPES, SIG.n_x, SIG.n_y)
  colours, tied, untied = random_params(SIG, 2), tie_softmax_xy(random_params(SIG, 3)), random_params(SIG, 3)
  pairs = {
    "colours": ((colours, arrays), (permute_latents(colours, "c", COLOUR_PERMUTATION), arrays)),
    "transposed": ((tied, arrays), (transpose_latents(tied), transpose_arrays(arrays))),
    "untied": ((untied, arrays), (transpose_latents(untied), transpose_arrays(arrays))),
  }
  outputs = iter(decode_lanes(*(lane for pair in pairs.values() for lane in pair)))
  return {name: (next(outputs), next(outputs)) for name in pairs}


@pytest.mark.xdist_group("decoder_lanes")  # one worker decodes both tests' lanes (symmetry_outputs)
def test_permuting_colours_permutes_the_colour_logits(symmetry_outputs):
  out, moved = symmetry_outputs["colours"]
  perm = COLOUR_PERMUTATION
  np.testing.assert_allclose(moved.logits[:, 1:], out.logits[:, 1:][:, perm], rtol=1e-4, atol=1e-3)
  np.testing.assert_array_equal(moved.logits[:, 0], 0.0)  # black stays the constant 0
  np.testing.assert_allclose(moved.x_mask, out.x_mask, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(moved.kl, out.kl, rtol=1e-6)
  assert not np.allclose(out.logits[:, 1:], out.logits[:, 1:][:, perm], atol=1e-2)


def transpose_latents(params: dict) -> dict:
  """The latents of the transposed puzzle: x and y axes exchanged, directions reflected (d -> 2 - d)."""
  reflect = (2 - np.arange(8)) % 8
  latents = {}
  for dims in ALL_DIMS:
    source = dims.swap_xy()
    latent = dict(params["latents"][source.name])
    for part in ("mean", "capacity_adjustment"):
      value = latent[part]
      if source.x and source.y:
        value = jnp.swapaxes(value, source.axis("x"), source.axis("y"))
      if source.direction:
        value = jnp.take(value, reflect, axis=source.axis("d"))
      latent[part] = value
    latents[dims.name] = latent
  return {**params, "latents": latents}


def transpose_arrays(arrays: PuzzleArrays) -> PuzzleArrays:
  return PuzzleArrays(jnp.swapaxes(arrays.problem, 1, 2), jnp.swapaxes(arrays.masks, 1, 2), arrays.shapes[..., ::-1])


def tie_softmax_xy(params: dict) -> dict:
  """Gives the softmax layer's up-projection the same rows for the subsets S and S with x and y exchanged."""
  blocks = dict(params["blocks"])
  softmax = dict(blocks["softmax"])
  for name in ("exy", "ecxy", "edxy", "ecdxy"):
    dims = multitensor.from_name(name)
    axes = list(range(int(dims.example), dims.n_axes))
    subsets = [s for size in range(1, len(axes) + 1) for s in itertools.combinations(axes, size)]
    swap = {dims.axis("x"): dims.axis("y"), dims.axis("y"): dims.axis("x")}
    up = np.array(softmax[name]["up"])  # [L, 2 * subsets, K]
    for i, subset in enumerate(subsets):
      j = subsets.index(tuple(sorted(swap.get(axis, axis) for axis in subset)))
      if j > i:
        up[:, 2 * j : 2 * j + 2] = up[:, 2 * i : 2 * i + 2]
    softmax[name] = {**softmax[name], "up": jnp.asarray(up)}
  blocks["softmax"] = softmax
  return {**params, "blocks": blocks}


@pytest.mark.xdist_group("decoder_lanes")  # one worker decodes both tests' lanes (symmetry_outputs)
def test_transposing_the_puzzle_transposes_the_outputs_once_the_softmax_subsets_are_tied(symmetry_outputs):
  out, moved = symmetry_outputs["transposed"]
  np.testing.assert_allclose(moved.logits, jnp.swapaxes(out.logits, 2, 3), rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(moved.x_mask, out.y_mask, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(moved.y_mask, out.x_mask, rtol=1e-4, atol=1e-3)
  for dims in ALL_DIMS:
    np.testing.assert_allclose(moved.kl_terms[dims.name], out.kl_terms[dims.swap_xy().name], rtol=1e-6)

  # The reference's own initialisation leaves those rows untied, so its decoder is not transposition-equivariant.
  out, moved = symmetry_outputs["untied"]
  assert not np.allclose(moved.logits, jnp.swapaxes(out.logits, 2, 3), rtol=1e-2, atol=1e-2)


# --- lanes -----------------------------------------------------------------------------------------


@pytest.mark.slow  # (make test-all) the permutation tests run lanes too
def test_vmapped_lanes_equal_separate_calls():
  shapes_b = np.array([[[2, 3], [2, 3]], [[3, 2], [3, 2]], [[1, 1], [1, 1]]], np.int32)
  lanes = [
    (random_params(SIG, 4), make_arrays(SHAPES, 3, 3, seed=1)),
    (random_params(SIG, 5), make_arrays(shapes_b, 3, 3)),
  ]
  outputs = decode_lanes(*lanes)
  for (params, arrays), together in zip(lanes, outputs):
    alone = compiled(SIG, False)(params, arrays, jax.random.key(0))
    for got, want in zip(jax.tree.leaves(together), jax.tree.leaves(alone)):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)  # the two programs may sum in other orders
  assert not np.allclose(outputs[0].logits, outputs[1].logits, atol=1e-2)


def test_vmapped_noise_equals_separate_draws():
  keys = jax.random.split(jax.random.key(7), 2)
  together = jax.jit(jax.vmap(functools.partial(decoder.sample_noise, SIG)))(keys)
  for lane, key in enumerate(keys):
    alone = decoder.sample_noise(SIG, key)
    for name, value in alone.items():
      assert value.shape == (*multitensor.shape(multitensor.from_name(name), SIG), 4)
      np.testing.assert_array_equal(together[name][lane], value)
  assert not np.allclose(together["ecxy"][0], together["ecxy"][1])


def test_config_refuses_bad_sizes():
  assert decoder.DecoderConfig().n_layers == 4
  for bad in (
    dict(n_layers=0),
    dict(cummax_dim=3),
    dict(shift_dim=0),
    dict(posterior_init_scale=-1.0),
    dict(mask_fill=1.0),
  ):
    with pytest.raises(FieldError):
      decoder.DecoderConfig(**bad)


def test_init_params_ties_and_scales():
  sig = SIG._replace(n_colors=1, n_x=2, n_y=2)
  params = decoder.init_params(sig, jax.random.key(0))
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
  np.testing.assert_array_equal(params["head"]["w"][:, 0], params["head"]["w"][:, 1])  # x-y symmetric colour head
  assert set(params["decode"]) == {name for name, _ in _owners()} and "ey" not in params["blocks"]["share_up"]
  assert set(params["blocks"]["cummax"]) == {"edxy", "ecdxy"}
  assert {k: v.shape[1] for k, v in params["blocks"]["direction_share"].items()} == decoder.DIRECTION_MAP_COUNTS
  for latent in params["latents"].values():
    np.testing.assert_array_equal(latent["capacity_adjustment"], 0.0)
    np.testing.assert_array_equal(latent["target_capacity"], 0.0)
  means = np.concatenate([np.ravel(latent["mean"]) for latent in params["latents"].values()])
  assert 0.008 < means.std() < 0.012
  up = np.asarray(params["blocks"]["share_up"]["ecxy"]["up"])  # [L, 16, 16]: N(0, 1) / sqrt(16)
  assert up.shape == (4, 16, 16) and 0.2 < up.std() < 0.3


# --- the reference forward pass --------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
  """The reference modules (preprocessing, arc_compressor), imported on the CPU."""
  torch = pytest.importorskip("torch")
  folder = peer_folder()
  if not (folder / "arc_compressor.py").exists():
    pytest.skip(f"no reference code at {folder}")
  sys.path.insert(0, str(folder))
  try:
    import arc_compressor
    import preprocessing
  finally:
    sys.path.remove(str(folder))
  torch.set_default_device("cpu")
  torch.set_default_dtype(torch.float32)
  return torch, preprocessing, arc_compressor


def signature_of(task) -> Signature:
  return Signature(
    task.n_train, task.n_test, task.n_colors, task.n_x, task.n_y,
    bool(task.in_out_same_size), bool(task.all_in_same_size), bool(task.all_out_same_size),
  )  # fmt: skip


def arrays_of(task) -> PuzzleArrays:
  return PuzzleArrays(
    jnp.asarray(task.problem.cpu().numpy(), jnp.int32),
    jnp.asarray(task.masks.cpu().numpy(), jnp.float32),
    jnp.asarray(np.array(task.shapes), jnp.int32),
  )


def params_of(model, sig: Signature) -> dict:
  """The reference model's weights in this package's parameter tree."""
  as_jax = lambda t: jnp.asarray(t.detach().cpu().numpy())  # noqa: E731
  flags = lambda dims: [int(f) for f in dims]  # noqa: E731
  template = jax.eval_shape(functools.partial(decoder.init_params, sig), jax.random.key(0))
  latents = {
    dims.name: {
      "mean": as_jax(model.multiposteriors[flags(dims)][0]),
      "capacity_adjustment": as_jax(model.multiposteriors[flags(dims)][1]),
      "target_capacity": as_jax(model.target_capacities[flags(dims)]),
    }
    for dims in ALL_DIMS
  }
  decode = {name: dict(zip(("w", "b"), map(as_jax, model.decode_weights[flags(dims)]))) for name, dims in _owners()}
  reference_layers = {
    "share_up": model.share_up_weights,
    "softmax": model.softmax_weights,
    "cummax": model.cummax_weights,
    "shift": model.shift_weights,
    "nonlinear": model.nonlinear_weights,
    "share_down": model.share_down_weights,
  }
  blocks = {
    layer: {
      name: {
        part: jnp.stack([as_jax(per_layer[flags(dims)][i][0]) for per_layer in reference_layers[layer]])
        for i, part in enumerate(("down", "up"))
      }
      for name, dims in _owners()
      if name in template["blocks"][layer]
    }
    for layer in decoder.RESIDUAL_LAYERS
  }
  direction = {name: np.zeros(value.shape, np.float32) for name, value in template["blocks"]["direction_share"].items()}
  for dims in ALL_DIMS:
    if dims.direction:
      table, stored = decoder.DIRECTION_TIES[dims.name], direction[xy_representative(dims).name]
      for layer, maps in enumerate(model.direction_share_weights):
        for d1 in range(8):
          for d2 in range(8):
            stored[layer, table[d1, d2]] = maps[flags(dims)][d1][d2][0].detach().cpu().numpy()
  blocks["direction_share"] = jax.tree.map(jnp.asarray, direction)
  params = {
    "latents": latents,
    "decode": decode,
    "blocks": blocks,
    "head": dict(zip(("w", "b"), map(as_jax, model.head_weights))),
    "mask_head": dict(zip(("w", "b"), map(as_jax, model.mask_weights))),
  }
  assert jax.tree.structure(params) == jax.tree.structure(template)
  assert [a.shape for a in jax.tree.leaves(params)] == [a.shape for a in jax.tree.leaves(template)]
  return params


def _owners():
  return [(dims.name, dims) for dims in ALL_DIMS if xy_representative(dims) == dims]


def reference_forward(torch, model, noise: dict | None):
  """The reference forward pass with its latent noise replaced by `noise` (or zeros)."""
  queue = [dims.name for dims in ALL_DIMS]
  real_randn = torch.randn

  def fake_randn(shape):
    name = queue.pop(0)
    value = np.zeros(tuple(shape), np.float32) if noise is None else np.asarray(noise[name])
    assert value.shape == tuple(shape), (name, value.shape, shape)
    return torch.from_numpy(value.copy())

  torch.randn = fake_randn
  try:
    with torch.no_grad():
      logits, x_mask, y_mask, kl_amounts, kl_names = model.forward()
  finally:
    torch.randn = real_randn
  assert not queue
  logits = torch.cat([torch.zeros_like(logits[:, :1]), logits], dim=1)
  kl = {name: float(torch.sum(amount)) for name, amount in zip(kl_names, kl_amounts)}
  return logits.numpy(), x_mask.numpy(), y_mask.numpy(), kl


def test_direction_ties_match_the_reference(reference):
  """Each stored direction map is exactly one of the reference's shared direction maps, and vice versa."""
  torch, preprocessing, arc_compressor = reference
  problems = json.loads((peer_folder() / "dataset" / "arc-agi_training_challenges.json").read_text())
  model = arc_compressor.ARCCompressor(preprocessing.Task("aedd82e4", problems["aedd82e4"], None))
  for layer in model.direction_share_weights:
    rows_of_object: dict[int, set] = {}
    for dims in ALL_DIMS:
      if dims.direction:
        owner = xy_representative(dims).name
        for d1 in range(8):
          for d2 in range(8):
            row = (owner, int(decoder.DIRECTION_TIES[dims.name][d1, d2]))
            rows_of_object.setdefault(id(layer[[int(f) for f in dims]][d1][d2][0]), set()).add(row)
    rows = [row for group in rows_of_object.values() for row in group]
    assert all(len(group) == 1 for group in rows_of_object.values()) and len(rows) == len(set(rows))
    assert len(rows) == sum(decoder.DIRECTION_MAP_COUNTS.values())


@pytest.mark.slow
@pytest.mark.parametrize("task_id", ["aedd82e4", "9af7a82c"])
@pytest.mark.parametrize("with_noise", [False, True])
def test_matches_the_reference_forward_pass(reference, task_id, with_noise):
  torch, preprocessing, arc_compressor = reference
  problems = json.loads((peer_folder() / "dataset" / "arc-agi_training_challenges.json").read_text())
  torch.manual_seed(0)
  task = preprocessing.Task(task_id, problems[task_id], None)
  model = arc_compressor.ARCCompressor(task)
  for weights in model.weights_list:  # move the trainable weights away from their initial zeros and ties
    with torch.no_grad():
      weights.add_(0.1 * torch.randn(weights.shape))
  sig = signature_of(task)
  params, arrays = params_of(model, sig), arrays_of(task)
  key = jax.random.key(3)
  noise = decoder.sample_noise(sig, key) if with_noise else None
  logits, x_mask, y_mask, kl = reference_forward(torch, model, noise)
  out = jax.jit(functools.partial(decoder.decode, sig, noise=with_noise))(params, arrays, key)
  np.testing.assert_allclose(out.logits, logits, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(out.x_mask, x_mask, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(out.y_mask, y_mask, rtol=1e-4, atol=1e-3)
  for dims in ALL_DIMS:
    np.testing.assert_allclose(out.kl_terms[dims.name], kl[str([int(f) for f in dims])], rtol=1e-5)
  np.testing.assert_allclose(out.kl, sum(kl.values()), rtol=1e-5)
