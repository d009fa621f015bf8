"""Mixed precision, rematerialisation and layer scan of the byte LM (`ModelConfig.compute_dtype`, `remat`,
`scan_layers`): the float32 default is unchanged, bfloat16 learns with float32 memories, and remat and scan give
the default's gradients."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import tiny_config, with_fields

from contlearn.config import REMAT_POLICIES, ModelConfig
from contlearn.errors import ConfigError
from contlearn.learner import build_learner
from contlearn.mixer_configs import mixer_config
from contlearn.models import byte_lm
from contlearn.models.lm import stack_blocks, unstack_blocks
from contlearn.stream import Chunk

PERIODIC = np.frombuffer(b"the cat sat on the mat. " * 64, np.uint8).astype(np.int32)


def _losses(cfg, tokens, steps):
  """Per-step mean losses of the learner of `cfg` over consecutive windows of `tokens [B, N]`, and its last state."""
  learner = build_learner(cfg)
  state = learner.init(jax.random.PRNGKey(0))
  step, seq = jax.jit(learner.step), cfg.data.seq
  losses = []
  for i in range(steps):
    window = tokens[:, i * seq : i * seq + seq + 1]
    state, metrics = step(state, Chunk(jnp.asarray(window), jnp.ones((tokens.shape[0], seq), bool)))
    losses.append(float(metrics.nll / metrics.count))
  return losses, state


# Three steps' losses of the default (float32) path, computed at commit 3fd4ec5, before the precision settings.
FLOAT32_LOSSES = {
  "swa": ("0x1.8515040000000p+2", "0x1.68f4cc0000000p+2", "0x1.503f560000000p+2"),
  "gated_deltanet": ("0x1.817f0c0000000p+2", "0x1.5f7ce40000000p+2", "0x1.4218100000000p+2"),
  "linear_attention": ("0x1.7ef9ca0000000p+2", "0x1.6c770e0000000p+2", "0x1.59ac260000000p+2"),
}
# How far from the recorded losses a float32 run may land: XLA compiles for the CPU it runs on, and another
# instruction set rounds a reduction differently (seen: one unit in the last place at the third step). A cast of
# any part of the path to bfloat16 moves the loss by ~1e-3 of itself, about 10,000 units.
ULPS = 4


@pytest.mark.parametrize(
  "mixer", ["swa", *(pytest.param(m, marks=pytest.mark.slow) for m in ("linear_attention", "gated_deltanet"))]
)
def test_the_float32_default_gives_the_losses_recorded_before_the_precision_settings(mixer):
  cms = (1, 2) if mixer == "linear_attention" else ()
  cfg = with_fields(tiny_config(mixer, n_layers=2, cms_periods=cms), data=dict(batch=2))
  tokens = np.tile(np.asarray(jax.random.randint(jax.random.PRNGKey(1), (2, 17), 0, 256)), (1, 3))
  learner = build_learner(cfg)
  state = learner.init(jax.random.PRNGKey(0))
  step, losses = jax.jit(learner.step), []
  for _ in range(3):  # the same batch three times
    state, metrics = step(state, Chunk(jnp.asarray(tokens[:, :17]), jnp.ones((2, 16), bool)))
    assert metrics.nll.dtype == jnp.float32
    losses.append(np.float32(metrics.nll / metrics.count))
  recorded = np.array([float.fromhex(h) for h in FLOAT32_LOSSES[mixer]], np.float32)
  apart = np.abs(np.array(losses) - recorded) / np.spacing(recorded)
  assert np.all(apart <= ULPS), (mixer, [float(x).hex() for x in losses], apart)


@pytest.mark.parametrize("mixer", ["swa", pytest.param("gated_deltanet", marks=pytest.mark.slow)])
def test_bfloat16_compute_learns_with_float32_master_weights_and_memories(mixer):
  cfg = tiny_config(mixer, n_layers=2, compute_dtype="bfloat16")
  cfg = with_fields(cfg, data=dict(batch=2, seq=16), train=dict(lr=1e-2))
  tokens = np.stack([PERIODIC[: 50 * 16 + 1], PERIODIC[5 : 50 * 16 + 6]])
  losses, state = _losses(cfg, tokens, 50)
  assert np.all(np.isfinite(losses)), losses
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 2.0, losses
  floats = lambda tree: {str(a.dtype) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)}
  assert floats(state.params) == floats(state.opt_state) == {"float32"}
  memory = floats(state.memory)
  assert memory == ({"bfloat16"} if mixer == "swa" else {"float32"}), memory  # a KV cache; a memory of the stream


def _dot_dtypes(cfg):
  """The operand dtypes of the matrix products in the byte LM's `apply`."""
  model = byte_lm(cfg)
  params, memory = model.init_params(jax.random.PRNGKey(0)), model.init_memory(2)
  jaxpr = jax.make_jaxpr(model.apply)(params, memory, jnp.zeros((2, 8), jnp.int32), jnp.ones((2, 8), bool))
  dots = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        dots.append((tuple(str(v.aval.dtype) for v in eqn.invars), str(eqn.outvars[0].aval.dtype)))
      for sub in jax.core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jaxpr.jaxpr)
  return model.apply, params, memory, dots


