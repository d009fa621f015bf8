"""Continuum Memory System variants: from a trained MLP, and nested levels."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny import tiny_config, with_fields

from contlearn import catalog, rules
from contlearn.engine import scan
from contlearn.learner import build_learner
from contlearn.models import cms, layers
from contlearn.stream import DocumentLanes, split_bytes

D, H = 8, 12


def _trained_mlp(seed=0):
  """An MLP fitted for a few steps to a random map (any fixed weights would do)."""
  mlp = layers.mlp_init(jax.random.PRNGKey(seed), D, H)
  x = jax.random.normal(jax.random.PRNGKey(1), (32, D))
  y = jax.random.normal(jax.random.PRNGKey(2), (32, D))
  loss = lambda p: jnp.mean((x + layers.mlp_apply(p, x) - y) ** 2)
  for _ in range(20):
    mlp = jax.tree.map(lambda p, g: p - 0.1 * g, mlp, jax.grad(loss)(mlp))
  return mlp


@pytest.mark.parametrize("variant", cms.VARIANTS)
def test_levels_from_a_trained_mlp_compute_that_mlp(variant):
  mlp = _trained_mlp()
  x = jax.random.normal(jax.random.PRNGKey(3), (4, 5, D))
  expected = np.asarray(x + layers.mlp_apply(mlp, x))
  got = np.asarray(cms.cms_apply(cms.cms_from_mlp(mlp, 3 if variant != "independent" else 4, variant), x, variant))
  if variant == "independent":  # a sum over groups of hidden units: same terms, other order
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
  else:
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(  # one variant in `make test`, every variant in `make test-all`
  "variant", [v if v == "sequential" else pytest.param(v, marks=pytest.mark.slow) for v in cms.VARIANTS]
)
def test_zero_rate_keeps_the_trained_mlp_exactly(variant):
  """The LM's CMS levels, initialised from a trained MLP, learning at rate 0."""
  cfg = with_fields(
    tiny_config(cms_periods=(1, 2, 4), cms_hidden=2, cms_variant=variant),
    train=dict(cms_optimizer="sgd", cms_lr=0.0),
  )
  learner = build_learner(cfg)
  state = learner.init(jax.random.PRNGKey(0))
  d = cfg.model.d_model
  # Independent levels split the trained MLP's hidden units into 3 blocks of 2d.
  mlp = layers.mlp_init(jax.random.PRNGKey(5), d, 2 * d * (3 if variant == "independent" else 1))
  blocks = cms.cms_from_mlp(mlp, 3, variant)
  params = state.params
  params["blocks"][0]["ff"] = blocks  # same shapes as the fresh blocks: opt_state still fits
  state = state.replace(params=params)
  stream = DocumentLanes(split_bytes(b"all the world's a stage. " * 100, 8), steps=8, batch=8, seq=16)
  chunk, _ = stream.next(stream.start())
  after, _ = jax.jit(lambda s, c: scan(learner, s, c))(state, chunk)
  jax.tree.map(np.testing.assert_array_equal, after.params["blocks"][0]["ff"], blocks)
  # ... while the outer level did learn.
  assert not np.array_equal(after.params["head"], state.params["head"])


def test_nested_levels_equal_a_fast_mlp_reset_to_the_slow_one():
  """Additive parts with resets == the loop: fast weights learn every step and
  are re-initialised from the slow weights each time the slow level steps."""
  lr_fast, lr_slow, period = 0.05, 0.02, 3
  x = jax.random.normal(jax.random.PRNGKey(0), (10, 16, D))
  y = jax.random.normal(jax.random.PRNGKey(1), (10, 16, D))
  slow0 = _trained_mlp()

  def loss(mlp, xb, yb):
    return jnp.mean((xb + layers.mlp_apply(mlp, xb) - yb) ** 2)

  rule = rules.levels(
    {
      "cms_0": rules.reset_every(rules.periodic(optax.sgd(lr_fast), 1), period),
      "cms_1": rules.periodic(optax.sgd(lr_slow), period),
    },
    ["cms_0", "cms_1"],
  )
  parts = cms.cms_from_mlp(slow0, 2, "nested")
  state = rule.init(parts)
  for t in range(10):
    merged = jax.tree.map(lambda a, b: a + b, *parts)
    g = jax.grad(loss)(merged, x[t], y[t])
    updates, state = rule.update([g, g], state, parts)
    parts = optax.apply_updates(parts, updates)
  effective = jax.tree.map(lambda a, b: a + b, *parts)

  fast, slow, acc = slow0, slow0, jax.tree.map(jnp.zeros_like, slow0)
  for t in range(10):
    g = jax.grad(loss)(fast, x[t], y[t])
    fast = jax.tree.map(lambda p, d: p - lr_fast * d, fast, g)
    acc = jax.tree.map(jnp.add, acc, g)
    if (t + 1) % period == 0:
      slow = jax.tree.map(lambda p, d: p - lr_slow * d, slow, acc)
      acc = jax.tree.map(jnp.zeros_like, acc)
      fast = slow
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), effective, fast)


def test_unknown_variant_is_named():
  from contlearn.errors import ConfigError

  with pytest.raises(ConfigError, match="model.cms_variant='stacked'"):
    build_learner(tiny_config(cms_periods=(1, 2), cms_variant="stacked"))


def test_the_cms_experiment_updates_every_slowest_level_at_least_20_times():
  """Every CMS run of nl_cms_variants is long enough for its slowest level to learn (not a structural null)."""
  module = catalog.load(str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "nl_cms_variants.py"))
  runs = module.get_config()
  updates = {name: module.slowest_level_updates(cfg) for name, cfg in runs.items()}
  assert updates["mlp"] == 0
  assert updates["sequential_1_10_100"] == 20 and updates["nested_1_8_64"] == 32
  assert min(u for name, u in updates.items() if name != "mlp") >= 20
  assert all(cfg.train.seeds == (0, 1, 2) for cfg in runs.values())
