import jax
import jax.numpy as jnp
import numpy as np

from contlearn.strategies import buffer


def _rows(start, n):
  """n rows {"x": [n, 1] float32 (the row's index), "tag": [n, 2] int32}."""
  x = (start + jnp.arange(n, dtype=jnp.float32))[:, None]
  return {"x": x, "tag": jnp.broadcast_to(x.astype(jnp.int32), (n, 2))}


def _fill(capacity, n_rows, batch, key):
  buf = buffer.empty(capacity, _rows(0, 1))
  add = jax.jit(buffer.add)
  for i, start in enumerate(range(0, n_rows, batch)):
    buf = add(buf, _rows(start, batch), (), jax.random.fold_in(key, i))
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
    return buffer.add(buf, _rows(i * batch, batch), (), jax.random.fold_in(key, i)), None

  buf, _ = jax.lax.scan(body, buffer.empty(capacity, _rows(0, 1)), jnp.arange(n_rows // batch))
  return buf.rows["x"][:, 0]


def test_reservoir_fills_in_order_then_counts():
  buf = _fill(8, 6, 3, jax.random.key(1))
  np.testing.assert_array_equal(np.asarray(buf.rows["x"][:6, 0]), np.arange(6))
  np.testing.assert_array_equal(np.asarray(buf.rows["tag"][:6]), np.repeat(np.arange(6)[:, None], 2, 1))
  assert int(buf.seen) == 6 and int(buf.size) == 6


def test_batch_add_matches_one_by_one():
  slots = buffer.reservoir_slots(jnp.asarray(20), 6, 4, jax.random.key(3))
  buf = _fill(4, 20, 4, jax.random.key(2))
  got = buffer.add(buf, _rows(100, 6), (), jax.random.key(3))
  want = np.asarray(buf.rows["x"][:, 0]).copy()
  for i, s in enumerate(np.asarray(slots)):
    if s < 4:
      want[s] = 100 + i
  np.testing.assert_array_equal(np.asarray(got.rows["x"][:, 0]), want)
  np.testing.assert_array_equal(np.asarray(got.rows["tag"][:, 1]), want.astype(int))


def test_stored_outputs_follow_their_rows():
  buf = buffer.empty(4, _rows(0, 1), out_shape=(3, 2))
  assert buf.outputs.shape == (4, 3, 2)
  for i in range(3):
    rows = _rows(4 * i, 4)
    outputs = jnp.broadcast_to(rows["x"][:, :, None], (4, 3, 2))
    buf = buffer.add(buf, rows, outputs, jax.random.key(i))
  sample, _ = buffer.sample(buf, 16, jax.random.key(9))
  np.testing.assert_array_equal(np.asarray(sample.outputs[:, 2, 1]), np.asarray(sample.rows["x"][:, 0]))


def test_sample_draws_only_valid_rows_and_masks_empty():
  buf = _fill(8, 3, 3, jax.random.key(0))
  rows, mask = buffer.sample(buf, 64, jax.random.key(5))
  assert set(np.asarray(rows.rows["x"][:, 0]).tolist()) <= {0.0, 1.0, 2.0}
  assert float(mask.min()) == 1.0
  _, mask = buffer.sample(buffer.empty(8, _rows(0, 1)), 4, jax.random.key(5))
  assert float(mask.max()) == 0.0


def _reference_rebalance(memory, task, new, capacity):
  """The memory as a Python list of per-task lists: each task keeps its first capacity // (task + 1)."""
  share = capacity // (task + 1)
  return [rows[:share] for rows in memory] + [new[:share]]


def test_rebalanced_memory_shares_capacity_evenly_over_finished_tasks():
  capacity = 11
  buf = buffer.empty(capacity, _rows(0, 1))
  step = jax.jit(buffer.rebalanced)
  memory = []
  for task in range(4):
    new = _rows(100 * task, capacity)  # task t's rows: 100 t, 100 t + 1, ...
    buf = step(buf, jnp.asarray(task, jnp.int32), new)
    memory = _reference_rebalance(memory, task, [100 * task + i for i in range(capacity)], capacity)
    want = [x for rows in memory for x in rows]
    size = int(buf.size)
    assert size == len(want) == (capacity // (task + 1)) * (task + 1)
    np.testing.assert_array_equal(np.asarray(buf.rows["x"][:size, 0]), want)
    np.testing.assert_array_equal(np.asarray(buf.rows["tag"][:size, 1]), want)
  # after 4 tasks: 2 rows of each (11 // 4), the first two each task was given
  assert np.asarray(buf.rows["x"][:8, 0]).tolist() == [0, 1, 100, 101, 200, 201, 300, 301]
  rows, mask = buffer.sample(buf, 256, jax.random.key(0))
  assert set(np.asarray(rows.rows["x"][:, 0]).tolist()) == {0, 1, 100, 101, 200, 201, 300, 301}
  assert float(mask.min()) == 1.0
