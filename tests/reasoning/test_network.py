"""The recursive models' network f: both mixers against a slow float64 NumPy reference, configs, learners."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reasoning_fixtures import TRM_CFG

from contlearn import engine
from contlearn.field_checks import FieldError
from contlearn.puzzles.feed import PuzzleBlock
from contlearn.reasoning import hrm, trm
from contlearn.reasoning.network import init_network, network, self_attention

ATTENTION_CFG = dataclasses.replace(TRM_CFG, width=12, layers=2, mixer="attention", heads=3)
CLOSE = dict(rtol=1e-5, atol=1e-5)  # float32 against float64


def _rms(x):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6)


def _swiglu(p, x):
  gate_up = x @ np.float64(p["gate_up"])
  hidden = gate_up.shape[-1] // 2
  gate, up = gate_up[..., :hidden], gate_up[..., hidden:]
  return (gate / (1 + np.exp(-gate)) * up) @ np.float64(p["down"])


def _rotate(vec, position):
  """RoPE of one head vector `[Dh]` at `position`: pair (i, i + Dh/2) turned by `position 10000^(-i / (Dh/2))`."""
  half = vec.shape[0] // 2
  out = np.empty_like(vec)
  for i in range(half):
    angle = position * 10000.0 ** (-i / half)
    c, s = math.cos(angle), math.sin(angle)
    out[i] = vec[i] * c - vec[i + half] * s
    out[i + half] = vec[i] * s + vec[i + half] * c
  return out


def _attention(p, h):
  """Per row, per head: q, k rotated at their positions, softmax over every key, then the output projection."""
  b, s, d = h.shape
  w_qkv, w_out = np.float64(p["qkv"]), np.float64(p["out"])  # [D, 3, H, Dh], [H, Dh, D]
  heads, dh = w_qkv.shape[2], w_qkv.shape[3]
  out = np.zeros((b, s, d))
  for row in range(b):
    for head in range(heads):
      q = np.stack([_rotate(h[row, t] @ w_qkv[:, 0, head], t) for t in range(s)])
      k = np.stack([_rotate(h[row, t] @ w_qkv[:, 1, head], t) for t in range(s)])
      v = h[row] @ w_qkv[:, 2, head]
      logits = q @ k.T / math.sqrt(dh)
      weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
      weights /= weights.sum(axis=-1, keepdims=True)
      out[row] += (weights @ v) @ w_out[head]
  return out


def _network(blocks, h):
  for block in blocks:
    if "attention" in block:
      mixed = _attention(block["attention"], h)
    else:
      mixed = np.swapaxes(_swiglu(block["tokens"], np.swapaxes(h, -1, -2)), -1, -2)
    h = _rms(h + mixed)
    h = _rms(h + _swiglu(block["channels"], h))
  return h


def _inputs(cfg, key=0):
  return jax.random.normal(jax.random.key(key), (2, cfg.tokens, cfg.width), jnp.float32)


def test_self_attention_matches_the_float64_reference():
  blocks = init_network(jax.random.key(0), ATTENTION_CFG)
  h = _inputs(ATTENTION_CFG)
  got = jax.jit(self_attention)(blocks[0]["attention"], h)
  np.testing.assert_allclose(np.asarray(got), _attention(blocks[0]["attention"], np.float64(h)), **CLOSE)


@pytest.mark.parametrize(
  "cfg", [ATTENTION_CFG, dataclasses.replace(ATTENTION_CFG, mixer="mlp")], ids=["attention", "mlp"]
)
def test_the_network_matches_the_float64_reference(cfg):
  blocks = init_network(jax.random.key(1), cfg)
  h = _inputs(cfg, key=2)
  want = _network(blocks, np.float64(h))
  np.testing.assert_allclose(np.asarray(jax.jit(network)(blocks, h)), want, **CLOSE)


def test_attention_sees_positions_through_rope():
  # Swapping two input positions changes the outputs at other positions only through RoPE's angles.
  blocks = init_network(jax.random.key(3), ATTENTION_CFG)
  h = _inputs(ATTENTION_CFG, key=4)
  swapped = h.at[:, [1, 2]].set(h[:, [2, 1]])
  out, out_swapped = (np.asarray(jax.jit(self_attention)(blocks[0]["attention"], x)) for x in (h, swapped))
  assert not np.allclose(out[:, 0], out_swapped[:, 0], **CLOSE)


def test_the_attention_parameters_and_their_shapes():
  blocks = init_network(jax.random.key(0), ATTENTION_CFG)
  assert len(blocks) == 2 and set(blocks[0]) == {"attention", "channels"}
  assert blocks[0]["attention"]["qkv"].shape == (12, 3, 3, 4) and blocks[0]["attention"]["out"].shape == (3, 4, 12)


def test_the_config_refuses_bad_mixers_and_heads():
  with pytest.raises(FieldError, match="mixer='conv': must be one of mlp, attention"):
    dataclasses.replace(TRM_CFG, mixer="conv")
  with pytest.raises(FieldError, match="heads=3: must be a divisor of width=8 into even head widths"):
    dataclasses.replace(TRM_CFG, mixer="attention", heads=3)
  with pytest.raises(FieldError, match="heads=0"):
    dataclasses.replace(TRM_CFG, heads=0)
  assert dataclasses.replace(TRM_CFG, width=9).heads == 2  # the MLP mixer does not read heads


@pytest.mark.slow  # a learner step compiled per model: make test-all
@pytest.mark.parametrize("model", ["trm", "hrm"])
def test_a_learner_with_attention_runs_a_compiled_block(model):
  if model == "trm":
    cfg, make = ATTENTION_CFG, trm.trm_learner
  else:
    cfg, make = hrm.HRMConfig(vocab=5, length=6, puzzles=4, width=8, layers=1, mixer="attention"), hrm.hrm_learner
  learner, steps, batch = make(cfg, batch=3), 2, 3
  state = engine.init(learner, jax.random.key(0))
  keys = jax.random.split(jax.random.key(1), 2)
  inputs = jax.random.randint(keys[0], (steps, batch, cfg.length), 0, cfg.vocab)
  block = PuzzleBlock(
    inputs, jax.random.randint(keys[1], inputs.shape, 1, cfg.vocab), jnp.zeros((steps, batch), jnp.int32)
  )
  state, metrics = engine.compile(learner, state)(state, engine.place_xs(block))
  assert metrics.loss.shape == (steps,) and np.isfinite(np.asarray(metrics.loss)).all()
  assert state.memory.y.shape == (batch, cfg.tokens, cfg.width)
  net = state.params["net"] if model == "trm" else state.params["net"]["low"]
  assert net[0]["attention"]["qkv"].shape == (cfg.width, 3, cfg.heads, cfg.width // cfg.heads)
