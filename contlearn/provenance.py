"""Which code made a run's results: `out/run.json`, one entry per invocation.

`contlearn run` records, in the output folder, the experiment, the command
line, the code version (the git commit of the contlearn checkout, marked
"+modified" when its files differ from it; the installed version otherwise),
the versions of jax and the numerical libraries under it (`PACKAGES`), the
processes and devices, the machine (`machine`: the same code gives
bit-for-bit the same numbers only with the same libraries on the same kind
of processor) and the time, and appends one
entry each time the run is resumed. `record_end` adds when the invocation
ended and its exit status (0, or the error's, or 130 for a signal); an
entry without them is an invocation that was killed or is still running.
A run whose entries name two code
versions mixes results of both: `record` says so in one line, so a table is
never silently built from two versions. Each result's `summary.json` (a
stream run's, a continual-learning cell's) also names the code that
finished it (`code_version`).

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> record(out, "byte_lm", ["run", "byte_lm"])["experiment"]
'byte_lm'
>>> record_end(out, 0)
>>> json.loads((out / "run.json").read_text())["invocations"][-1]["exit_status"]
0
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import pathlib
import platform
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import jax

from contlearn.processes import is_writer
from contlearn.run_log import write_atomic

PACKAGE = pathlib.Path(__file__).resolve().parent
PACKAGES = ("jaxlib", "numpy", "flax", "optax")  # besides jax, what a run's numbers depend on


@functools.cache
def code_version() -> str:
  """The git commit of the checkout contlearn is imported from ("<sha>+modified" when its tracked
  files differ from it), or "contlearn <version>" for an installed copy outside git."""

  def git(*args: str) -> str:
    return subprocess.run(
      ["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()

  try:
    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".")
  except (OSError, subprocess.SubprocessError):
    try:
      return f"contlearn {importlib.metadata.version('contlearn')}"
    except importlib.metadata.PackageNotFoundError:
      return "contlearn (unknown version)"
  return commit + ("+modified" if changed else "")


def cpu_name(cpuinfo: str) -> str:
  r"""The processor of Linux's `/proc/cpuinfo` text: its model name, family and model, and the widest vector
  extension among AVX-512, AVX2, AVX and SSE4.2 (XLA compiles for the host's instruction set, which can
  change float32 rounding).

  >>> cpu_name("model name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu avx avx2 avx512f\n")
  'AMD EPYC, family 25 model 17, avx512f'
  """
  fields: dict[str, str] = {}
  for line in cpuinfo.splitlines():
    key, sep, value = line.partition(":")
    if sep:
      fields.setdefault(key.strip(), value.strip())  # the first processor's
  flags = fields.get("flags", "").split()
  parts = [
    fields.get("model name", "unknown processor"),
    f"family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields and "model" in fields else "",
    next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), ""),
  ]
  return ", ".join(p for p in parts if p)


def package_versions() -> dict[str, str]:
  """The installed version of each of `PACKAGES` ("absent" where it is not installed)."""

  def version(name: str) -> str:
    try:
      return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      return "absent"

  return {name: version(name) for name in PACKAGES}


@functools.cache
def machine() -> str:
  """What computed the run: "<platform>: <device kind>" for an accelerator, "cpu: <cpu_name>" for a CPU
  (`platform.processor()` where there is no `/proc/cpuinfo`)."""
  device = jax.devices()[0]
  if device.platform != "cpu":
    return f"{device.platform}: {device.device_kind}"
  try:
    return f"cpu: {cpu_name(pathlib.Path('/proc/cpuinfo').read_text())}"
  except OSError:
    return f"cpu: {platform.processor() or platform.machine()}"


def record(out: pathlib.Path, experiment: str, argv: Sequence[str]) -> dict[str, Any]:
  """Appends this invocation to `out/run.json` (the writing process only) and returns its entry;
  warns on stderr when an earlier invocation of the run used another code version."""
  entry = {
    "experiment": experiment,
    "command": " ".join(["contlearn", *argv]),
    "code": code_version(),
    "jax": jax.__version__,
    "packages": package_versions(),
    "processes": jax.process_count(),
    "devices": jax.device_count(),
    "machine": machine(),
    "started": _now(),
  }
  if not is_writer():
    return entry
  path = out / "run.json"
  try:
    earlier = json.loads(path.read_text())["invocations"]
  except (OSError, ValueError, KeyError, TypeError):
    earlier = []
  versions = sorted({e.get("code") for e in earlier} - {entry["code"]})
  if versions:
    print(
      f"contlearn: {out} holds results of code {', '.join(map(str, versions))}; this invocation runs "
      f"{entry['code']}: its outputs mix code versions (see {path})",
      file=sys.stderr,
    )
  out.mkdir(parents=True, exist_ok=True)
  write_atomic(path, json.dumps({"invocations": [*earlier, entry]}, indent=1))
  return entry


def record_end(out: pathlib.Path, exit_status: int) -> None:
  """Adds the time and `exit_status` to the last entry of `out/run.json`, this invocation's (`record` wrote it
  under the folder's lock; the writing process only)."""
  if not is_writer():
    return
  path = out / "run.json"
  invocations = json.loads(path.read_text())["invocations"]
  invocations[-1].update(ended=_now(), exit_status=exit_status)
  write_atomic(path, json.dumps({"invocations": invocations}, indent=1))


def _now() -> str:
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


__all__ = ["PACKAGES", "code_version", "cpu_name", "machine", "package_versions", "record", "record_end"]
