"""Our event files parse as TensorBoard events (checked with tensorboardX's protos)."""

import struct

from contlearn.tensorboard import ScalarWriter, crc32c


def test_crc32c_known_vector():
  assert crc32c(b"123456789") == 0xE3069283


def test_event_file_round_trip(tmp_path):
  from tensorboardX.proto import event_pb2

  writer = ScalarWriter(tmp_path)
  writer.add_scalar("loss", 2.5, 100)
  writer.add_scalar("bits_per_byte", 3.25, 2**40)
  writer.close()
  data = writer.path.read_bytes()
  events = []
  while data:
    (length,) = struct.unpack("<Q", data[:8])
    payload = data[12 : 12 + length]
    (crc,) = struct.unpack("<I", data[12 + length : 16 + length])
    masked = (((crc32c(payload) >> 15) | (crc32c(payload) << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert crc == masked
    event = event_pb2.Event()
    event.ParseFromString(payload)
    events.append(event)
    data = data[16 + length :]
  assert events[0].file_version == "brain.Event:2"
  assert [(e.step, e.summary.value[0].tag, e.summary.value[0].simple_value) for e in events[1:]] == [
    (100, "loss", 2.5),
    (2**40, "bits_per_byte", 3.25),
  ]
