"""Period-gated levels against a plain step-by-step reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny import tiny_config

from contlearn import rules
from contlearn.engine import scan
from contlearn.learner import sequence_learner
from contlearn.models import byte_lm
from contlearn.stream.base import Chunk


def test_periodic_fires_every_period_with_the_summed_gradient():
  rule = rules.periodic(optax.sgd(0.5), period=3)
  params = {"w": jnp.zeros(2)}
  state = rule.init(params)
  grads = [jnp.array([1.0, 2.0]), jnp.array([3.0, 0.0]), jnp.array([0.0, 1.0]), jnp.array([5.0, 5.0])]
  out = []
  for g in grads:
    updates, state = rule.update({"w": g}, state, params)
    out.append(np.asarray(updates["w"]))
  np.testing.assert_allclose(out[0], 0.0)
  np.testing.assert_allclose(out[1], 0.0)
  np.testing.assert_allclose(out[2], -0.5 * np.array([4.0, 3.0]))
  np.testing.assert_allclose(out[3], 0.0)
  np.testing.assert_allclose(np.asarray(state.accumulated["w"]), [5.0, 5.0])


@pytest.mark.slow
def test_cms_levels_scanned_match_a_python_loop():
  """The scanned learner with CMS levels (periods 1, 2, 4) against a loop that
  computes each gradient and applies plain SGD per level when its clock fires."""
  periods = (1, 2, 4)
  cfg = tiny_config(mixer="linear_attention", cms_periods=periods)
  model = byte_lm(cfg.model)
  outer_lr, cms_lr = 0.05, 0.2
  level_rules = {"outer": optax.sgd(outer_lr)}
  level_rules |= {f"cms_{i}": rules.periodic(optax.sgd(cms_lr), p) for i, p in enumerate(periods)}
  steps, batch, seq = 8, 2, 6
  learner = sequence_learner(model, rules.levels(level_rules, model.level_labels), batch)
  rng = np.random.default_rng(0)
  chunk = Chunk(
    tokens=jnp.asarray(rng.integers(0, 256, (steps, batch, seq + 1)), jnp.int32),
    mask=jnp.ones((steps, batch, seq), bool),
  )
  state0 = learner.init(jax.random.PRNGKey(1))
  scanned, _ = jax.jit(lambda s, c: scan(learner, s, c))(state0, chunk)

  # Reference: step by step, each level keeps its own sum of gradients.
  params, memory = state0.params, state0.memory
  labels = model.level_labels(params)
  acc = jax.tree.map(jnp.zeros_like, params)

  def loss(p, mem, tokens):
    logits, new_mem = model.apply(p, mem, tokens[:, :-1], jnp.ones((batch, seq), bool))
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
    return nll.mean(), new_mem

  for t in range(steps):
    grads, memory = jax.grad(loss, has_aux=True)(params, memory, chunk.tokens[t])
    acc = jax.tree.map(jnp.add, acc, grads)

    def update(p, a, label):
      if label == "outer":
        return p - outer_lr * a, jnp.zeros_like(a)
      period = periods[int(label.split("_")[1])]
      if (t + 1) % period == 0:
        return p - cms_lr * a, jnp.zeros_like(a)
      return p, a

    pairs = jax.tree.map(update, params, acc, labels)
    params = jax.tree.map(lambda _, pa: pa[0], labels, pairs)
    acc = jax.tree.map(lambda _, pa: pa[1], labels, pairs)

  chex_close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
  jax.tree.map(chex_close, scanned.params, params)
  # The slow level really was held: after 8 steps with period 4 it moved twice, not eight times.
  assert int(scanned.opt_state.inner_states["cms_2"].inner_state.count) == 0


def test_momentum_is_sgd_with_heavy_ball_momentum_0_9():
  """ "momentum" (the stability-gap runs' optimizer, PyTorch's SGD(momentum=0.9)):
  v <- 0.9 v + g, update -lr v."""
  rule = rules.optimizer("momentum", 0.01)
  params = {"w": jnp.zeros(2)}
  state = rule.init(params)
  out = []
  for g in ([1.0, -2.0], [3.0, 0.5], [0.0, 0.0]):
    updates, state = rule.update({"w": jnp.array(g)}, state, params)
    out.append(np.asarray(updates["w"]))
  np.testing.assert_allclose(out[0], [-0.01, 0.02], rtol=1e-6)
  np.testing.assert_allclose(out[1], [-0.01 * (0.9 + 3.0), -0.01 * (-1.8 + 0.5)], rtol=1e-6)
  np.testing.assert_allclose(out[2], 0.9 * out[1], rtol=1e-6)
  assert "momentum" in rules.optimizer_names()
