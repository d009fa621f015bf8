"""Several processes, one run: JAX's own multi-process runtime, one writer, one decision per chunk.

Every process runs the same program (`contlearn run ... --num-processes N
--process-id I --coordinator HOST:PORT`, or `--distributed` where JAX detects
the cluster: a TPU pod slice, SLURM, Open MPI). `initialize(cluster)` joins
them before any other JAX call; from then on `jax.devices()` is every device of
every process and one mesh spans them.

  writer     process 0 alone writes the run's logs (`metrics.jsonl`,
             TensorBoard, `summary.json`, plots) and prints progress and
             results (`is_writer`); every process takes part in each
             checkpoint save and restore, as orbax requires.
  agreement  before each chunk the processes exchange a few numbers
             (`agree`): a stop asked by a signal, the end of the stream, a
             hook's stop, the units (tokens) of the block, an error and its
             one-line message. Each process
             then takes the same decision at the same chunk, so one process
             never leaves the loop while the others wait for it in a collective.
  failure    a process that dies stops sending heartbeats; after
             `heartbeat_timeout` seconds JAX's coordination service ends the
             others with a non-zero status. Relaunch with `--resume`.

With one process every function here is immediate (no collective).

>>> is_writer(), agree(Flags(interrupt=False, end=False, stop=False, units=512, error=None))
(True, Flags(interrupt=False, end=False, stop=False, units=512, error=None))
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import NamedTuple

import numpy as np

from contlearn.errors import ConfigError, ContlearnError, DataError, NonFiniteError, OutputError
from contlearn.field_checks import FieldError, require

ENV = {
  "coordinator": "CONTLEARN_COORDINATOR",
  "num_processes": "CONTLEARN_NUM_PROCESSES",
  "process_id": "CONTLEARN_PROCESS_ID",
}
MESSAGE_BYTES = 480  # an agreed error's message is cut to this many UTF-8 bytes


@dataclasses.dataclass(frozen=True)
class Cluster:
  """How this process joins the others.

  Attributes:
    coordinator: "HOST:PORT" of process 0's coordination service; "" with `detect`.
    num_processes: processes in the run (1: no cluster).
    process_id: this process, in [0, num_processes).
    detect: let JAX find all three itself (TPU pod slice, SLURM, Open MPI).
    heartbeat_timeout: seconds without a heartbeat after which the others end.
    init_timeout: seconds to wait for every process to join.
  """

  coordinator: str = ""
  num_processes: int = 1
  process_id: int = 0
  detect: bool = False
  heartbeat_timeout: int = 60
  init_timeout: int = 300

  def __post_init__(self):
    require(self, positive=("num_processes", "heartbeat_timeout", "init_timeout"), non_negative=("process_id",))
    if self.process_id >= self.num_processes:
      raise ConfigError(f"--process-id {self.process_id}: must be below --num-processes {self.num_processes}")
    if self.coordinator:
      host, _, port = self.coordinator.rpartition(":")
      if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--coordinator {self.coordinator}: must be HOST:PORT with a port in 1..65535")
    elif self.num_processes > 1 and not self.detect:
      raise ConfigError(f"--num-processes {self.num_processes}: needs --coordinator HOST:PORT")

  @property
  def several(self) -> bool:
    return self.detect or self.num_processes > 1


def cluster_from(
  coordinator: str | None,
  num_processes: int | None,
  process_id: int | None,
  *,
  detect: bool = False,
  heartbeat_timeout: int = 60,
  init_timeout: int = 300,
  environ: dict[str, str] | None = None,
) -> Cluster:
  """The cluster of the command-line values, each missing one taken from `ENV` (`os.environ`).

  >>> cluster_from("node0:1234", 2, 1).several
  True
  >>> cluster_from(None, None, None, environ={}).several
  False
  >>> cluster_from("node0:1234", 2, 2)
  Traceback (most recent call last):
  ...
  contlearn.errors.ConfigError: --process-id 2: must be below --num-processes 2
  """
  environ = os.environ if environ is None else environ
  given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
  values = {}
  for field, value in given.items():
    text = environ.get(ENV[field], "") if value is None else value
    if field != "coordinator" and isinstance(text, str):
      if text and not text.lstrip("-").isdigit():
        raise ConfigError(f"{ENV[field]}={text}: must be an integer")
      text = int(text) if text else None
    if text not in (None, ""):
      values[field] = text
  try:
    return Cluster(**values, detect=detect, heartbeat_timeout=heartbeat_timeout, init_timeout=init_timeout)
  except FieldError as e:
    flag = "--" + e.name.replace("_", "-")
    raise ConfigError(f"{flag} {e.value}: must be {e.allowed}") from None


def initialize(cluster: Cluster) -> None:
  """Joins the other processes (`jax.distributed.initialize`); call it before any other JAX use.

  Nothing happens for one process without `detect`.

  A process other than 0 first waits up to `init_timeout` seconds for the
  coordinator to accept connections: JAX's own client would end the process
  with a stack trace instead of a line.

  Raises:
    ConfigError: the processes cannot join (no coordinator there, a timeout,
      no cluster to detect), in one line.
  """
  if not cluster.several:
    return
  if cluster.coordinator and cluster.process_id > 0:
    _wait_for(cluster.coordinator, cluster.init_timeout)
  import jax

  where = (
    {}
    if cluster.detect
    else {
      "coordinator_address": cluster.coordinator,
      "num_processes": cluster.num_processes,
      "process_id": cluster.process_id,
    }
  )
  try:
    jax.distributed.initialize(
      **where, initialization_timeout=cluster.init_timeout, heartbeat_timeout_seconds=cluster.heartbeat_timeout
    )
  except (RuntimeError, ValueError) as e:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    how = "the detected cluster" if cluster.detect else f"{cluster.coordinator} as process {cluster.process_id}"
    raise ConfigError(f"cannot join the run's processes through {how}: {reason}") from None


def _wait_for(coordinator: str, timeout: float) -> None:
  """Returns once `coordinator` ("HOST:PORT") accepts a connection; ConfigError after `timeout` seconds."""
  host, _, port = coordinator.rpartition(":")
  deadline = time.monotonic() + timeout
  while True:
    try:
      socket.create_connection((host, int(port)), timeout=1.0).close()
      return
    except OSError as e:
      if time.monotonic() > deadline:
        raise ConfigError(
          f"--coordinator {coordinator}: nothing answers there after {timeout:g} s ({e.strerror or e}); "
          "start process 0 there, or give its address"
        ) from None
      time.sleep(0.25)


def count() -> int:
  """Processes in the run (1 before or without `initialize`)."""
  import jax

  return jax.process_count()


def is_writer() -> bool:
  """Whether this process writes the run's logs and prints its progress (process 0)."""
  import jax

  return jax.process_index() == 0


