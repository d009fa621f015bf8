"""Optimizers as memories, each against a plain float64 reference loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contlearn import optim

RNG = np.random.default_rng(0)
A = RNG.normal(size=(6, 5))
B = RNG.normal(size=(6, 4))
W0 = RNG.normal(size=(5, 4))
STEPS = 12


def quad_grad(w):
  """Gradient of 0.5 ||A W - B||^2 (float64 numpy or jax)."""
  return A.T @ (A @ w - B)


def run_rule(rule, steps=STEPS):
  """The rule in a jitted scan on the quadratic; returns every iterate."""
  a, b = jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32)

  def step(carry, _):
    params, state = carry
    g = {"w": a.T @ (a @ params["w"] - b)}
    updates, state = rule.update(g, state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), params["w"]

  params = {"w": jnp.asarray(W0, jnp.float32)}
  _, ws = jax.jit(lambda p: jax.lax.scan(step, (p, rule.init(p)), None, length=steps))(params)
  return np.asarray(ws)


def close(fast, ref, tol=2e-4):
  np.testing.assert_allclose(fast, np.stack(ref), rtol=tol, atol=tol)


def test_momentum_is_a_memory_of_gradients():
  w, m, ref = W0.copy(), np.zeros_like(W0), []
  for _ in range(STEPS):
    m = 0.8 * m - 0.01 * quad_grad(w)
    w = w + m
    ref.append(w)
  close(run_rule(optim.momentum(alpha=0.8, lr=0.01)), ref)


def test_preconditioned_momentum():
  w, m, v, ref = W0.copy(), np.zeros_like(W0), np.zeros_like(W0), []
  for _ in range(STEPS):
    g = quad_grad(w)
    v = 0.99 * v + 0.01 * g * g
    m = 0.9 * m - 0.01 * g / (np.sqrt(v) + 1e-8)
    w = w + m
    ref.append(w)
  close(run_rule(optim.preconditioned_momentum(alpha=0.9, lr=0.01, b2=0.99)), ref)


def test_delta_momentum_erases_along_the_gradient():
  w, m, ref = W0.copy(), np.zeros_like(W0), []
  for _ in range(STEPS):
    g = quad_grad(w)
    k = g / np.linalg.norm(g)
    m = 0.9 * m - 0.7 * k * np.sum(k * m) - 0.01 * g
    w = w + m
    ref.append(w)
  close(run_rule(optim.delta_momentum(alpha=0.9, lr=0.01, beta=0.7)), ref)


def _ns_np(x, steps=5, coeffs=optim.newton_schulz.MUON_COEFFS):
  t = x.shape[0] > x.shape[1]
  x = x.T if t else x
  x = x / (np.linalg.norm(x) + 1e-8)
  a, b, c = coeffs
  for _ in range(steps):
    g = x @ x.T
    x = a * x + (b * g + c * g @ g) @ x
  return x.T if t else x


def test_newton_schulz_orthogonalises():
  for shape in [(5, 4), (4, 7), (16, 16)]:
    x = RNG.normal(size=shape)
    fast = np.asarray(optim.orthogonalize(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(fast, _ns_np(x), rtol=1e-4, atol=1e-4)
    singular = np.linalg.svd(fast, compute_uv=False)
    assert singular.min() > 0.5 and singular.max() < 1.5  # the quintic's band around 1
    u, _, vt = np.linalg.svd(x, full_matrices=False)
    assert np.sum(fast * (u @ vt)) / np.linalg.norm(fast) / np.linalg.norm(u @ vt) > 0.95


def test_muon_equals_optax_muon_direction():
  """Linear momentum + Newton-Schulz output is Muon (optax's, without Nesterov)."""
  from optax.contrib import muon

  # For W [5, 4] optax's width scaling sqrt(max(1, fan_out / fan_in)) is 1.
  reference = muon(learning_rate=0.02, beta=0.9, nesterov=False)
  np.testing.assert_allclose(run_rule(optim.muon(lr=0.02, beta=0.9)), run_rule(reference), rtol=1e-4, atol=1e-5)


def test_m3_matches_algorithm_loop():
  lr, b1, b2, b3, alpha, period = 0.01, 0.9, 0.5, 0.8, 0.5, 3
  w = W0.copy()
  m1, v, m2, pending, o2 = (np.zeros_like(W0) for _ in range(5))
  ref = []
  for t in range(1, STEPS + 1):
    g = quad_grad(w)
    m1 += b1 * g
    v += b2 * g * g
    pending += g
    if t % period == 0:
      m2 += b3 * pending
      o2 = _ns_np(m2)
      pending = np.zeros_like(W0)
    w = w - lr * (_ns_np(m1) + alpha * o2) / (np.sqrt(v) + 1e-8)
    ref.append(w)
  rule = optim.m3(lr=lr, b1=b1, b2=b2, b3=b3, alpha=alpha, period=period)
  close(run_rule(rule), ref, tol=1e-3)


def test_dgd_token_and_batched_forms():
  w = RNG.normal(size=(3, 4))
  x = RNG.normal(size=4)
  x /= np.linalg.norm(x)
  u = RNG.normal(size=3)
  expected = w @ (np.eye(4) - np.outer(x, x)) - 0.1 * np.outer(u, x)
  token = np.asarray(optim.dgd_token(jnp.asarray(w), jnp.asarray(x), jnp.asarray(u), 0.1))
  np.testing.assert_allclose(token, expected, rtol=1e-5, atol=1e-6)
  # The delta property: after the write, the memory returns exactly -lr u for x.
  np.testing.assert_allclose(token @ x, -0.1 * u, rtol=1e-5, atol=1e-6)
  # The transformation at n = 1 takes the same step.
  rule = optim.delta_gradient_descent(lr=0.1)
  params = {"w": jnp.asarray(w), "b": jnp.ones(3)}
  grads = {"w": jnp.asarray(np.outer(u, x)), "b": jnp.asarray(u)}
  updates, _ = rule.update(grads, rule.init(params), params, inputs={"w": jnp.asarray(x[None]), "b": None})
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.asarray(new["w"]), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(new["b"]), 1 - 0.1 * u, rtol=1e-6)