@pytest.mark.slow
def test_bfloat16_runs_the_block_matmuls_in_bfloat16_and_returns_float32_logits():
  cfg = ModelConfig(mixer="swa", d_model=32, n_layers=1, n_heads=2, compute_dtype="bfloat16")
  apply, params, memory, dots = _dot_dtypes(cfg)
  assert jax.tree.leaves(params)[0].dtype == jnp.float32
  assert (("bfloat16", "bfloat16"), "bfloat16") in dots  # projections, MLP
  assert (("bfloat16", "bfloat16"), "float32") in dots  # attention logits and the output head
  logits, _ = apply(params, memory, jnp.zeros((2, 8), jnp.int32), jnp.ones((2, 8), bool))
  assert logits.dtype == jnp.float32
  f32_dots = _dot_dtypes(dataclasses.replace(cfg, compute_dtype="float32"))[3]
  assert f32_dots and all(dot == (("float32", "float32"), "float32") for dot in f32_dots)


def test_bfloat16_params():
  model = byte_lm(ModelConfig(mixer="gated_deltanet", d_model=32, n_layers=1, n_heads=2, param_dtype="bfloat16"))
  assert {a.dtype for a in jax.tree.leaves(model.init_params(jax.random.PRNGKey(0)))} == {jnp.dtype(jnp.bfloat16)}


def _loss_and_grads(cfg, params):
  model = byte_lm(cfg)
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, 256)
  mask = jnp.ones((2, 16), bool)

  def loss(params):
    logits, memory = model.apply(params, model.init_memory(2), tokens, mask)
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1)) + sum(
      jnp.mean(a) for a in jax.tree.leaves(memory) if a.dtype != bool
    )

  return jax.jit(jax.value_and_grad(loss))(params)


MODELS = {
  "swa": dict(mixer=mixer_config("swa", window=8)),
  "gated_deltanet_cms": dict(mixer=mixer_config("gated_deltanet", chunk=8), cms_periods=(1, 2)),
}


@functools.cache
def _reference(model: str):
  """The config, params, loss and gradients of `MODELS[model]` without remat."""
  cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, **MODELS[model])
  params = byte_lm(cfg).init_params(jax.random.PRNGKey(0))
  return cfg, params, *_loss_and_grads(cfg, params)


FAST_REMATS = ("block",)
FAST_MODELS = ("swa",)  # the rest run in make test-all


@pytest.mark.parametrize(
  "remat", [*FAST_REMATS, *(pytest.param(p, marks=pytest.mark.slow) for p in REMAT_POLICIES if p not in FAST_REMATS)]
)
@pytest.mark.parametrize("model", [m if m in FAST_MODELS else pytest.param(m, marks=pytest.mark.slow) for m in MODELS])
def test_remat_gives_the_same_gradients(model, remat):
  cfg, params, loss, grads = _reference(model)
  loss_r, grads_r = _loss_and_grads(dataclasses.replace(cfg, remat=remat), params)
  np.testing.assert_allclose(loss_r, loss, rtol=1e-6)  # exact on the CPU but for everything_saveable (fused apart)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8), grads_r, grads)


@pytest.mark.parametrize("model", [m if m in FAST_MODELS else pytest.param(m, marks=pytest.mark.slow) for m in MODELS])
def test_scan_layers_gives_the_same_loss_and_gradients_on_the_restacked_params(model):
  cfg = ModelConfig(d_model=32, n_layers=3, n_heads=2, **MODELS[model])
  scanned = dataclasses.replace(cfg, scan_layers=True, remat="dots_with_no_batch_dims_saveable")
  params = byte_lm(cfg).init_params(jax.random.PRNGKey(0))
  stacked = byte_lm(scanned).init_params(jax.random.PRNGKey(0))
  jax.tree.map(np.testing.assert_array_equal, stacked, stack_blocks(params))  # the same draws, stacked
  jax.tree.map(np.testing.assert_array_equal, unstack_blocks(stacked), params)
  assert jax.tree.leaves(stacked["blocks"])[0].shape[0] == 3
  loss, grads = _loss_and_grads(cfg, params)
  loss_s, grads_s = _loss_and_grads(scanned, stacked)
  np.testing.assert_allclose(loss_s, loss, rtol=1e-6)  # a scan may fuse differently: equal to float rounding
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8), unstack_blocks(grads_s), grads)
  labels = byte_lm(scanned).level_labels(stacked)
  assert jax.tree.structure(labels) == jax.tree.structure(stacked)
  assert byte_lm(cfg).level_labels(params)["blocks"] == [labels["blocks"]] * 3


@pytest.mark.slow
def test_scan_layers_learns_with_cms_levels():
  cfg = tiny_config("gated_deltanet", n_layers=2, cms_periods=(1, 2), scan_layers=True, remat="block")
  cfg = with_fields(cfg, data=dict(batch=2))
  tokens = np.stack([PERIODIC[: 12 * 16 + 1], PERIODIC[3 : 12 * 16 + 4]])
  losses, _ = _losses(cfg, tokens, 12)
  assert losses[-1] < losses[0] - 0.5, losses


def test_remat_policies_are_jax_policies_and_muon_refuses_stacked_blocks():
  assert all(callable(getattr(jax.checkpoint_policies, name)) for name in REMAT_POLICIES)
  cfg = tiny_config("swa", scan_layers=True)
  with pytest.raises(ConfigError, match="train.optimizer='muon' orthogonalises each block's weight matrices"):
    build_learner(with_fields(cfg, train=dict(optimizer="muon")))
