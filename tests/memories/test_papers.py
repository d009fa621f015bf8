"""The papers' recurrences, written out in NumPy, against the public API."""

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import memories
from contlearn.memories.core import InnerModel, MemState, Rule, squared_loss


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
    state = MemState({"w": [jnp.zeros((5, 5))], "b": [jnp.zeros((5,))]}, {"w": [jnp.zeros((5, 5))], "b": [jnp.zeros((5,))]})
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
