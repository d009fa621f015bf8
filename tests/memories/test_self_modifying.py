"""Self-modifying Titans: the chunked form against the token scan, and the scan
at chunk 1 against a NumPy loop written from the paper's equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.memories import self_modifying as sm
from contlearn.memories.rules import self_modifying as rule
from tests.memories.helpers import self_modifying_inputs as inputs

DH = 4


def _spec(chunk_mem, chunk_proj, **flags):
  return sm.SelfModifying(rule(expansion=2, **flags), chunk_mem, chunk_proj, lr_scale=0.8)


def _run(form, spec, *args):
  return jax.jit(lambda *a: form(spec, *a))(*args)


def _close(a, b, tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


CHUNKS = [(1, 1), (2, 4), (4, 8)]
# The variants below run at chunks (2, 4) in `make test` (a ragged last block, both levels above one token) and
# at (1, 1) and (4, 8) in `make test-all`; the default runs at all three in both (test_chunked_equals_reference).
VARIANT_CHUNKS = [c if c == (2, 4) else pytest.param(c, marks=pytest.mark.slow) for c in CHUNKS]


@pytest.mark.parametrize("chunks", CHUNKS)
def test_chunked_equals_reference(chunks):
  """T = 23: ragged last block for (2, 4) and (4, 8); the last 3 tokens masked."""
  with jax.enable_x64(True):
    spec = _spec(*chunks)
    args = inputs(spec, sum(chunks))
    _close(_run(sm.reference, spec, *args), _run(sm.chunked, spec, *args), 1e-9)


def test_chunked_equals_reference_without_momentum_dgd_self_values_offsets_or_normalisation():
  with jax.enable_x64(True):
    spec = _spec(2, 4, momentum=False, dgd=False, self_values=False, decay_to_init=False, normalized=False)
    args = inputs(spec, 4)
    _close(_run(sm.reference, spec, *args), _run(sm.chunked, spec, *args), 1e-9)


def test_read_without_the_residual_is_the_read_less_the_query():
  """`read_residual=False` reads `M(q) - q`; the fast form agrees with the token scan, the state is unchanged."""
  with jax.enable_x64(True):
    spec = _spec(2, 4)
    args = inputs(spec, 5)
    y, state = _run(sm.reference, spec, *args)
    bare = spec._replace(read_residual=False)
    y_bare, state_bare = _run(sm.reference, bare, *args)
    _close(y_bare, y - sm.query(args[0], args[2]), 1e-12)
    _close(state_bare, state, 1e-12)
    _close((y_bare, state_bare), _run(sm.chunked, bare, *args), 1e-9)


PLAIN = dict(momentum=False, dgd=False, self_values=False, layer_norm=True, normalized=False)


@pytest.mark.parametrize("chunks", VARIANT_CHUNKS)
@pytest.mark.parametrize("flags", [{}, PLAIN], ids=["default", "plain"])
def test_keys_and_values_without_the_residual(chunks, flags):
  """`kv_residual=False` makes k and v from `M_s(x) - x` (the rates as before); the fast form agrees with
  the token scan, whose output differs from the default's. "plain": plain steps with a LayerNorm, at the
  rate 0.2 (`test_chunked_equals_reference_with_a_layer_norm`)."""
  with jax.enable_x64(True):
    spec = _spec(*chunks, **flags)._replace(lr_scale=0.2 if flags else 0.8)
    bare = spec._replace(kv_residual=False)
    params, state, x, mask = inputs(spec, 7)
    rng = np.random.default_rng(0)
    reads = {s: jnp.asarray(rng.standard_normal((5, DH))) for s in spec.projections}
    k, v, rates = sm.generate(bare, params, reads, x[:5])
    unit = lambda a: a / np.sqrt(np.sum(np.square(a), axis=-1, keepdims=True) + 1e-6)
    _close((k, v), (unit(reads["k"] - x[:5]), unit(reads["v"] - x[:5])), 1e-12)
    _close(rates, sm.generate(spec, params, reads, x[:5])[2], 1e-12)
    y_bare, state_bare = _run(sm.reference, bare, params, state, x, mask)
    _close((y_bare, state_bare), _run(sm.chunked, bare, params, state, x, mask), 1e-9)
    y, _ = _run(sm.reference, spec, params, state, x, mask)
    assert np.max(np.abs(np.asarray(y_bare) - np.asarray(y))) > 1e-2


@pytest.mark.parametrize("chunks", VARIANT_CHUNKS)
@pytest.mark.parametrize("read_residual", [True, False])
def test_chunked_equals_reference_with_a_layer_norm(chunks, read_residual):
  """Memories `x + LN(gelu(x W_a) W_b)` (LN scale and bias learned per memory, not the identity here), steps
  not normalised. The inner rate is 0.2, not 0.8: a LayerNorm's gradient is divided by its input's spread, and
  at 0.8 the memories grow until float64 rounding (1e-16 at the first token) is amplified past 1e-9 by the
  23rd token in both forms alike (at chunk 1: 7e-8 apart; at 0.2, 7e-12)."""
  with jax.enable_x64(True):
    spec = _spec(*chunks, layer_norm=True, normalized=False)._replace(lr_scale=0.2, read_residual=read_residual)
    args = inputs(spec, sum(chunks))
    assert np.any(np.asarray(args[0]["ln"]["scale"]) != 1.0) and np.any(np.asarray(args[0]["ln"]["bias"]) != 0.0)
    _close(_run(sm.reference, spec, *args), _run(sm.chunked, spec, *args), 1e-9)


def test_a_layer_norm_needs_steps_that_are_not_normalised():
  with pytest.raises(ValueError, match="normalized=False"):
    rule(layer_norm=True)


def _outer_gradients(spec, forms=(sm.reference, sm.chunked)):
  """Gradients of a loss of the outputs and final state (T = 19, seed 9) w.r.t. the params and the initial
  state, by each of `forms` (the token scan and the chunked form unless told; call under `jax.enable_x64`)."""
  params, state, x, mask = inputs(spec, 9, t=19)

  def loss(form, p):
    y, s = form(spec, p["params"], p["state"], x, mask)
    return jnp.sum(jnp.sin(y)) + sum(jnp.sum(jnp.cos(a)) for a in jax.tree.leaves(s))

  p = {"params": params, "state": state}
  return tuple(jax.jit(jax.grad(lambda p, form=form: loss(form, p)))(p) for form in forms)


@pytest.mark.parametrize("chunks", [pytest.param(c, marks=pytest.mark.slow) for c in ((1, 1), (4, 8))])
def test_outer_gradients_agree(chunks):  # make test: test_forms.py::test_outer_gradients_agree[self_modifying]
  """Gradients w.r.t. W_q, the rate biases, the initial memories (offsets) and the state."""
  with jax.enable_x64(True):
    g_ref, g_fast = _outer_gradients(_spec(*chunks))
    used = (
      g_ref["params"]["wq"],
      g_ref["params"]["bias"],
      g_ref["params"]["w0"]["w"],
      g_ref["state"].w["w"],
      g_ref["state"].m["w"],
    )
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(used))  # (the memories have no biases)
    _close(g_ref, g_fast, 1e-9)


@pytest.mark.slow  # (make test-all) make test: the values with a LayerNorm, and the gradients without one
def test_outer_gradients_agree_with_a_layer_norm():
  """As above, with memories `x + LN(gelu(x W_a) W_b)` (inner rate 0.2, as the values' test): the LayerNorm's
  scale and bias get gradients too."""
  with jax.enable_x64(True):
    g_ref, g_fast = _outer_gradients(_spec(2, 4, layer_norm=True, normalized=False)._replace(lr_scale=0.2))
    assert all(np.all(np.asarray(g) != 0) for g in jax.tree.leaves(g_ref["params"]["ln"]))
    _close(g_ref, g_fast, 1e-9)


@pytest.mark.slow  # (make test-all: 50 s on 2 cores) an option's gradients; the default's: test_forms.py
def test_self_generated_targets_as_constants_for_the_outer_loop():
  """`self_values_grad=False` holds each self-generated target constant for the outer loop too: the values are
  unchanged, the token scan and the chunked form agree on the outer gradients, and those differ from the
  default's; without self-generated values the setting changes nothing (both forms hold the targets through
  `core.outer_view`, so the token scan alone is compared there and with the default)."""
  with jax.enable_x64(True):
    spec, held = _spec(2, 4), _spec(2, 4, self_values_grad=False)
    args = inputs(spec, 5)
    _close(_run(sm.reference, held, *args), _run(sm.reference, spec, *args), 0.0)
    g_ref, g_fast = _outer_gradients(held)
    _close(g_ref, g_fast, 1e-9)
    (g_default,) = _outer_gradients(spec, (sm.reference,))
    moved = np.abs(np.asarray(g_ref["params"]["w0"]["w"][0]) - np.asarray(g_default["params"]["w0"]["w"][0]))
    assert moved.max() > 1e-3 * np.abs(np.asarray(g_default["params"]["w0"]["w"][0])).max()
    plain, plain_held = _spec(2, 4, self_values=False), _spec(2, 4, self_values=False, self_values_grad=False)
    _close(_outer_gradients(plain_held, (sm.reference,)), _outer_gradients(plain, (sm.reference,)), 0.0)


def _gelu(z):
  return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))


def _dgelu(z):
  u = np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)
  du = np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * z**2)
  return 0.5 * (1 + np.tanh(u)) + 0.5 * z * (1 - np.tanh(u) ** 2) * du


def _d2gelu(z):
  c = np.sqrt(2 / np.pi)
  u, du, d2u = c * (z + 0.044715 * z**3), c * (1 + 3 * 0.044715 * z**2), c * 6 * 0.044715 * z
  sech2 = 1 - np.tanh(u) ** 2
  return sech2 * du + 0.5 * z * sech2 * d2u - z * sech2 * np.tanh(u) * du**2


def _unit(x):
  return x / np.sqrt(np.sum(x * x) + 1e-6)


def _sigmoid(z):
  return 1 / (1 + np.exp(-z))


def _paper_loop(spec, params, state, x, mask):
  """The recurrence, token by token, in NumPy (M(x) = x + gelu(x W_a) W_b):

  k, v, eta, alpha, beta from M_{t-1}; each memory's target vhat = M_{t-1}(v);
  W_a <- (alpha I - eta k k^T) W_a - eta k (dL/dz)^T,  W_b <- alpha W_b - eta dL/dW_b
  (with momentum: m <- beta m - eta g, g including the DGD term; W <- alpha W + m;
  with offsets O, the weights are O + D and alpha acts on D alone; normalised: every
  eta above is eta / (1 + eta kappa)); y = M_mem,t(q).
  """
  f = lambda a: np.asarray(a, np.float64)
  offset = spec.rule.model.offset
  w, m = state.w["w"], state.m["w"]
  o = params["w0"]["w"] if offset else [np.zeros_like(f(a)) for a in w]
  mem = {
    n: {
      "a": f(o[0][i]) + f(w[0][i]),
      "b": f(o[1][i]) + f(w[1][i]),
      "oa": f(o[0][i]),
      "ob": f(o[1][i]),
      "ma": f(m[0][i]),
      "mb": f(m[1][i]),
    }
    for i, n in enumerate(spec.names)
  }
  apply = lambda w, u: u + _gelu(u @ w["a"]) @ w["b"]
  wq, bias = f(params["wq"]), {g: float(b) for g, b in params["bias"].items()}
  momentum, ys = spec.rule.momentum, []

  def step_size(w, k, v, eta):  # (core.curvature) kappa: Gauss-Newton, second order, DGD
    if not spec.rule.normalized:
      return eta
    z = k @ w["a"]
    err = apply(w, k) - (apply(w, v) if spec.rule.self_target else v)
    gauss_newton = np.sum(_gelu(z) ** 2) + (k @ k) * np.sum(_dgelu(z) ** 2 * np.sum(w["b"] ** 2, axis=1))
    second = (k @ k) * np.max(np.abs(_d2gelu(z) * (w["b"] @ err))) + np.sqrt(k @ k) * np.linalg.norm(err) * np.max(
      np.abs(_dgelu(z))
    )
    return eta / (1 + eta * (gauss_newton + second + k @ k))

  for x_t, use in zip(f(x), np.asarray(mask)):
    if use:
      k, v = _unit(apply(mem["k"], x_t)), _unit(apply(mem["v"], x_t))
      gate = {g: _sigmoid(np.mean(apply(mem[g], x_t)) + bias[g]) for g in spec.gates}
      eta, alpha = spec.lr_scale * gate["eta"], 1 - gate["alpha"]
      for w in mem.values():
        lr = step_size(w, k, v, eta)
        target = apply(w, v) if spec.rule.self_target else v
        z = k @ w["a"]
        r = k + _gelu(z) @ w["b"] - target
        g_b = np.outer(_gelu(z), r)
        g_a = np.outer(k, (w["b"] @ r) * _dgelu(z))
        erase = np.outer(k, k @ w["a"])  # k k^T W_a: the DGD factor on the input-side weight
        kept_a = w["oa"] + alpha * (w["a"] - w["oa"])
        kept_b = w["ob"] + alpha * (w["b"] - w["ob"])
        if momentum:
          w["ma"] = gate["momentum"] * w["ma"] - lr * (g_a + erase)
          w["mb"] = gate["momentum"] * w["mb"] - lr * g_b
          w["a"], w["b"] = kept_a + w["ma"], kept_b + w["mb"]
        else:
          w["a"] = kept_a - lr * erase - lr * g_a
          w["b"] = kept_b - lr * g_b
    ys.append(apply(mem["mem"], _unit(x_t @ wq)))
  return np.stack(ys), {n: {"a": w["a"] - w["oa"], "b": w["b"] - w["ob"]} for n, w in mem.items()}


@pytest.mark.parametrize(
  "flags",
  [
    {"momentum": False},
    {},
    {"normalized": False},
    {"momentum": False, "self_values": False},
    {"momentum": False, "decay_to_init": False, "normalized": False},
  ],
)
def test_chunk_one_is_the_papers_recurrence(flags):
  with jax.enable_x64(True):
    spec = _spec(1, 1, **flags)
    args = inputs(spec, 2, t=12)
    y, state = _run(sm.reference, spec, *args)
    y_np, mem_np = _paper_loop(spec, *args)
    np.testing.assert_allclose(np.asarray(y), y_np, rtol=1e-10, atol=1e-10)
    for i, name in enumerate(spec.names):
      np.testing.assert_allclose(np.asarray(state.w["w"][0][i]), mem_np[name]["a"], rtol=1e-10, atol=1e-10)
      np.testing.assert_allclose(np.asarray(state.w["w"][1][i]), mem_np[name]["b"], rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_a_masked_token_changes_nothing():
  """Chunk 1: a masked token in the middle is as if absent; chunk (4, 8): a masked tail."""
  with jax.enable_x64(True):
    spec = _spec(1, 1)
    params, state, x, _ = inputs(spec, 5, t=10)
    mask = jnp.arange(10) != 4
    y, s = _run(sm.chunked, spec, params, state, x, mask)
    keep = np.asarray(mask)
    y_without, s_without = _run(sm.chunked, spec, params, state, x[keep], jnp.ones((9,), bool))
    _close(y[keep], y_without, 1e-12)
    _close(s, s_without, 1e-12)

    spec = _spec(4, 8)
    _, s = _run(sm.chunked, spec, params, state, x, jnp.arange(10) < 7)
    _, s_short = _run(sm.chunked, spec, params, state, x[:7], jnp.ones((7,), bool))
    _close(s, s_short, 1e-12)


def test_chunk_sizes_must_nest():
  with pytest.raises(ValueError, match="chunk_proj=6 must be a positive multiple of chunk_mem=4"):
    sm.chunked(sm.SelfModifying(chunk_mem=4, chunk_proj=6), {}, None, jnp.zeros((8, DH)), jnp.ones((8,), bool))
