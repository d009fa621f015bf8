"""Attention and the LM: the carried cache against attention over the whole stream.

The memory mixers (linear attention and its relatives) are tested in tests/memories.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.config import ModelConfig
from contlearn.mixer_configs import mixer_config
from contlearn.models import attention, build_mixer, byte_lm, layers


def rope_np(x, pos):
  half = x.shape[-1] // 2
  freqs = 10_000.0 ** (-np.arange(half) / half)
  ang = pos * freqs
  x1, x2 = x[:half], x[half:]
  return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang), x1 * np.sin(ang) + x2 * np.cos(ang)])


def softmax_np(logits, values):
  w = np.exp(logits - logits.max())
  return (w / w.sum()) @ values


@pytest.mark.parametrize("n_p", [0, 3])
def test_sliding_window_cache_matches_attention_over_the_whole_stream(n_p):
  """Step by step with the carried cache == a float64 loop over every position.

  With N_p persistent tokens every query also sees them, without position.
  """
  cfg = ModelConfig(mixer=mixer_config("swa", window=5, persistent_tokens=n_p), d_model=16, n_heads=2)
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

  q, k, v = (np.asarray(a, np.float64) for a in attention.project(params, x, 2))
  wo = np.asarray(params["wo"], np.float64)
  p_k, p_v = (np.asarray(params["persistent"][n], np.float64) for n in "kv") if n_p else (np.zeros((0, 2, 8)),) * 2
  ref = np.zeros((b, t * steps, 16))
  for bi in range(b):
    for p in range(t * steps):
      heads = []
      for h in range(2):
        keys = range(max(0, p - cfg.mixer.window + 1), p + 1)
        qp = rope_np(q[bi, p, h], p)
        logits = [q[bi, p, h] @ p_k[i, h] for i in range(n_p)] + [qp @ rope_np(k[bi, j, h], j) for j in keys]
        values = np.concatenate([p_v[:, h], v[bi, list(keys), h]])
        heads.append(softmax_np(np.array(logits) / np.sqrt(8), values))
      ref[bi, p] = np.concatenate(heads) @ wo
  np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-4)


def test_no_persistent_tokens_leave_attention_as_before():
  """N_p = 0: no new parameters and, bit for bit, the softmax over the window alone."""
  cfg = ModelConfig(mixer=mixer_config("swa", window=5), d_model=16, n_heads=2)
  mixer = build_mixer(cfg)
  params = mixer.init_params(jax.random.PRNGKey(0))
  assert sorted(params) == ["norm", "wo", "wqkv"]
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 7, 16))
  mask = jnp.arange(7)[None, :] < jnp.array([[7], [4]])
  y, _ = mixer.apply(params, mixer.init_state(2), x, mask)

  # The attention as it was before persistent tokens, op for op.
  q, k, v = attention.project(params, x, 2)
  w = cfg.mixer.window
  k = jnp.concatenate([jnp.zeros((2, w, 2, 8)), k], axis=1)
  v = jnp.concatenate([jnp.zeros((2, w, 2, 8)), v], axis=1)
  valid = jnp.concatenate([jnp.zeros((2, w), bool), mask], axis=1)
  pos = jnp.arange(w + 7)
  qr = layers.rope(q.swapaxes(1, 2), pos[w:])
  kr = layers.rope(k.swapaxes(1, 2), pos)
  logits = jnp.einsum("bhtd,bhsd->bhts", qr, kr) / jnp.sqrt(jnp.float32(8))
  rel = pos[w:, None] - pos[None, :]
  allowed = ((rel >= 0) & (rel < w))[None, None] & valid[:, None, None, :]
  weights = jax.nn.softmax(jnp.where(allowed, logits, -1e30), axis=-1)
  before = jnp.einsum("bhts,bshd->bthd", weights, v).reshape(2, 7, 16) @ params["wo"]
  np.testing.assert_array_equal(np.asarray(y), np.asarray(before))


@pytest.mark.parametrize(
  "mixer, extra",
  [
    ("swa", dict(window=16)),
    ("linear_attention", {}),  # the others' mixers: test_layers' state-carry test
    pytest.param("titans_mac", dict(window=4, persistent_tokens=2), marks=pytest.mark.slow),
    pytest.param("self_modifying_titans", dict(chunk=4, chunk_proj=4, expansion=2), marks=pytest.mark.slow),
  ],
)
def test_lm_one_long_step_equals_many_short_steps(mixer, extra):
  """Memory carried across steps makes the stream one sequence (MAC: one segment per short step).

  In float64, so that both agree to rounding.
  """
  cfg = ModelConfig(mixer=mixer_config(mixer, **extra), d_model=32, n_layers=2, n_heads=2, cms_periods=(1, 4))
  model = byte_lm(cfg)
  with jax.enable_x64(True):
    f64 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, tree)
    params = f64(model.init_params(jax.random.PRNGKey(0)))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, 256)
    mask = jnp.ones((2, 16), bool)
    apply = jax.jit(model.apply)
    long, mem_long = apply(params, f64(model.init_memory(2)), tokens, mask)
    memory, pieces = f64(model.init_memory(2)), []
    for i in range(4):
      logits, memory = apply(params, memory, tokens[:, 4 * i : 4 * i + 4], mask[:, :4])
      pieces.append(logits)
    assert long.dtype == jnp.float64
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), long, rtol=1e-9, atol=1e-9)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9), memory, mem_long)


def test_unknown_mixer_and_bad_widths_are_named():
  from contlearn.errors import ConfigError

  with pytest.raises(ConfigError, match="model.mixer='nope' is not a known mixer"):
    byte_lm(ModelConfig(mixer="nope"))
  with pytest.raises(ConfigError, match="divisible by model.n_heads"):
    byte_lm(ModelConfig(mixer="swa", d_model=30, n_heads=4))


def test_hope_presets_are_the_cli_overrides():
  from contlearn.config import Config
  from contlearn.models import hope
  from contlearn.overrides import apply_overrides

  for name, make in (("hope", hope.hope), ("hope_attention", hope.hope_attention)):
    assert apply_overrides(Config(), list(hope.PRESETS[name])).model == make()
  assert hope.hope().mixer.name == "self_modifying_titans" and hope.hope_attention().mixer.name == "swa"
  assert hope.hope().cms_periods == hope.hope_attention().cms_periods == (1, 16, 256)


@pytest.mark.slow
def test_hope_byte_lm_learns_random_tokens():
  """Hope (self-modifying Titans + CMS) through the learner: finite loss that falls on a repeated batch."""
  from tiny import tiny_config, with_fields

  from contlearn.learner import build_learner
  from contlearn.stream import Chunk

  cfg = tiny_config(mixer_config("self_modifying_titans", chunk=4, chunk_proj=8, expansion=2), cms_periods=(1, 2))
  learner = build_learner(with_fields(cfg, data=dict(batch=4)))
  state = learner.init(jax.random.PRNGKey(0))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (4, 17), 0, 256)
  step = jax.jit(learner.step)
  losses = []
  for _ in range(8):
    state, metrics = step(state, Chunk(tokens, jnp.ones((4, 16), bool)))
    losses.append(float(metrics.nll / metrics.count))
  assert np.all(np.isfinite(losses)), losses
  assert losses[-1] < losses[0] - 0.5, losses


def test_self_modifying_chunks_must_nest():
  from contlearn.errors import ConfigError

  with pytest.raises(
    ConfigError,
    match=r"model.mixer.chunk_proj=24 must be a positive multiple of the main memory.s chunk "
    r"\(model.mixer.chunk=0, 0 meaning 16\)",
  ):
    byte_lm(ModelConfig(mixer=mixer_config("self_modifying_titans", chunk_proj=24)))
