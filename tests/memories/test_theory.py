"""TTT's Theorem 1 and finite-difference checks of gradients through updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import memories
from contlearn.memories.core import InnerModel, Rule, squared_loss


def test_ttt_linear_batch_gd_is_linear_attention():
  """Linear inner model, batch GD (one chunk), rate 1/2, W_0 = 0: linear attention."""
  with jax.enable_x64(True):
    from tests.memories.helpers import inputs

    ttt = Rule(InnerModel(depth=1, bias=False), squared_loss)
    la = memories.RULES["linear_attention"]
    a = inputs(la, jax.random.PRNGKey(0), t=19)
    zero = jax.tree.map(jnp.zeros_like, a["state"])
    ones = jnp.ones((19,), jnp.float64)
    half = memories.Rates(lr=0.5 * ones, retain=ones, momentum=ones)
    unit = memories.Rates(lr=ones, retain=ones, momentum=ones)
    args = (a["q"], a["k"], a["v"])
    y_la, s_la = memories.reference(la, {}, zero, *args, unit, a["mask"], 1)
    for form in (memories.reference, memories.chunked):
      y, s = form(ttt, {}, zero, *args, half, a["mask"], 19)
      np.testing.assert_allclose(y, y_la, rtol=1e-12, atol=1e-12)
      np.testing.assert_allclose(s.w["w"][0], s_la.w["w"][0], rtol=1e-12, atol=1e-12)


# In `make test-all`: TTT's two rules run by default; the delta rules' and the others' gradients there only.
SLOW = ("linear_attention", "mamba2", "deltanet", "gated_deltanet", "self_modifying", "titans", "ttt_mlp")


@pytest.mark.parametrize(
  "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(memories.RULES)]
)
def test_gradients_match_finite_differences(name):
  """Directional derivative of the chunked form against central differences."""
  rule = memories.RULES[name]
  with jax.enable_x64(True):
    from tests.memories.helpers import inputs

    a = inputs(rule, jax.random.PRNGKey(11), t=13)
    p = {n: a[n] for n in ("outer", "state", "q", "k", "v", "rates")}

    def f(p):
      y, s = memories.chunked(rule, p["outer"], p["state"], p["q"], p["k"], p["v"], p["rates"], a["mask"], 4)
      return jnp.sum(jnp.sin(y)) + sum(jnp.sum(jnp.cos(x)) for x in jax.tree.leaves(s))

    leaves, tree = jax.tree.flatten(p)
    keys = jax.random.split(jax.random.PRNGKey(5), len(leaves))
    d = jax.tree.unflatten(tree, [jax.random.normal(kk, x.shape, x.dtype) for kk, x in zip(keys, leaves)])
    analytic = sum(jnp.vdot(g, dd) for g, dd in zip(jax.tree.leaves(jax.grad(f)(p)), jax.tree.leaves(d)))
    eps = 1e-6
    shift = lambda s: jax.tree.map(lambda x, dd: x + s * dd, p, d)
    numeric = (f(shift(eps)) - f(shift(-eps))) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)
