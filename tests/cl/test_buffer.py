import jax
import jax.numpy as jnp
import numpy as np

from contlearn.cl import buffer


def _fill(capacity, n_rows, batch, key):
  buf = buffer.empty(capacity, 1, 1)
  add = jax.jit(buffer.add)
  for i, start in enumerate(range(0, n_rows, batch)):
    x = jnp.arange(start, start + batch, dtype=jnp.float32)[:, None]
    z = jnp.zeros((batch,), jnp.int32)
    buf = add(buf, x, z, z, z, jnp.zeros((batch, 1)), jax.random.fold_in(key, i))
  return buf


def test_reservoir_keeps_every_row_with_equal_probability():
  capacity, n_rows, trials = 10, 50, 400
  counts = np.zeros(n_rows)
  fill = jax.jit(jax.vmap(lambda k: _fill_scan(capacity, n_rows, 5, k)))
  xs = np.asarray(fill(jax.random.split(jax.random.key(0), trials)))
  for row in xs:
    assert len(set(row.tolist())) == capacity  # no row stored twice
    counts[row.astype(int)] += 1
  p = counts / trials
  # Each row is kept with probability capacity / n_rows = 0.2; binomial sd ~ 0.02.
  np.testing.assert_allclose(p, 0.2, atol=0.08)
  assert abs(p[:25].mean() - p[25:].mean()) < 0.03


def _fill_scan(capacity, n_rows, batch, key):
  def body(buf, i):
    x = (i * batch + jnp.arange(batch, dtype=jnp.float32))[:, None]
    z = jnp.zeros((batch,), jnp.int32)
    return buffer.add(buf, x, z, z, z, jnp.zeros((batch, 1)), jax.random.fold_in(key, i)), None
  buf, _ = jax.lax.scan(body, buffer.empty(capacity, 1, 1), jnp.arange(n_rows // batch))
  return buf.x[:, 0]


def test_reservoir_fills_in_order_then_counts():
  buf = _fill(8, 6, 3, jax.random.key(1))
  np.testing.assert_array_equal(np.asarray(buf.x[:6, 0]), np.arange(6))
  assert int(buf.seen) == 6 and int(buf.size) == 6


def test_batch_add_matches_one_by_one():
  slots = buffer.reservoir_slots(jnp.asarray(20), 6, 4, jax.random.key(3))
  buf = _fill(4, 20, 4, jax.random.key(2))
  x = jnp.arange(100, 106, dtype=jnp.float32)[:, None]
  z = jnp.zeros((6,), jnp.int32)
  got = buffer.add(buf, x, z, z, z, jnp.zeros((6, 1)), jax.random.key(3))
  want = np.asarray(buf.x[:, 0]).copy()
  for i, s in enumerate(np.asarray(slots)):
    if s < 4:
      want[s] = 100 + i
  np.testing.assert_array_equal(np.asarray(got.x[:, 0]), want)


def test_sample_draws_only_valid_rows_and_masks_empty():
  buf = _fill(8, 3, 3, jax.random.key(0))
  rows, mask = buffer.sample(buf, 64, jax.random.key(5))
  assert set(np.asarray(rows.x[:, 0]).tolist()) <= {0.0, 1.0, 2.0}
  assert float(mask.min()) == 1.0
  _, mask = buffer.sample(buffer.empty(8, 1, 1), 4, jax.random.key(5))
  assert float(mask.max()) == 0.0
