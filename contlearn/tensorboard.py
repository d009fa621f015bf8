"""A minimal TensorBoard event-file writer for scalars (no TensorFlow, no torch).

An event file is a sequence of TFRecords, each a serialised `Event` protocol
buffer. Scalars need three messages, written here by hand in the protobuf
wire format:

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
              Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

A TFRecord is `len (u64) | masked_crc32c(len) (u32) | data | masked_crc32c(data) (u32)`,
little-endian, with CRC-32C (Castagnoli).
"""

from __future__ import annotations

import os
import pathlib
import socket
import struct
import time


def _crc32c_table() -> list[int]:
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  n &= (1 << 64) - 1
  out = bytearray()
  while True:
    low = n & 0x7F
    n >>= 7
    if n:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
  return _varint((number << 3) | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
  return _field(number, 2) + _varint(len(payload)) + payload


def scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
  """A serialised `Event` holding one scalar summary."""
  value_msg = _length_delimited(1, tag.encode()) + _field(2, 5) + struct.pack("<f", value)
  summary = _length_delimited(1, value_msg)
  return _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step) + _length_delimited(5, summary)


def version_event(wall_time: float) -> bytes:
  return _field(1, 1) + struct.pack("<d", wall_time) + _length_delimited(3, b"brain.Event:2")


def tfrecord(data: bytes) -> bytes:
  length = struct.pack("<Q", len(data))
  return length + struct.pack("<I", _masked(crc32c(length))) + data + struct.pack("<I", _masked(crc32c(data)))


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
  shift = value = 0
  while True:
    byte = data[i]
    value |= (byte & 0x7F) << shift
    i, shift = i + 1, shift + 7
    if not byte & 0x80:
      return value, i


def event_step(event: bytes) -> int:
  """The `step` field of a serialised `Event` (0 when absent)."""
  i = 0
  while i < len(event):
    key, i = _read_varint(event, i)
    number, wire = key >> 3, key & 7
    if wire == 0:
      value, i = _read_varint(event, i)
      if number == 2:
        return value
    elif wire == 1:
      i += 8
    elif wire == 5:
      i += 4
    elif wire == 2:
      length, i = _read_varint(event, i)
      i += length
    else:
      raise ValueError(f"unexpected protobuf wire type {wire}")
  return 0


def records(data: bytes) -> list[bytes]:
  """The payloads of the whole TFRecords in `data` (a torn last record is left out)."""
  out, i = [], 0
  while i + 12 <= len(data):
    (length,) = struct.unpack("<Q", data[i : i + 8])
    end = i + 12 + length + 4
    if end > len(data):
      break
    out.append(data[i + 12 : i + 12 + length])
    i = end
  return out


def truncate_events(directory: str | pathlib.Path, max_step: int) -> None:
  """Drops the events past `max_step` (and torn records) from every event file in `directory`.

  A resumed run redoes the steps after its checkpoint; without this,
  TensorBoard would show them twice.
  """
  for path in pathlib.Path(directory).glob("events.out.tfevents.*"):
    kept = [r for r in records(path.read_bytes()) if event_step(r) <= max_step]
    staged = path.with_name(path.name + ".tmp")
    staged.write_bytes(b"".join(tfrecord(r) for r in kept))
    staged.replace(path)


class ScalarWriter:
  """Appends scalars to a new event file in `directory` (one per writer)."""

  def __init__(self, directory: str | pathlib.Path):
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = time.time()
    name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
    self.path = directory / name
    self._file = self.path.open("ab")
    self._file.write(tfrecord(version_event(now)))

  def add_scalar(self, tag: str, value: float, step: int) -> None:
    self._file.write(tfrecord(scalar_event(tag, float(value), int(step), time.time())))

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()
