"""The CompressARC decoder: KL closed form, equivariances, lanes, and the reference forward pass."""

import functools
import json
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.compress_arc import decoder
from contlearn.compress_arc.multitensor import ALL_DIMS, xy_representative
from contlearn.compress_arc.puzzle import PuzzleArrays, Signature

REPO = pathlib.Path(__file__).resolve().parents[2]


def peer_folder() -> pathlib.Path:
  root = os.environ.get("CONTLEARN_PEERS")
  return (pathlib.Path(root) if root else REPO.parent / "shared" / "peers") / "CompressARC"


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
  template = decoder.init_params(sig, jax.random.key(0))
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
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, template)
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
