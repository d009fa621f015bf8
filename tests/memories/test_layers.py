"""Memory mixers: shapes, state carried across steps, masks, the LM, errors."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.learner import build_learner
from contlearn.mixer_configs import mixer_config, with_known_fields
from contlearn.models import build_mixer, byte_lm
from tests.tiny import tiny_config, with_fields

NAMES = [
  "linear_attention",
  "mamba2",
  "deltanet",
  "gated_deltanet",
  "ttt_linear",
  "ttt_mlp",
  "titans",
  "self_modifying_titans",
]
# In `make test-all`: MAC's carry also runs by default with step=chunk (STEP_PER_CHUNK).
WITH_SWA = [pytest.param(n, {}, marks=pytest.mark.slow) for n in ("titans_mag", "titans_mal", "titans_mac")]


def _cfg(name, **kw):
  """`name` at small sizes; `kw` are fields of its mixer."""
  mixer = with_known_fields(name, window=8, chunk=8, chunk_proj=16, expansion=2)
  return ModelConfig(mixer=dataclasses.replace(mixer, **kw), d_model=32, n_heads=2, n_layers=1)


def _close(x, y, tol=1e-4):  # float32 (the forms are checked in float64)
  for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


STEP_PER_CHUNK = [
  pytest.param(n, {"step": "chunk"}, id=f"{n}-chunk_step", marks=[pytest.mark.slow] if n == "ttt_mlp" else [])
  for n in ("ttt_mlp", "titans", "titans_mac")
]


# Hope's heads reading a learned projection of the whole residual (make test-all; make test runs the projection
# in test_hope_in_proj_at_the_identity_is_the_mixer_without_it).
IN_PROJ = [
  pytest.param("self_modifying_titans", {"in_proj": True}, id="self_modifying_titans-in_proj", marks=pytest.mark.slow)
]


# TTT's inner step as the official code takes it (tests/memories/test_ttt_inner_step.py).
OFFICIAL_STEP = [pytest.param("ttt_linear", {"inner_step": "official"}, id="ttt_linear-official_step")]


# Carried across steps by their own tests (self-modifying: test_self_modifying;
# TTT-MLP and Titans: their chunk-step cases here and the forms' tests): `make test-all`.
CARRIED_ELSEWHERE = ("self_modifying_titans", "ttt_mlp", "titans")


@pytest.mark.parametrize(
  "name, extra",
  [pytest.param(n, {}, marks=pytest.mark.slow) if n in CARRIED_ELSEWHERE else (n, {}) for n in NAMES]
  + WITH_SWA
  + STEP_PER_CHUNK
  + IN_PROJ
  + OFFICIAL_STEP,
)
def test_state_carries_across_steps(name, extra):
  """One call over 32 tokens equals two calls of 16 with the state carried.

  In float64, so that the two agree to rounding whatever the state's scale
  (Titans' momentum grows to tens); attention mixers with persistent tokens.
  """
  mixer = build_mixer(_cfg(name, **({} if name in NAMES else {"persistent_tokens": 2}), **extra))
  with jax.enable_x64(True):
    f64 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, tree)
    params = f64(mixer.init_params(jax.random.PRNGKey(0)))
    x = f64(jax.random.normal(jax.random.PRNGKey(1), (3, 32, 32)))
    mask = jnp.ones((3, 32), bool)
    state = f64(mixer.init_state(3))
    apply = jax.jit(mixer.apply)
    y, s = apply(params, state, x, mask)
    assert y.shape == x.shape and y.dtype == jnp.float64
    assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(s))
    y1, s1 = apply(params, state, x[:, :16], mask[:, :16])
    y2, s2 = apply(params, s1, x[:, 16:], mask[:, 16:])
    _close(jnp.concatenate([y1, y2], axis=1), y, 1e-9)
    _close(s2, s, 1e-9)


def test_hope_settings_reach_the_memories_spec():
  from contlearn.models import hope

  model = ModelConfig(d_model=32, n_heads=2)
  assert hope.spec(mixer_config("self_modifying_titans"), model).kv_residual
  assert not hope.spec(mixer_config("self_modifying_titans", kv_residual=False), model).kv_residual


@pytest.mark.slow  # (make test-all) an option of Hope's mixer; two compiles of the whole mixer
def test_hope_in_proj_at_the_identity_is_the_mixer_without_it():
  """`in_proj` adds `W_in` before the conv and keeps the other parameters' draws: at `W_in = I` the output
  and state equal the mixer's without it; at its initial `W_in` they differ."""
  plain = build_mixer(_cfg("self_modifying_titans"))
  projected = build_mixer(_cfg("self_modifying_titans", in_proj=True))
  params = projected.init_params(jax.random.PRNGKey(0))
  base = plain.init_params(jax.random.PRNGKey(0))
  assert set(params) - set(base) == {"win"}
  _close({k: params[k] for k in base}, base, 0.0)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 32))
  mask = jnp.ones((2, 16), bool)
  y, s = jax.jit(plain.apply)(base, plain.init_state(2), x, mask)
  y_eye, s_eye = jax.jit(projected.apply)({**params, "win": jnp.eye(32)}, projected.init_state(2), x, mask)
  _close((y_eye, s_eye), (y, s), 1e-6)
  y_proj, _ = jax.jit(projected.apply)(params, projected.init_state(2), x, mask)
  assert np.max(np.abs(np.asarray(y_proj) - np.asarray(y))) > 1e-2


