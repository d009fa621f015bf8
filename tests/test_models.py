"""Attention and the LM: the carried cache against attention over the whole stream.

The memory mixers (linear attention and its relatives) are tested in tests/memories.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.config import ModelConfig
from contlearn.models import attention, build_mixer, byte_lm


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


@pytest.mark.parametrize("mixer", ["swa", "linear_attention", "self_modifying_titans"])
def test_lm_one_long_step_equals_many_short_steps(mixer):
  """Memory carried across steps makes the stream one sequence (chunks of 4 align with the steps)."""
  cfg = ModelConfig(mixer=mixer, d_model=32, n_layers=2, n_heads=2, window=16, cms_periods=(1, 4),
                    mem_chunk=4, sm_chunk_proj=4, mem_expansion=2)
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


def test_hope_presets_are_the_cli_overrides():
  from contlearn.config import Config, apply_overrides
  from contlearn.models import hope

  for name, make in (("hope", hope.hope), ("hope_attention", hope.hope_attention)):
    assert apply_overrides(Config(), list(hope.PRESETS[name])).model == make()
  assert hope.hope().mixer == "self_modifying_titans" and hope.hope_attention().mixer == "swa"
  assert hope.hope().cms_periods == hope.hope_attention().cms_periods == (1, 16, 256)


def test_hope_byte_lm_learns_random_tokens():
  """Hope (self-modifying Titans + CMS) through the learner: finite loss that falls on a repeated batch."""
  from contlearn.driver import build_learner
  from contlearn.stream import Chunk
  from tiny import tiny_config

  cfg = tiny_config(mixer="self_modifying_titans", cms_periods=(1, 2), mem_chunk=4, sm_chunk_proj=8, mem_expansion=2)
  learner = build_learner(cfg)
  state = learner.init(jax.random.PRNGKey(0), 4)
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

  with pytest.raises(ConfigError, match=r"model.sm_chunk_proj=24 must be a positive multiple of the main memory.s chunk \(model.mem_chunk=0, 0 meaning 16\)"):
    byte_lm(ModelConfig(mixer="self_modifying_titans", sm_chunk_proj=24))