def test_deep_momentum_matches_hand_derived_loop():
  rule = optim.deep_momentum(lr=0.01, alpha=0.9, inner_lr=0.5, hidden=3, seed=1)
  phi0 = rule.init({"w": jnp.zeros((5, 4))}).phi["w"]
  phi = {k: np.asarray(v, np.float64) for k, v in phi0.items()}
  mu = {k: np.zeros_like(v) for k, v in phi.items()}
  w, ref = W0.copy(), []
  for _ in range(STEPS):
    u = quad_grad(w)
    h = np.tanh(u[..., None] * phi["w1"] + phi["b1"])
    out = phi["a"] * u + np.sum(h * phi["w2"], -1)
    r = (out - u) / u.size
    dh = r[..., None] * phi["w2"] * (1 - h * h)
    grad = {
      "a": np.sum(r * u),
      "w1": np.sum(dh * u[..., None], axis=(0, 1)),
      "b1": np.sum(dh, axis=(0, 1)),
      "w2": np.sum(r[..., None] * h, axis=(0, 1)),
    }
    mu = {k: 0.9 * mu[k] - 0.5 * grad[k] for k in phi}
    phi = {k: phi[k] + mu[k] for k in phi}
    h = np.tanh(u[..., None] * phi["w1"] + phi["b1"])
    w = w - 0.01 * (phi["a"] * u + np.sum(h * phi["w2"], -1))
    ref.append(w)
  close(run_rule(rule), ref, tol=5e-4)


# Rates on each rule's own scale: a momentum memory sums ~1/(1 - alpha) gradients,
# delta-rule momentum erases that sum along the gradient, and muon/m3 steps are
# orthogonalised (unit spectral norm) before the rate applies.
OUTER_RATES = {
  "momentum_memory": 3e-3,
  "delta_momentum": 3e-2,
  "preconditioned_momentum": 3e-4,
  "muon": 3e-2,
  "m3": 3e-3,
  "deep_momentum": 3e-2,
}


@pytest.mark.parametrize(  # make test: Muon and M3 (each rule's own values are checked above); all in make test-all
  "name", [n if n in ("muon", "m3") else pytest.param(n, marks=pytest.mark.slow) for n in sorted(OUTER_RATES)]
)
def test_each_optimizer_trains_the_language_model_as_its_outer_level(name):
  from tiny import tiny_config, with_fields

  from contlearn.engine import scan
  from contlearn.learner import build_learner
  from contlearn.stream import DocumentLanes, split_bytes

  cfg = with_fields(tiny_config(), train=dict(optimizer=name, lr=OUTER_RATES[name]))
  learner = build_learner(cfg)
  text = b"to be or not to be, that is the question. " * 200
  stream = DocumentLanes(split_bytes(text, 8), steps=48, batch=8, seq=16)
  chunk, _ = stream.next(stream.start())
  state = learner.init(jax.random.PRNGKey(0))
  _, metrics = jax.jit(lambda s, c: scan(learner, s, c))(state, chunk)
  per_step = np.asarray(metrics.nll / metrics.count)
  assert np.all(np.isfinite(per_step))
  assert per_step[-8:].mean() < per_step[:8].mean() - 0.5
