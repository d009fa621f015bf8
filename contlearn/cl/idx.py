"""MNIST's IDX files, read with numpy alone (MNIST, Fashion-MNIST, KMNIST, EMNIST).

A folder holds four files, each gzipped (`.gz`) or plain:

    train-images-idx3-ubyte   train-labels-idx1-ubyte
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

The test files may be named `test-...` instead of `t10k-...`, a dot may
stand before `idx` (`train-images.idx3-ubyte`, as some mirrors name them),
and all four may share a prefix, given after the folder: `/data/emnist/emnist-digits-`
reads `emnist-digits-train-images-idx3-ubyte.gz` and its three companions in
`/data/emnist` (EMNIST's names).

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
SPLITS = {"train": ("train",), "test": ("t10k", "test")}  # file-name starts of each split, in the order tried
SEPARATORS = ("-", ".")  # before "idx": MNIST's own names, then some mirrors' (train-images.idx3-ubyte)


class Split(NamedTuple):
  """One split as stored: images uint8 [N, H, W], labels uint8 [N]."""

  images: np.ndarray
  labels: np.ndarray


def locate(location: str) -> tuple[str, str]:
  """(folder, file-name prefix) of an IDX location: a folder, or a folder's path followed by the prefix its
  files share (`/data/emnist/emnist-digits-`)."""
  if os.path.isdir(location):
    return location, ""
  folder, prefix = os.path.split(location)
  starts = tuple(f"{prefix}{name}-" for names in SPLITS.values() for name in names)
  if not os.path.isdir(folder or ".") or not any(entry.startswith(starts) for entry in os.listdir(folder or ".")):
    raise DataError(
      f"{location}: no such folder, nor IDX files named {prefix}train-... in {folder or '.'}"
      " (an IDX location is a folder, or a folder and a file-name prefix)"
    )
  return folder, prefix


def find(folder: str, stems: tuple[str, ...]) -> str:
  """The path of the first of `stems` (each plain, else `.gz`) in `folder`."""
  for stem in stems:
    for name in (stem, stem + ".gz"):
      path = os.path.join(folder, name)
      if os.path.isfile(path):
        return path
  named = " or ".join(f"{stem}[.gz]" for stem in stems)
  raise DataError(f"{os.path.join(folder, stems[0])}[.gz]: missing (an IDX folder needs {named})")


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


def split_files(folder: str, split: str, prefix: str = "") -> tuple[str, str]:
  """The paths of `split`'s ("train" or "test") images and labels files in `folder`, names starting with
  `prefix`; the labels file named as the images file that was found (`t10k-` or `test-`, `-idx` or `.idx`)."""
  labels_of = {  # images stem -> its labels stem, in the order tried
    f"{prefix}{name}-images{sep}idx3-ubyte": f"{prefix}{name}-labels{sep}idx1-ubyte"
    for name in SPLITS[split]
    for sep in SEPARATORS
  }
  images_path = find(folder, tuple(labels_of))
  return images_path, find(folder, (labels_of[os.path.basename(images_path).removesuffix(".gz")],))


def read_split(folder: str, split: str, prefix: str = "") -> Split:
  """The images and labels of `split` ("train" or "test") in `folder` (`split_files`)."""
  images_path, labels_path = split_files(folder, split, prefix)
  images = read_array(images_path, IMAGES_MAGIC)
  labels = read_array(labels_path, LABELS_MAGIC)
  if len(images) != len(labels):
    raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
  if len(images) == 0:
    raise DataError(f"{labels_path}: no {split} examples")
  return Split(images, labels)


def read_folder(location: str) -> tuple[Split, Split, int]:
  """The train and test splits at `location` (a folder, or a folder and a file-name prefix) and the number of
  classes, with labels numbered from 0 in the order of the values the train labels take (as stored in MNIST's
  files; EMNIST letters' 1-26 become 0-25).

  Raises:
    DataError: a file missing or malformed, counts that differ, or a test
      label that no train example has.
  """
  folder, prefix = locate(location)
  train, test = read_split(folder, "train", prefix), read_split(folder, "test", prefix)
  classes = np.unique(train.labels)
  unseen = np.setdiff1d(test.labels, classes)
  if unseen.size:
    _, path = split_files(folder, "test", prefix)
    raise DataError(f"{path}: labels {_few(unseen)} not among the {classes.size} train label values ({_few(classes)})")

  def numbered(split: Split) -> Split:
    return Split(split.images, np.searchsorted(classes, split.labels).astype(np.uint8))

  return numbered(train), numbered(test), len(classes)


def _few(values: np.ndarray) -> str:
  """The first six of `values`, comma-separated, '...' after them if there are more."""
  return ", ".join(map(str, values[:6])) + (", ..." if values.size > 6 else "")
