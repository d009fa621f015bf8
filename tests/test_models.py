"""Mixers and the LM: fast forms against token-by-token references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.config import ModelConfig
from contlearn.models import attention, build_mixer, byte_lm, linear_attention as la


def _random_qkv(key, b, t, h, d):
  ks = jax.random.split(key, 4)
  q, k = (jax.random.normal(kk, (b, t, h, d)) for kk in ks[:2])
  v = jax.random.normal(ks[2], (b, t, h, d))
  s0 = jax.random.normal(ks[3], (b, h, d, d))
  return q, k, v, s0


@pytest.mark.parametrize("decay", ["none", "multiscale"])
def test_linear_attention_parallel_form_matches_recurrence(decay):
  q, k, v, s0 = _random_qkv(jax.random.PRNGKey(0), 3, 11, 4, 5)
  mask = jnp.asarray(np.array([[1] * 11, [1] * 6 + [0] * 5, [0] * 11], bool))
  g = jnp.asarray(la.head_decays(decay, 4))
  y_ref, s_ref = la.reference_scan(s0, q, k, v, mask, g)
  y, s = la.chunk_forward(s0, q, k, v, mask, g)
  valid = np.asarray(mask)[..., None, None]
  np.testing.assert_allclose(np.where(valid, y, 0), np.where(valid, y_ref, 0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-5)
  # A lane of pure padding leaves its memory untouched.
  np.testing.assert_array_equal(s[2], s0[2])


def test_linear_attention_recurrence_reads_like_the_equation():
  """S_t = g S_{t-1} + k v^T; y_t = S_t^T q, in float64 numpy."""
  q, k, v, s0 = (np.asarray(a, np.float64) for a in _random_qkv(jax.random.PRNGKey(1), 1, 5, 2, 3))
  g = la.head_decays("multiscale", 2).astype(np.float64)
  s = s0[0].copy()
  ys = []
  for t in range(5):
    s = g[:, None, None] * s + np.einsum("hk,hv->hkv", k[0, t], v[0, t])
    ys.append(np.einsum("hkv,hk->hv", s, q[0, t]))
  y, _ = la.chunk_forward(*(jnp.asarray(a, jnp.float32) for a in (s0, q, k, v)), jnp.ones((1, 5), bool), jnp.asarray(g, jnp.float32))
  np.testing.assert_allclose(np.asarray(y)[0], np.stack(ys), rtol=1e-4, atol=1e-4)


def _rope_np(x, pos):
  half = x.shape[-1] // 2
  freqs = 10_000.0 ** (-np.arange(half) / half)
  ang = pos * freqs
  x1, x2 = x[:half], x[half:]
  return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang), x1 * np.sin(ang) + x2 * np.cos(ang)])


def test_sliding_window_cache_matches_attention_over_the_whole_stream():
  """Step by step with the carried cache == a float64 loop over every position."""
  cfg = ModelConfig(mixer="swa", d_model=16, n_heads=2, window=5)
  mixer = build_mixer(cfg)
  params = mixer.init_params(jax.random.PRNGKey(0))
  b, t, steps = 2, 4, 3
  x = jax.random.normal(jax.random.PRNGKey(1), (b, t * steps, 16))
  state = mixer.init_state(b)
  outs = []
  for s in range(steps):
    y, state = mixer.apply(params, state, x[:, s * t : (s + 1) * t], jnp.ones((b, t), bool))
    outs.append(y)
  fast = np.concatenate([np.asarray(o) for o in outs], axis=1)

  q, k, v = (np.asarray(a, np.float64) for a in attention._project(params, x, 2))
  wo = np.asarray(params["wo"], np.float64)
  ref = np.zeros((b, t * steps, 16))
  for bi in range(b):
    for p in range(t * steps):
      heads = []
      for h in range(2):
        keys = range(max(0, p - cfg.window + 1), p + 1)
        qp = _rope_np(q[bi, p, h], p)
        logits = np.array([qp @ _rope_np(k[bi, j, h], j) for j in keys]) / np.sqrt(8)
        w = np.exp(logits - logits.max())
        w /= w.sum()
        heads.append(sum(wj * v[bi, j, h] for wj, j in zip(w, keys)))
      ref[bi, p] = np.concatenate(heads) @ wo
  np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mixer", ["swa", "linear_attention"])
def test_lm_one_long_step_equals_many_short_steps(mixer):
  """Memory carried across steps makes the stream one sequence."""
  cfg = ModelConfig(mixer=mixer, d_model=32, n_layers=2, n_heads=2, window=16, cms_periods=(1, 4))
  model = byte_lm(cfg)
  params = model.init_params(jax.random.PRNGKey(0))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, 256)
  mask = jnp.ones((2, 16), bool)
  long, mem_long = model.apply(params, model.init_memory(2), tokens, mask)
  memory, pieces = model.init_memory(2), []
  for i in range(4):
    logits, memory = model.apply(params, memory, tokens[:, 4 * i : 4 * i + 4], mask[:, :4])
    pieces.append(logits)
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), long, rtol=2e-4, atol=2e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4), memory, mem_long)


def test_unknown_mixer_and_bad_widths_are_named():
  from contlearn.errors import ConfigError

  with pytest.raises(ConfigError, match="model.mixer='nope' is not a known mixer"):
    byte_lm(ModelConfig(mixer="nope"))
  with pytest.raises(ConfigError, match="divisible by model.n_heads"):
    byte_lm(ModelConfig(mixer="swa", d_model=30, n_heads=4))
