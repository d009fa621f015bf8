"""MNIST's IDX files, read with numpy alone (MNIST, Fashion-MNIST, EMNIST).

A folder holds four files, each gzipped (`.gz`) or plain:

    train-images-idx3-ubyte   train-labels-idx1-ubyte
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

Each file is a big-endian header, the magic number 0x00000803 (images: uint8,
three dimensions) or 0x00000801 (labels: uint8, one dimension), then one
uint32 per dimension, then the uint8 data in row-major order. Every problem
is a `DataError` of one line that names the file.
"""

from __future__ import annotations

import gzip
import os
from typing import NamedTuple

import numpy as np

from contlearn.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
SPLITS = {"train": "train", "test": "t10k"}


class Split(NamedTuple):
  """One split as stored: images uint8 [N, H, W], labels uint8 [N]."""

  images: np.ndarray
  labels: np.ndarray


def find(folder: str, stem: str) -> str:
  """The path of `stem` or `stem.gz` in `folder` (the plain file if both are there)."""
  for name in (stem, stem + ".gz"):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      return path
  raise DataError(f"{os.path.join(folder, stem)}[.gz]: missing (an IDX folder needs {stem} or {stem}.gz)")


def read_bytes(path: str) -> bytes:
  """The file's bytes, un-gzipped if its name ends in .gz."""
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      return f.read()
  except (OSError, EOFError) as e:  # gzip's BadGzipFile is an OSError; a cut gzip stream is an EOFError
    raise DataError(f"{path}: cannot be read ({e})") from e


def read_array(path: str, magic: int) -> np.ndarray:
  """The uint8 array of the IDX file at `path`, whose magic number must be `magic`; shape from its header."""
  data = read_bytes(path)
  if len(data) < 4:
    raise DataError(f"{path}: truncated, {len(data)} bytes, shorter than the 4-byte magic number")
  found = int.from_bytes(data[:4], "big")
  if found != magic:
    raise DataError(f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x}")
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(data) < header:
    raise DataError(f"{path}: truncated, {len(data)} bytes, shorter than its {header}-byte header")
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
  size = int(np.prod(shape))
  if len(data) - header != size:
    raise DataError(f"{path}: {len(data) - header} bytes of data, its header {shape} needs {size}")
  return np.frombuffer(data, np.uint8, size, header).reshape(shape)


def read_split(folder: str, split: str) -> Split:
  """The images and labels of `split` ("train" or "test") in `folder`."""
  prefix = SPLITS[split]
  images = read_array(find(folder, f"{prefix}-images-idx3-ubyte"), IMAGES_MAGIC)
  labels_path = find(folder, f"{prefix}-labels-idx1-ubyte")
  labels = read_array(labels_path, LABELS_MAGIC)
  if len(images) != len(labels):
    raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
  if len(images) == 0:
    raise DataError(f"{labels_path}: no {split} examples")
  return Split(images, labels)


def read_folder(folder: str) -> tuple[Split, Split, int]:
  """The train and test splits of `folder` and the number of classes, 1 + the largest train label.

  Raises:
    DataError: a file missing or malformed, counts that differ, or a test
      label that no train label reaches.
  """
  train, test = read_split(folder, "train"), read_split(folder, "test")
  n_classes = int(train.labels.max()) + 1
  if int(test.labels.max()) >= n_classes:
    path = find(folder, "t10k-labels-idx1-ubyte")
    raise DataError(f"{path}: label {int(test.labels.max())} out of range, the train labels are 0..{n_classes - 1}")
  return train, test, n_classes
