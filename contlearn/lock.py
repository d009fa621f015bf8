"""One writer per output folder: a lock file holding the writer's process id.

`OutputLock(folder)` creates `folder/.contlearn.lock` atomically (a hard link of a
finished file)
with `host pid` in it. A second process is refused with one line naming the
holder; a lock left by a process that no longer runs on this host is taken
over, with a line that says so. Of a run's several processes only the
writing one (`contlearn.processes.is_writer`) holds the lock. The same process may take the lock again
(an experiment's run and the runs of its models nest); it is released when
the outermost holder leaves.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...   with OutputLock(d):
...     with OutputLock(d):  # the same process nests
...       held = (pathlib.Path(d) / LOCK).exists()
...   held, (pathlib.Path(d) / LOCK).exists()
(True, False)
"""

from __future__ import annotations

import errno
import os
import pathlib
import socket
import sys
from typing import ClassVar

from contlearn.errors import OutputError, RunLocked
from contlearn.processes import is_writer

LOCK = ".contlearn.lock"


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  return True


def prepare_folder(folder: pathlib.Path) -> None:
  """Creates `folder` for writing, or raises OutputError in one line (a file, read-only, full)."""
  if folder.exists() and not folder.is_dir():
    raise OutputError(f"--out {folder} is a file, not a folder")
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise OutputError(f"cannot create the output folder {folder}: {e.strerror}") from None
  if not os.access(folder, os.W_OK | os.X_OK):
    raise OutputError(f"the output folder {folder} is not writable")


class OutputLock:
  """Context manager: this process is the one writer of `folder`."""

  _held: ClassVar[dict[pathlib.Path, int]] = {}

  def __init__(self, folder: str | pathlib.Path):
    self.folder = pathlib.Path(folder).absolute()
    self.path = self.folder / LOCK
    self.me = f"{socket.gethostname()} {os.getpid()}"

  def __enter__(self) -> OutputLock:
    if self._held.get(self.folder):
      self._held[self.folder] += 1
      return self
    prepare_folder(self.folder)
    if not is_writer():  # the run's other processes write only their checkpoint shards
      self._held[self.folder] = 1
      return self
    staged = self.folder / f"{LOCK}.{os.getpid()}"
    try:
      staged.write_text(self.me + "\n")
      while True:
        try:
          os.link(staged, self.path)  # atomic, and the lock is never seen empty
          break
        except FileExistsError:
          self._take_over_if_stale()
    except OSError as e:
      reason = "no space left on device" if e.errno == errno.ENOSPC else e.strerror
      raise OutputError(f"cannot create {self.path}: {reason}") from None
    finally:
      staged.unlink(missing_ok=True)
    self._held[self.folder] = 1
    return self

  def _take_over_if_stale(self) -> None:
    try:
      holder = self.path.read_text().split()
    except FileNotFoundError:
      return  # released meanwhile: try again
    host, pid = (holder + ["", ""])[:2]
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
      print(f"contlearn: {self.folder}: taking over the lock of process {pid}, which has ended", file=sys.stderr)
      self.path.unlink(missing_ok=True)
      return
    who = f"process {pid} on {host}" if holder else "another process"
    raise RunLocked(
      f"{self.folder} is being written by {who} (lock {self.path}); wait for it, stop it, or choose another --out"
    )

  def __exit__(self, *exc) -> None:
    self._held[self.folder] -= 1
    if not self._held[self.folder]:
      del self._held[self.folder]
      if is_writer():
        self.path.unlink(missing_ok=True)