@pytest.mark.parametrize(
  "name", [pytest.param(n, marks=pytest.mark.slow) if n == "self_modifying_titans" else n for n in NAMES]
)  # self-modifying Titans: test_self_modifying.py::test_a_masked_token_changes_nothing
def test_masked_tail_leaves_state(name):
  mixer = build_mixer(_cfg(name))
  params = mixer.init_params(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 20, 32))
  mask = jnp.arange(20)[None, :] < jnp.array([[13], [20]])
  apply = jax.jit(mixer.apply)
  _, s_full = apply(params, mixer.init_state(2), x, mask)
  _, s_short = apply(params, mixer.init_state(1), x[:1, :13], mask[:1, :13])
  _close(jax.tree.map(lambda a: a[:1], s_full), s_short)


@pytest.mark.parametrize(  # self_modifying_titans in `make test-all`: titans, its base, runs by default
  "name", [pytest.param(n, marks=pytest.mark.slow) if n == "self_modifying_titans" else n for n in NAMES]
)
def test_byte_lm_accepts_memory(name):
  model = byte_lm(_cfg(name))
  tokens = jnp.zeros((2, 16), jnp.int32)
  params = model.init_params(jax.random.PRNGKey(0))
  logits, memory = jax.jit(model.apply)(params, model.init_memory(2), tokens, jnp.ones((2, 16), bool))
  assert logits.shape == (2, 16, 256)
  assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize(
  "name, override, field",
  [
    ("linear_attention", dict(d_model=30, n_heads=4), "d_model"),
    ("linear_attention", dict(decay="fast"), "decay"),
    ("linear_attention", dict(conv=0), "conv"),
    ("titans", dict(depth=0), "depth"),
    ("linear_attention", dict(chunk=-1), "chunk"),
    ("titans", dict(persistent_tokens=2), "persistent_tokens"),  # a field titans does not have
    ("swa", dict(persistent_tokens=-1), "persistent_tokens"),
    ("titans_mac", dict(window=8, chunk=3), "chunk"),
    ("titans", dict(step="block"), "step"),
    ("gated_deltanet", dict(step="chunk"), "step"),
    ("self_modifying_titans", dict(step="chunk"), "step"),
    ("self_modifying_titans", dict(layer_norm=True), "step_norm"),  # the curvature bound has no LayerNorm
    ("gated_deltanet", dict(conv_init="normal"), "conv_init"),
    ("deltanet", dict(qk_act="relu"), "qk_act"),
    ("ttt_linear", dict(lr_init=1.0), "lr_init"),
  ],
)
def test_bad_config_names_field(name, override, field):
  """`override`: fields of the model (d_model, n_heads) and of its mixer."""
  sizes = {"d_model": 32, "n_heads": 2, **{k: v for k, v in override.items() if k in ("d_model", "n_heads")}}
  with pytest.raises(ConfigError, match=field):
    mixer = mixer_config(name, **{k: v for k, v in override.items() if k not in sizes})
    build_mixer(ModelConfig(mixer=mixer, **sizes))


