"""`benchmarks/hope_profile.py`: its parts run at a layer's shapes, and its product count sees every scan step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import hope_profile
from contlearn.models import hope


@pytest.mark.slow  # (make test-all) compiles each part forward and backward: about half a minute of CPU
def test_every_part_of_the_memories_runs_forward_and_backward():
  model = hope.hope(d_model=64, n_heads=2, n_layers=1)
  parts = hope_profile.memory_parts(hope.spec(model.mixer, model), batch=1, heads=2, dh=32, seq=64)
  assert set(parts) == {"memories", "reads", "proj_writes", "main_memory"}
  for name, (fn, args) in parts.items():
    grads = [g for g in jax.tree.leaves(fn(*args)) if jnp.issubdtype(g.dtype, jnp.floating)]
    assert grads and all(np.isfinite(g).all() for g in grads), name
    assert any(np.abs(g).max() > 0 for g in grads), name


def test_dot_flops_counts_a_scans_body_once_per_step():
  w, xs = jnp.ones((16, 32)), jnp.ones((5, 8, 16))
  scanned = lambda w, xs: jax.lax.scan(lambda c, x: (c + jnp.sum(x @ w), None), 0.0, xs)[0]
  assert hope_profile.dot_flops(scanned, (w, xs)) == 5 * 2 * 8 * 16 * 32
  assert hope_profile.dot_flops(lambda w, x: x @ w, (w, xs[0])) == 2 * 8 * 16 * 32
