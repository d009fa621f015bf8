"""Reference (token by token) against the chunked form, for every memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import memories
from contlearn.memories import linear
from contlearn.memories.core import InnerModel, Rule, squared_loss
from contlearn.memories.rules import self_modifying, titans
from contlearn.products import weight_product

# Beside the named memories: DGD on a residual linear map with a bias and an
# offset, no momentum; self-modifying memories that decay toward zero, and
# with a LayerNorm; one step per chunk (with and without momentum); Titans'
# ablations (a linear memory, no momentum) and Titans without its LayerNorm.
EXTRA = {
  "dgd_bias_offset": Rule(InnerModel(depth=1, bias=True, residual=True, offset=True), squared_loss, dgd=True),
  "self_modifying_to_zero": self_modifying(decay_to_init=False),
  "self_modifying_layer_norm": self_modifying(layer_norm=True, normalized=False),
  "titans_chunk_step": memories.RULES["titans"]._replace(chunk_step=True),
  "ttt_mlp_chunk_step": memories.RULES["ttt_mlp"]._replace(chunk_step=True),
  "titans_linear": titans(depth=1),
  "titans_no_momentum": titans(momentum=False),
  "titans_no_layer_norm": titans(layer_norm=False),
}
RULES = {**memories.RULES, **EXTRA}
NAMES = sorted(RULES)
# `make test` runs every check on the named memories (values at chunks 5 and 32) and the values at chunk 5 on
# the variants beside them; `make test-all` adds chunk 1 for all, the variants at 32, their masks and gradients.


def _slow_variant(name, *rest):
  """The parameter set (name, *rest), in `make test-all` only when `name` is one of EXTRA's variants."""
  return pytest.param(name, *rest, marks=[pytest.mark.slow] if name in EXTRA else [])


def _run(form, rule, chunk, a):
  return form(rule, a["outer"], a["state"], a["q"], a["k"], a["v"], a["rates"], a["mask"], chunk)


def _close(x, y, tol):
  for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@pytest.mark.parametrize(
  "name, chunk",  # T = 23: ragged last chunk for 5 and 32
  [(n, c) if c == 5 else _slow_variant(n, c) for n in NAMES for c in (5, 32)]
  + [pytest.param(n, 1, marks=pytest.mark.slow) for n in NAMES],
)
def test_values_agree(name, chunk):
  rule = RULES[name]
  with jax.enable_x64(True):
    from tests.memories.helpers import inputs

    a = inputs(rule, jax.random.PRNGKey(chunk), t=23)
    _close(_run(memories.reference, rule, chunk, a), _run(memories.chunked, rule, chunk, a), 1e-9)


@pytest.mark.parametrize("name", [_slow_variant(n) for n in NAMES])
def test_outer_gradients_agree(name):
  """Gradients w.r.t. everything the outer loop learns: q, k, v, rates, W_0, LN."""
  rule = RULES[name]
  with jax.enable_x64(True):
    from tests.memories.helpers import inputs

    a = inputs(rule, jax.random.PRNGKey(7), t=21)
    diff = ("outer", "state", "q", "k", "v", "rates")

    def loss(form, p):
      y, s = _run(form, rule, 8, {**a, **p})
      return jnp.sum(jnp.sin(y)) + sum(jnp.sum(jnp.cos(x)) for x in jax.tree.leaves(s))

    p = {n: a[n] for n in diff}
    _close(jax.grad(lambda p: loss(memories.reference, p))(p), jax.grad(lambda p: loss(memories.chunked, p))(p), 1e-8)


@pytest.mark.parametrize("name", [_slow_variant(n) for n in NAMES])
def test_masked_tokens_leave_state(name):
  rule = RULES[name]
  with jax.enable_x64(True):
    from tests.memories.helpers import inputs

    a = inputs(rule, jax.random.PRNGKey(3), t=12)
    short = {**a, **{n: a[n][:9] for n in ("q", "k", "v", "mask")}}
    short["rates"] = jax.tree.map(lambda x: x[:9], a["rates"])
    _, s_full = _run(memories.chunked, rule, 4, a)
    _, s_short = _run(memories.chunked, rule, 4, short)
    _close(s_full, s_short, 1e-12)


@pytest.mark.parametrize("name", ["titans", "ttt_linear"])
def test_a_chunk_step_of_one_token_is_the_token_step_read_before_it(name):
  """At C = 1 a chunk step is the token step: same states; token t reads W_{t-1} instead of W_t."""
  token = RULES[name]
  with jax.enable_x64(True):
    from tests.memories.helpers import inputs

    a = inputs(token, jax.random.PRNGKey(11), t=9)
    a["mask"] = jnp.ones_like(a["mask"])
    y_chunk, s_chunk = _run(memories.reference, token._replace(chunk_step=True), 1, a)
    _, s_token = _run(memories.reference, token, 1, a)
    _close(s_chunk, s_token, 1e-12)
    _, s_before = _run(
      memories.reference,
      token,
      1,
      {**a, **{n: a[n][:8] for n in ("q", "k", "v", "mask")}, "rates": jax.tree.map(lambda x: x[:8], a["rates"])},
    )
    y_last = token.model.apply(s_before.w, a["outer"], a["q"][8])
    _close(y_chunk[8], y_last, 1e-12)