class Flags(NamedTuple):
  """One process's view of a chunk boundary, or the agreed one.

  interrupt: a signal asked to stop (agreed: in any process); end: the
  feed ended (agreed: in every process); stop: a hook ended the run (any);
  units: units in the process's block (agreed: their sum); error: a problem
  that ends the run (agreed: the lowest process's, raised by every process).
  """

  interrupt: bool
  end: bool
  stop: bool
  units: int
  error: ContlearnError | None


_BY_EXIT_CODE = {
  DataError.exit_code: DataError,
  NonFiniteError.exit_code: NonFiniteError,
  OutputError.exit_code: OutputError,
}


_HEAD = 7  # interrupt, end, stop, units // 2**31, units % 2**31, exit code (0: no error), message length


def _encode(flags: Flags) -> np.ndarray:
  """`flags` as one int32 row: `_HEAD`, then the error's message, one UTF-8 byte per entry."""
  message = str(flags.error).encode()[:MESSAGE_BYTES] if flags.error is not None else b""
  row = np.zeros(_HEAD + MESSAGE_BYTES, np.int32)
  code = flags.error.exit_code if flags.error is not None else 0
  row[:_HEAD] = flags.interrupt, flags.end, flags.stop, flags.units >> 31, flags.units & (2**31 - 1), code, len(message)
  row[_HEAD : _HEAD + len(message)] = np.frombuffer(message, np.uint8)
  return row


def _decide(rows: np.ndarray, mine: Flags) -> Flags:
  """The agreed flags of every process's row (`rows` [processes, ...]; see `Flags`).

  >>> ok, failed = Flags(False, True, False, 0, None), Flags(False, False, False, 9, DataError("bad token"))
  >>> _decide(np.stack([_encode(ok), _encode(failed)]), ok)
  Flags(interrupt=False, end=False, stop=False, units=9, error=DataError('bad token'))
  """
  error = mine.error
  failed = np.flatnonzero(rows[:, 5])
  if failed.size and error is None:
    row = rows[failed[0]]
    message = bytes(row[_HEAD : _HEAD + row[6]].astype(np.uint8)).decode(errors="replace")
    error = _BY_EXIT_CODE.get(int(row[5]), ContlearnError)(message)
  units = int(sum((int(high) << 31) + int(low) for high, low in rows[:, 3:5]))
  return Flags(bool(rows[:, 0].any()), bool(rows[:, 1].all()), bool(rows[:, 2].any()), units, error)


def agree(flags: Flags) -> Flags:
  """Every process's `flags` combined (`_decide`); a collective every process must call."""
  if count() == 1:
    return flags
  from jax.experimental import multihost_utils

  rows = np.asarray(multihost_utils.process_allgather(_encode(flags)))
  return _decide(rows, flags)


__all__ = ["ENV", "Cluster", "Flags", "agree", "cluster_from", "count", "initialize", "is_writer"]
