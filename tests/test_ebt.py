"""The Energy-Based Transformer: its inner step, its gradients, its attention pattern, replay, noise, best-of-N."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contlearn import evaluation, ring
from contlearn.field_checks import FieldError
from contlearn.learner import ebt_learner
from contlearn.models import ebt
from contlearn.stream.base import Chunk

TINY = ebt.EBTConfig(vocab=8, d_model=8, n_layers=1, n_heads=2, mlp_ratio=2, seq=4, steps=2, alpha=3.0)
# Compiled once per (config, steps, detach), so the tests stay fast.
think = jax.jit(ebt.think, static_argnums=(0, 5, 6))
energy = jax.jit(ebt.energy, static_argnums=0)
train_thought = jax.jit(ebt.train_thought, static_argnums=0)
init_params = jax.jit(ebt.init_params, static_argnums=0)


def tiny_inputs(cfg, b=2, seed=0):
  k_params, k_tokens, k_y = jax.random.split(jax.random.PRNGKey(seed), 3)
  params = init_params(TINY, k_params)  # the tests' configs differ only in the inner loop: the same parameters
  tokens = jax.random.randint(k_tokens, (b, cfg.seq), 0, cfg.vocab)
  y0 = jax.random.normal(k_y, (b, cfg.seq, cfg.vocab))
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), b)
  return params, tokens, y0, keys


def test_the_inner_step_is_an_optax_sgd_step_on_the_prediction_pytree():
  y = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5, 3.0]])}
  energy_fn = lambda z: jnp.sum(z["a"] ** 2) + jnp.sum(jnp.sin(z["b"]))  # noqa: E731
  stepped, e = ebt.descend(energy_fn, y, jnp.asarray(0.3), 0.0, jax.random.PRNGKey(0))
  rule = optax.sgd(0.3)
  updates, _ = rule.update(jax.grad(energy_fn)(y), rule.init(y))
  expected = optax.apply_updates(y, updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), stepped, expected)
  np.testing.assert_allclose(stepped["a"], [1.0 - 0.3 * 2.0, -2.0 + 0.3 * 4.0], rtol=1e-6)
  np.testing.assert_allclose(e, energy_fn(y), rtol=1e-6)


def test_one_step_of_the_model_descends_the_summed_energy_by_alpha():
  params, tokens, y0, keys = tiny_inputs(TINY)
  thought = think(TINY, params, tokens, y0, keys, TINY.steps, True)  # its first step
  grad = jax.jit(jax.grad(lambda y: jnp.sum(ebt.energy(TINY, params, tokens, y, jnp.asarray(0)))))(y0)
  np.testing.assert_allclose(thought.logits[0], y0 - TINY.alpha * grad, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(thought.energies[0], energy(TINY, params, tokens, y0, jnp.asarray(0)), rtol=1e-5)
  assert float(jnp.max(jnp.abs(grad))) > 0


def test_descending_on_probabilities_steps_from_the_softmax():
  """`descend_probs`: y1 = p0 - alpha dE/dp at p0 = softmax(y0) (the official normalize_initial_condition)."""
  cfg = dataclasses.replace(TINY, descend_probs=True)
  params, tokens, y0, keys = tiny_inputs(cfg)
  thought = think(cfg, params, tokens, y0, keys, cfg.steps, True)
  p0 = jax.nn.softmax(y0, axis=-1)
  grad = jax.jit(jax.grad(lambda p: jnp.sum(ebt.energy_of_probs(cfg, params, tokens, p, jnp.asarray(0)))))(p0)
  np.testing.assert_allclose(thought.logits[0], p0 - cfg.alpha * grad, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(thought.energies[0], energy(TINY, params, tokens, y0, jnp.asarray(0)), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("descend_probs", [False, True])
def test_outer_gradient_through_the_inner_steps_matches_finite_differences_in_float64(descend_probs):
  """No detach: the gradient includes the second-order term d(dE/dy)/dtheta."""
  cfg = dataclasses.replace(TINY, detach=False, langevin_std=0.3, alpha_jitter=2.0, descend_probs=descend_probs)
  with jax.enable_x64(True):
    params, tokens, y0, keys = tiny_inputs(cfg)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    y0 = y0.astype(jnp.float64)
    targets = jnp.roll(tokens, -1, axis=1)

    def loss(p):
      logits = think(cfg, p, tokens, y0, keys, cfg.steps, cfg.detach).logits
      labels = jnp.broadcast_to(targets[None], logits.shape[:-1])
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    grads = jax.grad(loss)(params)
    leaves, tree = jax.tree.flatten(params)
    keys_v = jax.random.split(jax.random.PRNGKey(5), len(leaves))
    direction = tree.unflatten([jax.random.normal(k, a.shape, jnp.float64) for k, a in zip(keys_v, leaves)])
    eps = 1e-6
    shifted = lambda s: jax.tree.map(lambda a, v: a + s * eps * v, params, direction)  # noqa: E731
    numeric = (loss(shifted(1.0)) - loss(shifted(-1.0))) / (2 * eps)
    analytic = sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)
    # alpha alone: its gradient exists only through the steps.
    d_alpha = (loss({**params, "alpha": params["alpha"] + eps}) - loss({**params, "alpha": params["alpha"] - eps})) / (
      2 * eps
    )
    np.testing.assert_allclose(grads["alpha"], d_alpha, rtol=1e-6)
    assert abs(float(d_alpha)) > 1e-8


def test_attention_mask_is_the_ebt_pattern():
  t = 5
  expected = np.zeros((2 * t, 2 * t), bool)
  for row in range(2 * t):
    for col in range(2 * t):
      row_pos, col_pos = row % t, col % t
      if row < t:  # a real token: causal over the real tokens
        expected[row, col] = col < t and col_pos <= row_pos
      else:  # a prediction: the real tokens up to its position, and itself
        expected[row, col] = (col < t and col_pos <= row_pos) or col == row
  np.testing.assert_array_equal(ebt.attention_mask(t), expected)


def test_a_prediction_energy_depends_on_its_own_candidate_and_earlier_tokens_only():
  params, tokens, y0, _ = tiny_inputs(TINY)
  e = energy(TINY, params, tokens, y0, jnp.asarray(0))
  y1 = y0.at[:, 2, 0].add(3.0)  # (adding to every logit would leave the softmax as it is)
  t1 = tokens.at[:, 3].set((tokens[:, 3] + 1) % TINY.vocab)
  e_y, e_t = energy(TINY, params, tokens, y1, jnp.asarray(0)), energy(TINY, params, t1, y0, jnp.asarray(0))
  changed = lambda a: np.abs(np.asarray(a - e)).max(axis=0) > 1e-5  # noqa: E731
  np.testing.assert_array_equal(changed(e_y), [False, False, True, False])
  np.testing.assert_array_equal(changed(e_t), [False, False, False, True])


def test_langevin_noise_is_deterministic_under_a_key_and_differs_across_keys():
  cfg = dataclasses.replace(TINY, langevin_std=0.5)
  params, tokens, y0, keys = tiny_inputs(cfg)
  run = lambda k: think(cfg, params, tokens, y0, k, cfg.steps, True).logits  # noqa: E731
  np.testing.assert_array_equal(run(keys), run(keys))
  other = jax.random.split(jax.random.PRNGKey(99), 2)  # without noise (and jitter) the keys would not matter
  assert float(jnp.max(jnp.abs(run(keys) - run(other)))) > 1e-3


@pytest.mark.slow  # the ring's semantics run in tests/test_ring.py
def test_replay_starts_the_first_lanes_from_the_ring_once_it_holds_a_prediction():
  cfg = dataclasses.replace(TINY, replay_size=2, replay_fraction=0.5)
  params, tokens, y0, _ = tiny_inputs(cfg, b=2)
  memory = ebt.init_memory(cfg, 2)
  thought, after = train_thought(cfg, params, memory, tokens)
  np.testing.assert_array_equal(after.replay.count, [1, 1])
  np.testing.assert_allclose(after.replay.items[:, 0], thought.logits[-1])
  assert not np.array_equal(after.key, memory.key)
  # Fill lane 0's ring with y0 only: lane 0 (of the first half) starts there, lane 1 from noise.
  filled = jax.vmap(ring.push)(memory.replay, y0)
  thought, _ = train_thought(cfg, params, memory._replace(replay=filled), tokens)
  start_energy = energy(TINY, params, tokens, y0, jnp.asarray(0))  # the same energy function
  np.testing.assert_allclose(thought.energies[0, 0], start_energy[0], rtol=1e-5)
  assert float(jnp.max(jnp.abs(thought.energies[0, 1] - start_energy[1]))) > 1e-4


def test_best_of_n_keeps_the_lowest_energy_at_every_position():
  logits = jnp.arange(3 * 2 * 2 * 1, dtype=jnp.float32).reshape(3, 2, 2, 1)
  energies = jnp.array([[[5.0, 1.0], [0.0, 2.0]], [[4.0, 3.0], [1.0, 0.5]], [[6.0, 2.0], [-1.0, 9.0]]])
  best, best_e = ebt.best_of(logits, energies)
  np.testing.assert_array_equal(best_e, [[4.0, 1.0], [-1.0, 0.5]])
  winners = [[logits[1, 0, 0, 0], logits[0, 0, 1, 0]], [logits[2, 1, 0, 0], logits[1, 1, 1, 0]]]
  np.testing.assert_array_equal(best[..., 0], winners)


@pytest.mark.slow  # best-of-N's choice runs in test_best_of_n_keeps_the_lowest_energy_at_every_position
def test_inference_returns_its_winners_final_energy():
  params, tokens, _, keys = tiny_inputs(TINY)
  logits, energies = jax.jit(ebt.infer, static_argnums=(0, 4, 5))(TINY, params, tokens, keys, 3, 4)
  assert logits.shape == (2, TINY.seq, TINY.vocab)
  np.testing.assert_allclose(energies, energy(TINY, params, tokens, logits, jnp.asarray(2)), rtol=1e-5)


def test_config_refuses_bad_values():
  for field, value in [("steps", 0), ("alpha", -1.0), ("replay_fraction", 1.5), ("loss_on", "first")]:
    with pytest.raises(FieldError, match=field):
      dataclasses.replace(TINY, **{field: value})
  with pytest.raises(FieldError, match="alpha_jitter"):
    dataclasses.replace(TINY, alpha_jitter=0.5)
  with pytest.raises(FieldError, match="d_model"):
    dataclasses.replace(TINY, d_model=6)


def test_alpha_is_a_level_of_its_own():
  labels = ebt.level_labels(init_params(TINY, jax.random.PRNGKey(0)))
  assert labels.pop("alpha") == "alpha"
  assert set(jax.tree.leaves(labels)) == {"outer"}


@pytest.mark.slow
def test_one_compiled_training_step_runs_and_its_loss_is_finite():
  cfg = dataclasses.replace(TINY, replay_size=2, langevin_std=0.1, alpha_jitter=2.0, detach=False, loss_on="last")
  learner = ebt_learner(cfg, batch=2, alpha_lr=0.1)
  state = learner.init(jax.random.PRNGKey(0))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, cfg.seq + 1), 0, cfg.vocab)
  new, metrics = jax.jit(learner.step)(state, Chunk(tokens, jnp.ones((2, cfg.seq), bool)))
  assert np.isfinite(float(metrics.nll)) and float(metrics.count) == 2 * cfg.seq
  assert float(metrics.grad_norm) > 0
  assert float(new.params["alpha"]) != float(state.params["alpha"])
  np.testing.assert_array_equal(new.memory.replay.count, [1, 1])


@pytest.mark.slow
def test_held_out_scoring_thinks_longer_from_several_starts():
  """The inference model scores text like any byte LM (`evaluation.score`), advancing only its keys."""
  cfg = dataclasses.replace(TINY, infer_steps=4, infer_starts=3, replay_size=2)
  model = ebt.ebt_lm(cfg, inference=True)
  params = init_params(TINY, jax.random.PRNGKey(0))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 2, cfg.seq + 1), 0, cfg.vocab)
  mask = jnp.ones((2, 2, cfg.seq), bool)
  scores = jax.jit(lambda p: evaluation.score(model, p, tokens, mask))(params)
  assert scores.nll.shape == (2, 2, cfg.seq) and bool(jnp.all(jnp.isfinite(scores.nll)))
  memory = model.init_memory(2)
  logits, after = model.apply(params, memory, tokens[0, :, :-1], mask[0])
  np.testing.assert_array_equal(after.replay.count, [0, 0])
  assert not np.array_equal(after.key, memory.key)
  keys = ebt.split_lanes(memory.key, 2)[1]
  expected, _ = ebt.infer(cfg, params, tokens[0, :, :-1], keys, 4, 3)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
