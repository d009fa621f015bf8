"""Titans beside attention: MAC against its equations, masks, causality, learning.

The memory mixer inside (its write and its reads) is checked against the token
recurrence in tests/memories; here the reference builds MAC around it from
the equations of `contlearn.models.titans`, in float64, token by token.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.learner import build_learner
from contlearn.mixer_configs import mixer_config, with_known_fields
from contlearn.models import build_mixer
from contlearn.stream.base import Chunk
from tests.test_models import rope_np, softmax_np
from tests.tiny import tiny_config, with_fields

VARIANTS = ["titans_mag", "titans_mal", "titans_mac"]


def _cfg(name):
  mixer = mixer_config(name, window=8, chunk=4, expansion=2, persistent_tokens=3)
  return ModelConfig(mixer=mixer, d_model=32, n_heads=2, n_layers=1)


def _f64(tree):
  return jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, tree)


def _mac_reference(cfg, params, x, mask):
  """Titans MAC in float64 from its equations, segment by segment and token by token.

  Returns the outputs [B, T, D] and the memory state after the last segment.
  """
  alone = with_known_fields("titans", **dataclasses.asdict(cfg.mixer))  # the same memory, alone
  mem = build_mixer(dataclasses.replace(cfg, mixer=alone))
  model = memories.rules.titans(cfg.mixer.depth, cfg.mixer.expansion).model
  p = jax.tree.map(np.asarray, params)
  pa, ln = p["attn"], p["mem"]["ln"]
  b, t, d = x.shape
  h, seg, n_p = cfg.n_heads, cfg.mixer.window, cfg.mixer.persistent_tokens
  dh = d // h
  x = np.asarray(x)
  rms = lambda z: z / np.sqrt(np.mean(z**2, axis=-1, keepdims=True) + 1e-6)
  unit = lambda z: z / np.sqrt(np.sum(z**2, axis=-1, keepdims=True) + 1e-6)
  silu = lambda z: z / (1.0 + np.exp(-z))
  qkv = lambda z: np.split((rms(z) * pa["norm"]) @ pa["wqkv"], 3, axis=-1)  # each [seg, D]
  heads = lambda z: z.reshape(z.shape[0], h, dh)
  state = _f64(mem.init_state(b))
  out = np.zeros((b, t, d))
  for s0 in range(0, t, seg):
    y = np.zeros((b, seg, d))
    for bi in range(b):
      xs, valid = x[bi, s0 : s0 + seg], np.asarray(mask[bi, s0 : s0 + seg])
      q, k, v = map(heads, qkv(xs))
      # h = M*_{t-1}(q_r): the memory at the segment start (W_0 before the first write), read only.
      w = p["mem"]["w0"] if not state["started"][bi] else jax.tree.map(lambda a: np.asarray(a[bi]), state["w"])
      q_r = unit(heads(silu(rms(xs) @ p["wr"])))
      retrieved = np.stack(
        [
          np.asarray(
            model.apply(
              jax.tree.map(lambda a: a[hh], w),
              {"ln_scale": ln["ln_scale"][hh], "ln_bias": ln["ln_bias"][hh]},
              q_r[:, hh],
            )
          )
          for hh in range(h)
        ],
        axis=1,
      )  # [seg, H, Dh]
      _, k_h, v_h = map(heads, qkv(retrieved.reshape(seg, d)))
      # y = Attn([p | h | S]): query i sees p (no position), h_j and S_j for real j <= i.
      for i in range(seg):
        o = []
        for hh in range(h):
          seen = [j for j in range(i + 1) if valid[j]]
          qi = rope_np(q[i, hh], i)
          logits = [q[i, hh] @ pa["persistent"]["k"][n, hh] for n in range(n_p)]
          logits += [qi @ rope_np(k_h[j, hh], j) for j in seen] + [qi @ rope_np(k[j, hh], j) for j in seen]
          values = np.concatenate([pa["persistent"]["v"][:, hh], v_h[seen, hh], v[seen, hh]])
          o.append(softmax_np(np.array(logits) / np.sqrt(dh), values))
        y[bi, i] = np.concatenate(o) @ pa["wo"]
    # M_t = M_{t-1} written with y; m: its reads; o = y * sigmoid(m).
    m, state = jax.jit(mem.apply)(params["mem"], state, jnp.asarray(y), mask[:, s0 : s0 + seg])
    out[:, s0 : s0 + seg] = y / (1.0 + np.exp(-np.asarray(m)))
  return out, state


@pytest.mark.slow  # 30 s; MAC's carry and forms run in `make test` (tests/memories)
def test_mac_matches_its_equations():
  """Three segments of 8 (two memory chunks each), 3 persistent tokens, a masked tail in one lane."""
  cfg = _cfg("titans_mac")
  mixer = build_mixer(cfg)
  with jax.enable_x64(True):
    params = _f64(mixer.init_params(jax.random.PRNGKey(0)))
    x = _f64(jax.random.normal(jax.random.PRNGKey(1), (2, 24, 32)))
    mask = jnp.arange(24)[None, :] < jnp.array([[13], [24]])
    y, state = jax.jit(mixer.apply)(params, _f64(mixer.init_state(2)), x, mask)
    y_ref, mem_ref = _mac_reference(cfg, params, x, mask)
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-9, atol=1e-9)
    jax.tree.map(lambda a, r: np.testing.assert_allclose(a, r, rtol=1e-9, atol=1e-9), state["mem"], mem_ref)


def test_mac_masked_tail_changes_no_state():
  """Padding (whatever it holds) leaves the state as the real tokens left it."""
  mixer = build_mixer(_cfg("titans_mac"))
  with jax.enable_x64(True):
    params = _f64(mixer.init_params(jax.random.PRNGKey(0)))
    x = _f64(jax.random.normal(jax.random.PRNGKey(2), (2, 24, 32)))
    other = jnp.where(jnp.arange(24)[None, :, None] < 13, x, 5.0 * jnp.flip(x, axis=1))
    mask = jnp.arange(24)[None, :] < 13
    mask = jnp.broadcast_to(mask, (2, 24))
    apply = jax.jit(mixer.apply)
    state = _f64(mixer.init_state(2))
    _, s_full = apply(params, state, x, mask)
    _, s_other = apply(params, state, other, mask)
    _, s_short = apply(params, state, x[:, :16], mask[:, :16])
    for s in (s_other, s_short):
      jax.tree.map(lambda a, r: np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12), s, s_full)


@pytest.mark.parametrize("name", VARIANTS)
def test_outputs_do_not_see_later_tokens(name):
  """Changing token 10 leaves outputs 0..9 as they were and changes 10 onwards."""
  mixer = build_mixer(_cfg(name))
  params = mixer.init_params(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(3), (1, 16, 32))
  changed = x.at[:, 10].add(1.0)
  apply = jax.jit(mixer.apply)
  mask = jnp.ones((1, 16), bool)
  y, _ = apply(params, mixer.init_state(1), x, mask)
  y2, _ = apply(params, mixer.init_state(1), changed, mask)
  np.testing.assert_allclose(y2[:, :10], y[:, :10], rtol=0, atol=1e-6)
  assert np.abs(np.asarray(y2[:, 10:] - y[:, 10:])).max(axis=-1).min() > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_variants_learn_in_the_byte_lm(name):
  """A random sequence seen again and again: the loss is finite and falls."""
  cfg = tiny_config(mixer_config(name, window=8, chunk=8, persistent_tokens=2))
  learner = build_learner(with_fields(cfg, data=dict(batch=2)))
  state = learner.init(jax.random.PRNGKey(0))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, cfg.data.seq + 1), 0, 256)
  batch = Chunk(tokens=tokens, mask=jnp.ones((2, cfg.data.seq), bool))
  step = jax.jit(learner.step)
  losses = []
  for _ in range(10):
    state, metrics = step(state, batch)
    losses.append(float(metrics.nll / metrics.count))
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.8 * losses[0], losses
