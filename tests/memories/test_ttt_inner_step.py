"""TTT's inner step, the paper's and the official code's: each fast form against a token loop, the default unchanged."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.field_checks import FieldError
from contlearn.memories.core import InnerModel
from contlearn.mixer_configs import with_known_fields
from contlearn.models import build_mixer, ttt

D, T, CHUNK = 4, 20, 8  # three chunks, the last one short
MODEL = ModelConfig(d_model=2 * D, n_heads=2, n_layers=1)
INNER = {"linear": (InnerModel(depth=1, bias=True, ttt_norm=True), 1.0), "mlp": (None, 0.1)}


def _inner(kind):
  inner, base = INNER[kind]
  return (InnerModel(depth=2, expansion=2, bias=True, ttt_norm=True), base) if inner is None else (inner, base)


def token_loop(inner, loss, outer, w, q, k, v, lr, mask, mean: bool):
  """TTT token by token: token t reads W_0 - c_t sum_{i<=t} lr_i grad_i (at W_0, the chunk start).

  c_t = 1 (the paper) or 1 / (real tokens so far in the chunk) (mean: the official code).
  """
  tree = jax.tree.map

  def step(carry, xs):
    cur, anchor, total, n = carry
    t, q_t, k_t, v_t, lr_t, use = xs
    start = t % CHUNK == 0
    anchor = tree(lambda c, a: jnp.where(start, c, a), cur, anchor)
    total, n = tree(lambda s: jnp.where(start, 0.0, s), total), jnp.where(start, 0.0, n)
    g = jax.grad(lambda p: loss(inner.apply(p, outer, k_t), v_t))(anchor)
    total, n = tree(lambda s, gg: s + use * lr_t * gg, total, g), n + use
    c = 1.0 / jnp.maximum(n, 1.0) if mean else 1.0
    cur = tree(lambda a, s: a - c * s, anchor, total)
    return (cur, anchor, total, n), inner.apply(cur, outer, q_t)

  use = jnp.asarray(mask, q.dtype)
  carry = (w, w, tree(jnp.zeros_like, w), jnp.zeros((), q.dtype))
  (cur, *_), y = jax.lax.scan(step, carry, (jnp.arange(q.shape[0]), q, k, v, lr, use))
  return y, cur


def _inputs(inner, seed=0):
  ks = jax.random.split(jax.random.PRNGKey(seed), 7)
  unit = lambda a: a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  q, k = unit(jax.random.normal(ks[0], (T, D))), unit(jax.random.normal(ks[1], (T, D)))
  v = jax.random.normal(ks[2], (T, D))
  gate = jax.nn.sigmoid(jax.random.normal(ks[3], (T,)))
  outer = {"ln_scale": 1.0 + 0.1 * jax.random.normal(ks[4], (D,)), "ln_bias": 0.1 * jax.random.normal(ks[5], (D,))}
  w = inner.init(ks[6], D, D)
  w = {"w": w["w"], "b": [0.1 * jnp.ones_like(b) for b in w["b"]]}
  return outer, w, q, k, v, gate


# The paper's step is also checked against a token loop in test_forms.py: its cases here run in `make test-all`.
@pytest.mark.parametrize(
  ("kind", "inner_step"),
  [
    ("linear", "official"),
    pytest.param("linear", "paper", marks=pytest.mark.slow),
    pytest.param("mlp", "official", marks=pytest.mark.slow),
    pytest.param("mlp", "paper", marks=pytest.mark.slow),
  ],
)
def test_fast_form_equals_the_token_loop(kind, inner_step):
  """In float64, outputs, final memory and gradients, over 17 real tokens and 3 of padding."""
  inner, base = _inner(kind)
  official = inner_step == "official"
  block = ttt.ttt_block(ttt.TTTLinearConfig(inner_step=inner_step), MODEL, inner, base)
  # the official code halves the loss and divides the rate by the head width
  assert block.lr_scale == (base / D if official else base)
  loss = memories.half_squared_loss if official else memories.squared_loss
  assert block.rule.loss is loss
  form = block.form or memories.chunked
  mask = np.arange(T) < 17
  with jax.enable_x64(True):
    f64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
    outer, w, q, k, v, gate = f64(_inputs(inner))
    ones = jnp.ones((T,), jnp.float64)

    def fast(gate, k):
      rates = memories.Rates(block.lr_scale * gate, ones, ones)
      y, state = form(block.rule, outer, memories.MemState(w, w), q, k, v, rates, jnp.asarray(mask), CHUNK)
      return y, state.w

    def slow(gate, k):
      return token_loop(inner, loss, outer, w, q, k, v, block.lr_scale * gate, mask, mean=official)

    (y_fast, w_fast), (y_slow, w_slow) = jax.jit(fast)(gate, k), jax.jit(slow)(gate, k)
    np.testing.assert_allclose(y_fast, y_slow, rtol=1e-10, atol=1e-10)
    for a, b in zip(jax.tree.leaves(w_fast), jax.tree.leaves(w_slow)):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    score = lambda f: jax.jit(jax.grad(lambda gate, k: jnp.sum(jnp.sin(f(gate, k)[0][:17])), (0, 1)))
    for a, b in zip(score(fast)(gate, k), score(slow)(gate, k)):
      np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)
    other = token_loop(inner, loss, outer, w, q, k, v, block.lr_scale * gate, mask, mean=not official)[0]
    assert not np.allclose(y_slow, other, rtol=1e-3, atol=1e-3)  # the two steps differ


# A mixer's outputs on fixed inputs, recorded before `inner_step` existed (float32, CPU). Another CPU's XLA code
# rounds them differently (seen: up to 7.2e-7 on an AVX-512 AMD EPYC, with the same outputs from the commit that
# recorded them); a change of the step moves them by far more.
BEFORE = {
  "ttt_linear": (
    [-0.2444014549255371, -0.02514643967151642, 0.026639703661203384]
    + [0.29877302050590515, 0.15515460073947906, -0.9628782272338867],
    162.38305145688355,
  ),
  "ttt_mlp": (
    [-0.08766026049852371, -0.015854686498641968, 0.09981070458889008]
    + [0.06015583127737045, 0.13307887315750122, -0.6667181253433228],
    156.57424582354724,
  ),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in ("ttt_linear", "ttt_mlp")])
def test_the_default_paper_step_gives_the_outputs_recorded_before(name):
  mixer_cfg = with_known_fields(name, chunk=8, expansion=2)
  assert mixer_cfg.inner_step == "paper"
  mixer = build_mixer(ModelConfig(mixer=mixer_cfg, d_model=16, n_heads=2, n_layers=1))
  params = mixer.init_params(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16))
  mask = jnp.ones((2, 16), bool).at[1, 12:].set(False)
  y, _ = jax.jit(mixer.apply)(params, mixer.init_state(2), x, mask)
  y = np.asarray(y)
  values, total = BEFORE[name]
  np.testing.assert_allclose(y[:, [0, 7, 11], 3].ravel(), values, rtol=1e-6, atol=1.5e-6)
  np.testing.assert_allclose(np.abs(y).sum(dtype=np.float64), total, rtol=1e-6)


def test_the_official_step_needs_token_steps():
  mixer_cfg = dataclasses.replace(with_known_fields("ttt_mlp"), inner_step="official", step="chunk")
  with pytest.raises(ConfigError, match="inner_step=official: needs model.mixer.step=token, got chunk"):
    build_mixer(ModelConfig(mixer=mixer_cfg, d_model=16, n_heads=2, n_layers=1))
  with pytest.raises(FieldError, match="inner_step='mean': must be one of paper, official"):
    ttt.TTTLinearConfig(inner_step="mean")