@pytest.mark.parametrize("name, scale", [("deltanet", 1.0), ("gated_deltanet", 1.0), ("ttt_mlp", 0.1)])
def test_lr_init_is_the_inner_rate_of_a_neutral_input(name, scale):
  """With the gate's weights zeroed, every token's inner rate is lr_scale * lr_init."""
  for lr_init in (0.5, 0.05):
    p = build_mixer(_cfg(name, lr_init=lr_init)).init_params(jax.random.PRNGKey(0))
    np.testing.assert_allclose(scale * jax.nn.sigmoid(p["br"][:2]), scale * lr_init, rtol=1e-6)


@pytest.mark.parametrize(
  "width, init, order_matters",
  [(4, "identity", False), (4, "uniform", True), (1, "uniform", False)],
)
def test_conv_init_decides_whether_the_state_sees_token_order(width, init, order_matters):
  """Linear attention's state is sum_t k_t v_t^T. With the identity kernel (the
  default) k_t and v_t see only token t, so a permutation of the tokens leaves
  the state; with the uniform one (K = 4, taps in +-1/sqrt(K)) they mix the
  preceding tokens and it does not; K = 1 is the identity either way."""
  x = jax.random.normal(jax.random.PRNGKey(3), (1, 12, 32))
  mask = jnp.ones((1, 12), bool)
  order = jnp.asarray(np.random.default_rng(0).permutation(12))
  mixer = build_mixer(_cfg("linear_attention", conv=width, conv_init=init, decay="none"))
  params = mixer.init_params(jax.random.PRNGKey(0))
  kernel = np.asarray(params["conv"])
  assert kernel.shape == (width, 96)
  if order_matters:
    assert np.all(np.abs(kernel) <= width**-0.5)
    assert np.std(kernel) > 0.25  # uniform in +-0.5 has std 0.29
  else:
    np.testing.assert_array_equal(kernel, np.eye(width)[-1][:, None] * np.ones((1, 96)))
  w = lambda xs: mixer.apply(params, mixer.init_state(1), xs, mask)[1]["w"]["w"][0]
  gap = float(jnp.max(jnp.abs(w(x) - w(x[:, order]))))
  assert (gap > 1e-2) if order_matters else (gap < 1e-5), gap


@pytest.mark.parametrize(
  "name, override, multiple, message",
  [
    ("ttt_linear", {}, 16, "the inner mini-batch of model.mixer='ttt_linear' (model.mixer.chunk=0: the default, 16)"),
    ("titans_mag", dict(chunk=12), 12, "the inner mini-batch of model.mixer='titans_mag' (model.mixer.chunk=12)"),
    ("titans_mac", dict(window=8, chunk=4), 8, "the segment of model.mixer='titans_mac' (model.mixer.window=8)"),
  ],
)
def test_steps_must_hold_whole_mini_batches(name, override, multiple, message):
  """Chunk-start-gradient memories count mini-batches from each step's start: data.seq must keep them whole."""
  cfg = tiny_config(dataclasses.replace(with_known_fields(name, window=16), **override))
  seq = multiple + multiple // 2
  with pytest.raises(ConfigError, match=re.escape(f"data.seq={seq} must be a multiple of {multiple}, {message}")):
    build_learner(with_fields(cfg, data=dict(seq=seq)))
  build_learner(with_fields(cfg, data=dict(seq=2 * multiple)))


def test_online_memories_take_any_step_length():
  build_learner(with_fields(tiny_config(mixer_config("gated_deltanet", chunk=12)), data=dict(seq=16)))
