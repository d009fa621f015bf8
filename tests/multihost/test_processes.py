"""The pieces of a multi-process run that one process can check: launch values, the agreement, lane shares."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from contlearn import processes, sharding
from contlearn.cli import main
from contlearn.errors import DataError, NonFiniteError
from contlearn.processes import Flags, _decide, _encode
from contlearn.stream import DocumentLanes, LaneShare, share_of, split_bytes


@pytest.mark.parametrize(
  "flags, message",
  [
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "--process-id 2: must be below"),
    (["--coordinator", "h:99999", "--num-processes", "2", "--process-id", "0"], "--coordinator h:99999: must be"),
    (["--coordinator", "h", "--num-processes", "2", "--process-id", "0"], "--coordinator h: must be HOST:PORT"),
    (["--num-processes", "2", "--process-id", "1"], "--num-processes 2: needs --coordinator"),
    (
      ["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"],
      "--num-processes 0: must be an integer > 0",
    ),
    (
      ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "-1"],
      "--process-id -1: must be an integer >= 0",
    ),
    (["--heartbeat-timeout", "0"], "--heartbeat-timeout 0: must be an integer > 0"),
  ],
)
def test_bad_launch_values_are_one_line_and_status_2(flags, message, capsys, monkeypatch):
  for name in processes.ENV.values():
    monkeypatch.delenv(name, raising=False)
  assert main(["run", "byte_lm", "--no-progress", *flags]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith(f"contlearn: error: {message}") and len(err.splitlines()) == 1, err


def test_a_process_that_finds_no_coordinator_says_so_in_one_line(capsys):
  with socket.socket() as s:  # a port nothing listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1", "--init-timeout", "1"]
  assert main(["run", "byte_lm", "--no-progress", *flags]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith(f"contlearn: error: --coordinator 127.0.0.1:{port}: nothing answers there after 1 s")
  assert len(err.splitlines()) == 1


def test_the_environment_fills_what_the_flags_leave_out():
  environ = {"CONTLEARN_COORDINATOR": "node0:4000", "CONTLEARN_NUM_PROCESSES": "4", "CONTLEARN_PROCESS_ID": "3"}
  assert processes.cluster_from(None, None, None, environ=environ) == processes.Cluster("node0:4000", 4, 3)
  assert processes.cluster_from(None, None, 1, environ=environ).process_id == 1  # a flag wins
  with pytest.raises(processes.ConfigError, match="CONTLEARN_PROCESS_ID=x: must be an integer"):
    processes.cluster_from(None, None, None, environ={**environ, "CONTLEARN_PROCESS_ID": "x"})
  assert processes.cluster_from(None, None, None, detect=True, environ={}).several


def test_the_agreement_takes_any_stop_every_end_the_sum_and_the_first_error():
  quiet = Flags(False, False, False, 10, None)
  rows = np.stack(
    [
      _encode(quiet),
      _encode(Flags(True, True, False, 2**33, NonFiniteError("chunk 3: non-finite loss é"))),
      _encode(Flags(False, True, True, 1, DataError("token id 300"))),
    ]
  )
  agreed = _decide(rows, quiet)
  assert (agreed.interrupt, agreed.end, agreed.stop, agreed.units) == (True, False, True, 10 + 2**33 + 1)
  assert type(agreed.error) is NonFiniteError and str(agreed.error) == "chunk 3: non-finite loss é"
  assert _decide(rows[1:], quiet).end
  mine = DataError("mine")
  assert _decide(rows, quiet._replace(error=mine)).error is mine  # a process raises its own error


def test_lane_shares_read_their_lanes_of_the_whole_stream():
  data = bytes(range(256)) * 7
  whole = DocumentLanes(split_bytes(data, 8), steps=3, batch=8, seq=16)
  shares = [whole.share(range(0, 4)), share_of(whole, range(4, 8))]
  position = whole.start()
  positions = [position, position]
  for _ in range(4):
    chunk, position = whole.next(position)
    parts = [share.next(p) for share, p in zip(shares, positions, strict=True)]
    positions = [p for _, p in parts]
    np.testing.assert_array_equal(np.concatenate([c.tokens for c, _ in parts], axis=1), chunk.tokens)
    np.testing.assert_array_equal(np.concatenate([c.mask for c, _ in parts], axis=1), chunk.mask)
    assert positions[0][:4] == position[:4] and positions[1][4:] == position[4:]
  # one process: its lanes as read, the others (read by no process) as they are
  assert shares[1].gather(positions[1]) == positions[1] != position
  generic = LaneShare(whole, range(2, 4))
  chunk, after = generic.next(whole.start())
  assert chunk.tokens.shape == (3, 2, 17) and after == whole.next(whole.start())[1]
  assert not shares[0].idle().mask.any() and shares[0].idle().tokens.shape == (3, 4, 17)


def test_one_process_holds_every_lane():
  assert sharding.local_lanes(16, sharding.make_mesh()) == range(16)
