"""`launch`: one contlearn command as several local processes joined by JAX's runtime, on CPU.

Each process gets its own fake CPU devices (`XLA_FLAGS` replaced, not the 8
devices the top-level conftest gives the test process), a free coordinator
port, a short heartbeat, and its own output; every process started is killed
by its id when the test ends, whatever happened.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEARTBEAT_S = 5


class Rank(NamedTuple):
  """What one process left: its exit status and its output."""

  code: int | None
  stdout: str
  stderr: str


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def child_env(devices: int) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTLEARN_", "JAX_", "XLA_"))}
  env.update(
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
  )
  return env


class Launcher:
  """Starts commands as process groups of ranks and waits for them; `close` kills what is left."""

  def __init__(self):
    self.started: list[subprocess.Popen] = []

  def start(self, n_procs: int, devices_per_proc: int, args: Sequence[str]) -> list[subprocess.Popen]:
    """`python -m contlearn *args` as `n_procs` processes (one process: no cluster flags)."""
    port = free_port()
    procs = []
    for rank in range(n_procs):
      cluster = (
        ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n_procs), "--process-id", str(rank)]
        if n_procs > 1
        else []
      )
      cmd = [sys.executable, "-m", "contlearn", *args, *cluster, "--heartbeat-timeout", str(HEARTBEAT_S)]
      out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
      proc = subprocess.Popen(cmd, env=child_env(devices_per_proc), cwd=ROOT, stdout=out, stderr=err, text=True)
      proc.outputs = (out, err)
      procs.append(proc)
      self.started.append(proc)
    return procs

  def wait(self, procs: Sequence[subprocess.Popen], timeout: float) -> list[Rank]:
    """Every rank's result; those still running after `timeout` seconds are killed (code None)."""
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
      try:
        codes.append(proc.wait(timeout=max(0.0, deadline - time.monotonic())))
      except subprocess.TimeoutExpired:
        codes.append(None)
    self.kill(procs)
    ranks = []
    for proc, code in zip(procs, codes, strict=True):
      texts = []
      for f in proc.outputs:
        f.seek(0)
        texts.append(f.read())
        f.close()
      ranks.append(Rank(code, *texts))
    return ranks

  def __call__(self, n_procs: int, devices_per_proc: int, args: Sequence[str], timeout: float) -> list[Rank]:
    return self.wait(self.start(n_procs, devices_per_proc, args), timeout)

  def kill(self, procs: Sequence[subprocess.Popen]) -> None:
    for proc in procs:
      if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

  def close(self) -> None:
    self.kill(self.started)


@pytest.fixture
def launch() -> Iterator[Launcher]:
  """`launch(n_procs, devices_per_proc, args, timeout) -> [Rank]`; `launch.start`/`launch.wait` to act between."""
  launcher = Launcher()
  try:
    yield launcher
  finally:
    launcher.close()
