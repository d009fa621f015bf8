"""The papers' recurrences, written out in NumPy, against the public API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.memories.core import InnerModel, MemState, Rule, squared_loss
from contlearn.mixer_configs import mixer_config
from contlearn.models import build_mixer


def _inputs(t=21, d=5, seed=0):
  r = np.random.default_rng(seed)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  return unit(r.normal(size=(t, d))), unit(r.normal(size=(t, d))), r.normal(size=(t, d)), r


def test_gated_deltanet_paper_form():
  """S_t = S_{t-1} a_t (I - b_t k_t k_t^T) + b_t v_t k_t^T, o_t = S_t q_t (S: [Dv, Dk])."""
  q, k, v, r = _inputs()
  a, b = r.uniform(0.7, 1.0, 21), r.uniform(0.1, 0.9, 21)
  s, out = np.zeros((5, 5)), []
  for t in range(21):
    s = s @ (a[t] * (np.eye(5) - b[t] * np.outer(k[t], k[t]))) + b[t] * np.outer(v[t], k[t])
    out.append(s @ q[t])
  with jax.enable_x64(True):
    rule = memories.RULES["gated_deltanet"]
    state = MemState(
      {"w": [jnp.zeros((5, 5))], "b": [jnp.zeros((5,))]}, {"w": [jnp.zeros((5, 5))], "b": [jnp.zeros((5,))]}
    )
    rates = memories.Rates(jnp.asarray(b), jnp.asarray(a), jnp.ones(21))
    y, st = memories.chunked(rule, {}, state, q, k, v, rates, jnp.ones(21, bool), 8)
  np.testing.assert_allclose(y, np.stack(out), rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(st.w["w"][0], s.T, rtol=1e-10, atol=1e-10)


def test_titans_paper_form_linear_memory():
  """Titans with a linear memory M(x) = x W, chunks of C = 4:
  S_t = eta_t S_{t-1} - theta_t grad |M_{t'}(k_t) - v_t|^2,  M_t = (1 - alpha_t) M_{t-1} + S_t."""
  q, k, v, r = _inputs(seed=1)
  theta, eta, alpha = r.uniform(0.05, 0.3, 21), r.uniform(0.3, 0.9, 21), r.uniform(0.0, 0.3, 21)
  w, mom, out = r.normal(size=(5, 5)) * 0.3, np.zeros((5, 5)), []
  w0 = w.copy()
  for t in range(21):
    if t % 4 == 0:
      anchor = w.copy()
    grad = 2 * np.outer(k[t], k[t] @ anchor - v[t])
    mom = eta[t] * mom - theta[t] * grad
    w = (1 - alpha[t]) * w + mom
    out.append(q[t] @ w)
  with jax.enable_x64(True):
    rule = Rule(InnerModel(depth=1, bias=False), squared_loss, momentum=True)
    zeros = {"w": [jnp.zeros((5, 5))], "b": [jnp.zeros((5,))]}
    state = MemState({"w": [jnp.asarray(w0)], "b": [jnp.zeros((5,))]}, zeros)
    rates = memories.Rates(jnp.asarray(theta), jnp.asarray(1 - alpha), jnp.asarray(eta))
    for form in (memories.reference, memories.chunked):
      y, st = form(rule, {}, state, q, k, v, rates, jnp.ones(21, bool), 4)
      np.testing.assert_allclose(y, np.stack(out), rtol=1e-10, atol=1e-10)
      np.testing.assert_allclose(st.w["w"][0], w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
  "name, qk_act, output_gate",
  [
    ("deltanet", "silu", True),
    ("gated_deltanet", "silu", True),
    pytest.param("deltanet", "identity", True, marks=pytest.mark.slow),  # the switches one at a time: make test-all
    pytest.param("deltanet", "silu", False, marks=pytest.mark.slow),
  ],
)
def test_delta_rule_layer_paper_form(name, qk_act, output_gate):
  """The whole mixer: q, k, v = phi(conv(rms(x) W)) (phi = silu for v, and
  silu or the identity for q and k: `qk_act`), q and k unit per head,
  beta = sigmoid(rms(x) w_b + b_b) in (0, 1) (and alpha = 1 - sigmoid(.) for the
  gated form), S_t = S_{t-1} alpha_t (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,
  o_t = S_t q_t, then per-head RMS norm, output gate (if `output_gate`) and projection."""
  d, h, t = 8, 2, 11
  dh = d // h
  cfg = ModelConfig(
    mixer=mixer_config(name, chunk=4, qk_act=qk_act, output_gate=output_gate), d_model=d, n_heads=h, n_layers=1
  )
  with jax.enable_x64(True):
    mixer = build_mixer(cfg)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), mixer.init_params(jax.random.PRNGKey(0)))
    r = np.random.default_rng(3)
    params["conv"] = jnp.asarray(r.normal(size=params["conv"].shape))  # not the identity of the init
    params["wr"] = jnp.asarray(r.normal(size=params["wr"].shape))
    x = r.normal(size=(1, t, d))
    state = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, mixer.init_state(1))
    y, _ = mixer.apply(params, state, jnp.asarray(x), jnp.ones((1, t), bool))
  p = {key: np.asarray(val) for key, val in params.items()}
  silu = lambda z: z / (1 + np.exp(-z))
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  rms = lambda z: z / np.sqrt(np.mean(z**2, axis=-1, keepdims=True) + 1e-6)
  xn = rms(x[0]) * p["norm"]
  pre = np.concatenate([np.zeros((3, 3 * d)), xn @ p["wqkv"]])
  qkv = sum(pre[i : i + t] * p["conv"][i] for i in range(4))
  q, k, v = (a.reshape(t, h, dh) for a in np.split(qkv, 3, axis=-1))
  q, k, v = (silu(q), silu(k), silu(v)) if qk_act == "silu" else (q, k, silu(v))
  q, k = (a / np.sqrt(np.sum(a**2, axis=-1, keepdims=True) + 1e-6) for a in (q, k))
  z = xn @ p["wr"] + p["br"]
  beta = sigmoid(z[:, :h])
  alpha = 1 - sigmoid(z[:, h:]) if name == "gated_deltanet" else np.ones((t, h))
  assert np.all((beta > 0) & (beta < 1))
  out = np.zeros((t, h, dh))
  for head in range(h):
    s = np.zeros((dh, dh))  # [Dv, Dk]
    for i in range(t):
      kk, bb = k[i, head], beta[i, head]
      s = s @ (alpha[i, head] * (np.eye(dh) - bb * np.outer(kk, kk))) + bb * np.outer(v[i, head], kk)
      out[i, head] = s @ q[i, head]
  assert ("wg" in p) == output_gate
  o = (rms(out) * p["out_norm"]).reshape(t, d)
  o = o * silu(xn @ p["wg"]) if output_gate else o
  np.testing.assert_allclose(np.asarray(y[0]), o @ p["wo"], rtol=1e-9, atol=1e-9)
