"""The normalised inner step: its curvature bound against autodiff Jacobians,
and the step it gives against its closed form."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.memories import core, dual
from contlearn.memories.core import InnerModel, MemState, Rates, Rule, half_squared_loss, squared_loss


def _random_weights(model, dk, seed, scale=1.0):
  key = jax.random.PRNGKey(seed)
  w = model.init(key, dk, dk)
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda a: jnp.asarray(scale * (np.asarray(a) + 0.3 * rng.standard_normal(a.shape)), jnp.float64), w
  )


@pytest.mark.parametrize(
  "depth,bias,residual,loss,dgd",
  [
    (1, False, False, half_squared_loss, False),
    (1, True, True, squared_loss, True),
    (2, False, True, half_squared_loss, True),
    (2, True, False, squared_loss, False),
  ],
)
def test_curvature_is_the_gauss_newton_bound(depth, bias, residual, loss, dgd):
  """With the target met, kappa = c (|J_last J_last^T|_2 + trace(J_first J_first^T)) (+ the DGD Hessian)."""
  with jax.enable_x64(True):
    model = InnerModel(depth=depth, expansion=3, bias=bias, residual=residual)
    rule = Rule(model, loss, dgd=dgd, normalized=True)
    w = _random_weights(model, 5, depth + 2 * bias, scale=2.0)
    k = jnp.asarray(np.random.default_rng(1).standard_normal(5))
    jac = jax.jacrev(lambda p: model.apply(p, {}, k))(w)  # leaves [Dv, *param shape]
    flat = lambda layer: np.concatenate(
      [np.asarray(jac[n][layer]).reshape(5, -1) for n in ("w", "b") if bias or n == "w"], 1
    )
    last = flat(depth - 1)
    expected = np.linalg.eigvalsh(last @ last.T).max()
    if depth == 2:
      expected += np.trace(flat(0) @ flat(0).T)
    expected *= core.LOSS_CURVATURE[loss]
    if dgd:
      z = lambda p: core.first_preactivation(model, p, {}, k)
      jz = jax.jacrev(z)(w)
      jz = np.concatenate(
        [np.asarray(jz[n][0]).reshape(jz["w"][0].shape[0], -1) for n in ("w", "b") if bias or n == "w"], 1
      )
      expected += np.linalg.eigvalsh(jz @ jz.T).max()
    v = model.apply(w, {}, k)  # a target already met: no second-order term
    np.testing.assert_allclose(float(core.curvature(rule, {}, w, k, v)), expected, rtol=1e-10)


@pytest.mark.parametrize("seed", [0, *(pytest.param(i, marks=pytest.mark.slow) for i in (1, 2, 3))])
@pytest.mark.parametrize(  # the case with a bias, a self target and DGD by default; the others in `make test-all`
  "bias,self_target,dgd",
  [
    pytest.param(False, False, False, marks=pytest.mark.slow),
    (True, True, True),
    pytest.param(False, True, True, marks=pytest.mark.slow),
  ],
)
def test_curvature_bounds_the_whole_hessian(seed, bias, self_target, dgd):
  """kappa >= the largest eigenvalue of the inner loss's Hessian (jax.hessian), errors large and small."""
  with jax.enable_x64(True):
    model = InnerModel(depth=2, expansion=2, bias=bias, residual=True)
    rule = Rule(model, half_squared_loss, dgd=dgd, self_target=self_target, normalized=True)
    rng = np.random.default_rng(seed)
    w = _random_weights(model, 4, seed, scale=float(rng.uniform(0.5, 4.0)))
    k = jnp.asarray(rng.standard_normal(4))
    v = jnp.asarray(rng.standard_normal(4) * 10.0 ** rng.uniform(-1, 2))
    target = model.apply(w, {}, v) if self_target else v
    flat, unravel = jax.flatten_util.ravel_pytree(w)

    def loss(f):
      p = unravel(f)
      out = 0.5 * jnp.sum(jnp.square(model.apply(p, {}, k) - target))
      return out + (0.5 * jnp.sum(jnp.square(core.first_preactivation(model, p, {}, k))) if dgd else 0.0)

    top = np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(flat))).max()
    assert top <= float(core.curvature(rule, {}, w, k, v)) * (1 + 1e-9)
    if seed == 0 and not bias:  # a large error: the Gauss-Newton part alone (kappa with the target met) is too small
      met = k if self_target else model.apply(w, {}, k)
      assert float(core.curvature(rule, {}, w, k, met)) < top


def test_one_normalised_step_shrinks_a_matrix_memorys_error_by_one_plus_lr_k_squared():
  """Matrix memory, half squared loss, chunk 1: the error at k after the step is e / (1 + lr |k|^2), for any lr."""
  with jax.enable_x64(True):
    rule = Rule(InnerModel(depth=1), half_squared_loss, normalized=True)
    rng = np.random.default_rng(0)
    w = {"w": [jnp.asarray(rng.standard_normal((4, 4)))], "b": [jnp.zeros(4)]}
    k, v = jnp.asarray(rng.standard_normal((1, 4))), jnp.asarray(rng.standard_normal((1, 4)))
    for lr in (0.1, 1.0, 100.0):
      rates = Rates(jnp.full((1,), lr), jnp.ones(1), jnp.ones(1))
      _, state = core.reference(rule, {}, MemState(w, w), k, k, v, rates, jnp.ones(1, bool), 1)
      before = k[0] @ w["w"][0] - v[0]
      after = k[0] @ state.w["w"][0] - v[0]
      np.testing.assert_allclose(np.asarray(after), np.asarray(before) / (1 + lr * float(k[0] @ k[0])), rtol=1e-10)


def test_normalised_chunks_stay_finite_where_plain_ones_overflow():
  """Large second-layer weights: the plain chunked step diverges, the normalised one does not."""
  model = InnerModel(depth=2, expansion=4, residual=True)
  rng = np.random.default_rng(3)
  w = jax.tree.map(lambda a: 20.0 * a, model.init(jax.random.PRNGKey(0), 8, 8))
  zero = jax.tree.map(jnp.zeros_like, w)
  t = 256
  k = jnp.asarray(rng.standard_normal((t, 8)), jnp.float32)
  k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
  rates = Rates(jnp.full((t,), 0.05), jnp.ones(t), jnp.full((t,), 0.9))
  mask = jnp.ones(t, bool)
  ends = {}
  for normalized in (False, True):
    rule = Rule(model, half_squared_loss, momentum=True, normalized=normalized)
    y, _ = jax.jit(lambda: dual.chunked(rule, {}, MemState(w, zero), k, k, k, rates, mask, 16))()
    ends[normalized] = float(jnp.max(jnp.abs(y[-16:])))
  assert not np.isfinite(ends[False]) or ends[False] > 1e6
  assert ends[True] < 100.0


def test_normalised_step_rejects_what_it_cannot_bound():
  rule = Rule(InnerModel(depth=2, ttt_norm=True), squared_loss, normalized=True)
  with pytest.raises(ValueError, match="normalised step needs"):
    core.curvature(
      rule,
      {"ln_scale": jnp.ones(4), "ln_bias": jnp.zeros(4)},
      InnerModel(depth=2).init(jax.random.PRNGKey(0), 4, 4),
      jnp.ones(4),
      jnp.ones(4),
    )
