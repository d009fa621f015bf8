"""Memory mixers: shapes, state carried across steps, masks, the LM, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.models import byte_lm, build_mixer

NAMES = ["linear_attention", "mamba2", "deltanet", "gated_deltanet", "ttt_linear", "ttt_mlp", "titans", "self_modifying_titans"]
WITH_SWA = [pytest.param("titans_mag", marks=pytest.mark.slow), "titans_mal"]


def _cfg(name, **kw):
  return ModelConfig(mixer=name, d_model=32, n_heads=2, n_layers=1, mem_chunk=8, sm_chunk_proj=16, mem_expansion=2, **kw)


def _close(x, y, tol=1e-4):  # float32 (the forms are checked in float64)
  for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NAMES + WITH_SWA)
def test_state_carries_across_steps(name):
  """One call over 32 tokens equals two calls of 16 with the state carried."""
  mixer = build_mixer(_cfg(name))
  params = mixer.init_params(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 32, 32))
  mask = jnp.ones((3, 32), bool)
  state = mixer.init_state(3)
  y, s = jax.jit(mixer.apply)(params, state, x, mask)
  assert y.shape == x.shape
  assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(s))
  apply = jax.jit(mixer.apply)
  y1, s1 = apply(params, state, x[:, :16], mask[:, :16])
  y2, s2 = apply(params, s1, x[:, 16:], mask[:, 16:])
  _close(jnp.concatenate([y1, y2], axis=1), y)
  _close(s2, s)


@pytest.mark.parametrize("name", NAMES)
def test_masked_tail_leaves_state(name):
  mixer = build_mixer(_cfg(name))
  params = mixer.init_params(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 20, 32))
  mask = jnp.arange(20)[None, :] < jnp.array([[13], [20]])
  apply = jax.jit(mixer.apply)
  _, s_full = apply(params, mixer.init_state(2), x, mask)
  _, s_short = apply(params, mixer.init_state(1), x[:1, :13], mask[:1, :13])
  _close(jax.tree.map(lambda a: a[:1], s_full), s_short)


@pytest.mark.parametrize("name", NAMES)
def test_byte_lm_accepts_memory(name):
  model = byte_lm(_cfg(name))
  tokens = jnp.zeros((2, 16), jnp.int32)
  params = model.init_params(jax.random.PRNGKey(0))
  logits, memory = jax.jit(model.apply)(params, model.init_memory(2), tokens, jnp.ones((2, 16), bool))
  assert logits.shape == (2, 16, 256)
  assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize(
    "override, field",
    [(dict(d_model=30, n_heads=4), "d_model"), (dict(decay="fast"), "decay"), (dict(mem_conv=0), "mem_conv"),
     (dict(mem_depth=0), "mem_depth"), (dict(mem_chunk=-1), "mem_chunk")],
)
def test_bad_config_names_field(override, field):
  name = "titans" if field == "mem_depth" else "linear_attention"
  with pytest.raises(ConfigError, match=field):
    build_mixer(ModelConfig(mixer=name, **{"d_model": 32, "n_heads": 2, **override}))