@pytest.mark.parametrize(
  "name",
  [
    "gated_deltanet",
    *(pytest.param(n, marks=pytest.mark.slow) for n in ("titans", "titans_chunk_step", "self_modifying")),
  ],
)
def test_rates_of_exactly_zero_agree(name):
  """Retention and momentum of exactly 0 or tiny (a gate `1 - sigmoid(z)` is 0 in float32 once z > 17)."""
  rule = RULES[name]
  with jax.enable_x64(True):
    from tests.memories.helpers import inputs

    a = inputs(rule, jax.random.PRNGKey(5), t=20)
    a["rates"] = a["rates"]._replace(
      retain=a["rates"].retain.at[jnp.array([3, 9, 12])].set(jnp.array([0.0, 0.0, 1e-300])),
      momentum=a["rates"].momentum.at[jnp.array([4, 9, 13])].set(jnp.array([0.0, 0.0, 1e-300])),
    )
    _close(_run(memories.reference, rule, 8, a), _run(memories.chunked, rule, 8, a), 1e-9)

    def loss(p):
      y, s = _run(memories.chunked, rule, 8, {**a, "rates": p})
      return jnp.sum(jnp.sin(y)) + sum(jnp.sum(jnp.cos(x)) for x in jax.tree.leaves(s))

    grads = jax.grad(loss)(a["rates"])
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("c, dtype, tol", [(64, np.float32, 1e-6), (23, np.float64, 1e-12)])
def test_unit_lower_inverse_is_the_inverse(c, dtype, tol):
  """All keys equal and rate 0.9 (the inverse's entries are at most 1; its series' terms reach 1e17), and a
  random matrix of a size that is not a power of two."""
  alike = 0.9 * np.tril(np.ones((c, c)), -1)
  rand = np.tril(np.random.default_rng(0).normal(size=(c, c)), -1) * 0.3
  a = np.stack([alike, rand])
  with jax.enable_x64(True):
    inverse = np.asarray(linear.unit_lower_inverse(jnp.asarray(a, dtype)))
  np.testing.assert_allclose(inverse, np.linalg.inv(np.eye(c) + a), rtol=0, atol=tol * np.abs(inverse).max())


def test_the_delta_rule_in_float32_matches_the_reference_when_keys_are_alike():
  """The WY form in float32, chunks of 64, keys of mean cosine 0.5 with the next and rates 0.5-1 (as in a
  DeltaNet layer whose memory overflowed at byte-LM scale, docs/memories.md), against the float64 token loop."""
  rule, t, d = RULES["deltanet"], 256, 16
  with jax.enable_x64(True):
    ks = jax.random.split(jax.random.PRNGKey(0), 4)
    unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    k = unit(1.0 + jax.random.normal(ks[0], (t, d)))
    q = unit(jax.random.normal(ks[1], (t, d)))
    v = jax.random.normal(ks[2], (t, d))
    lr = jax.random.uniform(ks[3], (t,), minval=0.5, maxval=1.0)

    def run(form, dtype):
      w = {"w": [jnp.zeros((d, d), dtype)], "b": [jnp.zeros((d,), dtype)]}
      rates = memories.Rates(lr.astype(dtype), jnp.ones((t,), dtype), jnp.ones((t,), dtype))
      cast = (x.astype(dtype) for x in (q, k, v))
      return form(rule, {}, memories.MemState(w, w), *cast, rates, jnp.ones((t,), bool), 64)

    y, state = run(memories.chunked, jnp.float32)
    y_ref, state_ref = run(memories.reference, jnp.float64)
  _close((y, state.w), (y_ref, state_ref.w), 1e-4)


@pytest.mark.parametrize(
  "x_shape, w_shape",
  [((3, 4, 5), (5, 6)), ((4, 5), (3, 5, 6)), ((3, 4, 5), (3, 5, 6))],
  ids=["one weight", "a stack read at one input", "a stack of inputs and weights"],
)
def test_weight_product_is_the_matrix_product_to_second_order(x_shape, w_shape):
  """`products.weight_product` against `jnp.matmul` in float64: values, both cotangents, the gradient of a
  gradient (the chunked forms' outer gradient of the inner one), under vmap."""
  with jax.enable_x64(True):
    kx, kw, kv = jax.random.split(jax.random.PRNGKey(3), 3)
    x = jax.random.normal(kx, (2, *x_shape), jnp.float64)
    w = jax.random.normal(kw, (2, *w_shape), jnp.float64)
    v = jax.random.normal(kv, (2, *jnp.broadcast_shapes(x_shape[:-1], w_shape[:-2] + (1,)), w_shape[-1]))

    def inner_then_outer(product):
      def inner(w, x, v):  # a squared loss of the product, and a read with its gradient step
        grad = jax.grad(lambda w: jnp.sum(jnp.square(product(x, w) - v)))(w)
        return jnp.sum(jnp.sin(product(x, w - 0.1 * grad)))

      return jax.vmap(jax.value_and_grad(inner, argnums=(0, 1, 2)))(w, x, v)

    _close(inner_then_outer(weight_product), inner_then_outer(jnp.matmul), 1e-12)


def test_the_chunk_scan_keeps_chunk_sized_products_for_the_backward_and_no_weight_sized_ones():
  """What the chunked Titans form saves for its backward pass (the leaves of its `jax.vjp`): per chunk the
  carried memory (w and m of both layers) and the chunk-sized matrix products; nothing else weight-sized."""
  from tests.memories.helpers import inputs

  rule, t, chunk, d = memories.RULES["titans"], 64, 8, 16
  hidden = rule.model.expansion * d
  a = inputs(rule, jax.random.PRNGKey(0), t=t, dk=d, dv=d, dtype=jnp.float32)

  def outputs(state, q):
    return _run(memories.chunked, rule, chunk, {**a, "state": state, "q": q})[0]

  _, pullback = jax.vjp(outputs, a["state"], a["q"])
  shapes = [x.shape for x in jax.tree.leaves(pullback)]
  n = t // chunk
  assert sum(s in ((n, d, hidden), (n, hidden, d)) for s in shapes) == 4  # w, m of each layer, per chunk
  assert (n, chunk, hidden) in shapes  # a chunk's products with the first layer, kept
