"""The ring buffer: first in, first out, of a fixed capacity."""

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import ring


def test_ring_wraps_around_and_overwrites_the_oldest():
  buf = ring.empty(3, {"a": jnp.zeros((2,)), "b": jnp.zeros((), jnp.int32)})
  assert buf.capacity == 3 and int(buf.size) == 0
  for n in range(5):
    buf = ring.push(buf, {"a": jnp.full((2,), float(n)), "b": jnp.asarray(n)})
  # items 0..4 went to slots 0,1,2,0,1: 3 and 4 overwrote 0 and 1, the oldest.
  np.testing.assert_array_equal(buf.items["b"], [3, 4, 2])
  np.testing.assert_array_equal(buf.items["a"], [[3, 3], [4, 4], [2, 2]])
  assert int(buf.count) == 5 and int(buf.size) == 3


def test_ring_counts_before_it_is_full():
  buf = ring.empty(4, jnp.zeros(()))
  buf = ring.push(ring.push(buf, jnp.asarray(7.0)), jnp.asarray(8.0))
  np.testing.assert_array_equal(buf.items, [7, 8, 0, 0])
  assert int(buf.count) == 2 and int(buf.size) == 2


def test_ring_samples_only_the_items_it_holds():
  buf = ring.empty(5, jnp.zeros(()))
  for v in (1.0, 2.0):
    buf = ring.push(buf, jnp.asarray(v))
  draws = jax.vmap(lambda k: ring.sample(buf, k))(jax.random.split(jax.random.PRNGKey(0), 200))
  assert set(np.asarray(draws).tolist()) == {1.0, 2.0}


def test_ring_is_pure_under_jit_and_vmap():
  """One ring per lane, pushed in a compiled program, as an EBT's memory holds them."""
  lanes = jax.vmap(lambda _: ring.empty(2, jnp.zeros(())))(jnp.arange(3))
  push = jax.jit(jax.vmap(ring.push))
  for v in range(3):
    lanes = push(lanes, jnp.arange(3.0) + 10 * v)
  np.testing.assert_array_equal(lanes.items, [[20, 10], [21, 11], [22, 12]])
  np.testing.assert_array_equal(lanes.count, [3, 3, 3])
