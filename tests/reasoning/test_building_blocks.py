"""Stablemax, AdamATan2, sign-SGD and the weights' EMA against NumPy loops of their formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contlearn.reasoning import adam_atan2, ema_params, sign_sgd, stablemax_cross_entropy, with_ema
from contlearn.reasoning.segments import answer_terms


def _stablemax_ce(logits, label):
  s = np.where(logits >= 0, logits + 1.0, 1.0 / (1.0 - logits))
  return -np.log(s[label] / s.sum())


def test_stablemax_cross_entropy_is_its_formula():
  rng = np.random.default_rng(0)
  logits = (rng.normal(size=(3, 4, 7)) * 5).astype(np.float32)
  labels = rng.integers(0, 7, size=(3, 4))
  got = np.asarray(stablemax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))
  want = np.array([[_stablemax_ce(logits[i, j].astype(np.float64), labels[i, j]) for j in range(4)] for i in range(3)])
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_stablemax_gradient_is_finite_at_large_logits_and_differs_from_softmax():
  logits = jnp.array([60.0, -60.0, 0.0])
  grad = jax.grad(lambda x: stablemax_cross_entropy(x, jnp.array(1)))(logits)
  assert np.isfinite(np.asarray(grad)).all()
  # x = 60 has s = 61, x = 0 has s = 1: p = 61 / (61 + 1/61 + 1), far from softmax's ~1
  p0 = np.exp(-float(stablemax_cross_entropy(logits, jnp.array(0))))
  assert p0 == pytest.approx(61 / (61 + 1 / 61 + 1), rel=1e-6)


def _adam_atan2_numpy(grads, p, lr, b1, b2, wd, a, b):
  m, v, out = np.zeros_like(p), np.zeros_like(p), []
  for t, g in enumerate(grads, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step = a * np.arctan2(m / (1 - b1**t), b * np.sqrt(v / (1 - b2**t)))
    p = p - lr * (step + wd * p)
    out.append(p)
  return out


@pytest.mark.parametrize("a, b, wd", [(1.0, 1.0, 0.0), (1.27, 2.0, 0.5)])
def test_adam_atan2_is_its_numpy_loop(a, b, wd):
  rng = np.random.default_rng(1)
  grads = rng.normal(size=(6, 5)).astype(np.float64)
  grads[2, 1] = 0.0  # a zero gradient on a zero first moment is not a NaN
  p0 = rng.normal(size=5)
  want = _adam_atan2_numpy(grads, p0, 0.05, 0.9, 0.95, wd, a, b)
  rule = adam_atan2(0.05, 0.9, 0.95, weight_decay=wd, a=a, b=b)
  params = jnp.asarray(p0, jnp.float32)
  state = rule.init(params)
  for g, w in zip(grads, want):
    updates, state = rule.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params), w, rtol=1e-5, atol=1e-6)
  assert int(state.count) == 6


def test_adam_atan2_zero_gradient_from_the_start_is_a_zero_step():
  rule = adam_atan2(0.1)
  updates, _ = rule.update(jnp.zeros(3), rule.init(jnp.ones(3)), jnp.ones(3))
  assert np.asarray(updates).tolist() == [0.0, 0.0, 0.0]


def test_sign_sgd_moves_touched_rows_by_sign_and_decay_and_leaves_the_others():
  rng = np.random.default_rng(2)
  table = rng.normal(size=(4, 3)).astype(np.float32)
  grad = np.zeros((4, 3), np.float32)
  grad[1] = [0.3, -2.0, 0.0]  # a touched row, one entry of it exactly zero
  grad[3] = [-1e-3, 5.0, 1.0]
  lr, wd = 0.1, 0.5
  want = table.copy()
  for i in (1, 3):
    want[i] = table[i] * (1 - lr * wd) - lr * np.sign(grad[i])
  rule = sign_sgd(lr, weight_decay=wd)
  updates, _ = rule.update(jnp.asarray(grad), rule.init(jnp.asarray(table)), jnp.asarray(table))
  new = np.asarray(optax.apply_updates(jnp.asarray(table), updates))
  np.testing.assert_allclose(new, want, rtol=1e-6)
  assert (new[[0, 2]] == table[[0, 2]]).all()  # untouched rows bit-equal


def test_ema_follows_the_parameters_as_a_numpy_loop():
  rng = np.random.default_rng(3)
  grads = rng.normal(size=(5, 4)).astype(np.float32)
  rate, lr = 0.8, 0.3
  p = rng.normal(size=4).astype(np.float64)
  ema = p.copy()
  rule = with_ema(optax.sgd(lr), rate)
  params = jnp.asarray(p, jnp.float32)
  state = rule.init(params)
  for g in grads:
    p = p - lr * g
    ema = rate * ema + (1 - rate) * p
    updates, state = rule.update(jnp.asarray(g), state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.asarray(params), p, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(ema_params(state)), ema, rtol=1e-5)
  assert not np.allclose(ema, p)  # the average lags the parameters


def test_answer_terms_leave_the_ignored_label_out_of_the_loss_and_of_exactness():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 3)), jnp.float32)
  predicted = np.argmax(np.asarray(logits), axis=-1)
  labels = predicted.copy()
  labels[0, :2] = 0  # row 0: two padding tokens (label 0), wherever the prediction is
  labels[1, 3] = (predicted[1, 3] + 1) % 3  # row 1: one counted token wrong
  labels[0, 2:] = np.where(predicted[0, 2:] == 0, 1, predicted[0, 2:])  # row 0's counted tokens: never 0
  logits = logits.at[0, 2:].set(jax.nn.one_hot(labels[0, 2:], 3) * 5)  # and predicted right
  terms = answer_terms(logits, jnp.asarray(labels), ignore_label=0)
  assert np.asarray(terms.exact).tolist() == [True, False]
  assert np.asarray(terms.counted).sum() == 6 and not np.asarray(terms.correct)[0, :2].any()
  ce = np.asarray(stablemax_cross_entropy(logits, jnp.asarray(labels)), np.float64)
  by_hand = (ce[0, 2:].mean() + ce[1].mean()) / 2  # each row's counted tokens, then rows
  np.testing.assert_allclose(float(terms.loss), by_hand, rtol=1e-6)
  everything = answer_terms(logits, jnp.asarray(labels), ignore_label=-1)
  np.testing.assert_allclose(float(everything.loss), ce.mean(), rtol=1e-6)
  assert np.asarray(everything.exact).tolist() == [bool((predicted[0] == labels[0]).all()), False]
