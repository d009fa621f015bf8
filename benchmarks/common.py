"""Shared benchmark helpers: timing, this machine's matmul rate, tables, JSON.

Every benchmark prints a table, writes `bench_results/<name>.json`, and ends
with one JSON line on stdout.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import pathlib
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from contlearn import provenance

RESULTS = pathlib.Path(os.environ.get("CONTLEARN_BENCH_DIR", "bench_results"))
# glibc's malloc kept off mmap and never trimming: PyTorch peers reuse their pages (docs/benchmarks.md)
TUNED_MALLOC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"


def with_tuned_malloc() -> None:
  """Runs this command again, in place of this process, with `GLIBC_TUNABLES=TUNED_MALLOC` (read by glibc at
  start-up only, so the whole process, both sides of a race, gets it); returns at once where it is already set."""
  if os.environ.get("GLIBC_TUNABLES") == TUNED_MALLOC:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, "GLIBC_TUNABLES": TUNED_MALLOC})


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
  """Median wall seconds of `fn()`, blocking on its output; warm-up calls first."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  times.sort()
  return times[len(times) // 2]


def faulted_mib(fn: Callable[[], Any], calls: int = 3) -> float:
  """Median MiB of pages this process touches for the first time (minor page faults, `getrusage`, every thread)
  during one call of `fn()` after a warm-up call: memory the call's buffers get fresh from the kernel."""
  jax.block_until_ready(fn())
  pages = []
  for _ in range(calls):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(fn())
    pages.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  return sorted(pages)[len(pages) // 2] * resource.getpagesize() / 2**20


def interleaved(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
  """Median wall seconds of each call (which must block until its work is done), timed in turn so all see
  the same machine load; one untimed warm-up call each first."""
  for call in calls.values():
    call()
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      call()
      times[name].append(time.perf_counter() - start)
  return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def matmul_chain(n: int = 1024, length: int = 8, dtype: str = "float32") -> tuple[Callable[[], Any], float]:
  """A call running `length` chained `n x n` matmuls (one compiled loop, blocking until done) and its FLOPs:
  the matmul rate timed like a model's step, e.g. in turn with them (`interleaved`)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype) / n**0.5  # keeps the chain's scale
  f = jax.jit(lambda x, y: jax.lax.fori_loop(0, length, lambda _, h: h @ y, x))
  return (lambda: jax.block_until_ready(f(a, b))), 2.0 * n**3 * length


def matmul_flops_per_s(n: int = 1024, repeats: int = 5, dtype: str = "float32") -> float:
  """Measured `dtype` matmul rate of the default device, in FLOP/s: the median of `repeats` calls of
  `matmul_chain(n)` (one `n x n` product timed alone read 181 and then 332 GFLOP/s in consecutive runs on the
  2-core machine; docs/benchmarks.md)."""
  call, flops = matmul_chain(n, dtype=dtype)
  return flops / time_call(call, repeats=repeats)


def machine() -> dict[str, Any]:
  """What ran the benchmark, as a run's `run.json` names it (`provenance.machine`, `provenance.package_versions`)."""
  return {
    "backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
    "cpu_count": os.cpu_count(),
    "processor": provenance.machine(),
    "jax": jax.__version__,
    "packages": provenance.package_versions(),
    "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
  }


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
  """Prints `rows` as a fixed-width table with the given column order: floats to 4 significant digits, those of
  10,000 or more whole, with thousands separated (14,012, not 1.401e+04).

  >>> rows = [{"part": "step", "ms": 14012.3, "share": 0.01412}]
  >>> print_table(rows, ["part", "ms", "share"])  # doctest: +NORMALIZE_WHITESPACE
  part  ms      share
  ----  ------  -------
  step  14,012  0.01412
  """

  def fmt(v):
    if isinstance(v, float):
      return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(v)

  widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns]
  print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
  print("  ".join("-" * w for w in widths))
  for r in rows:
    print("  ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)))


def write_json(name: str, payload: dict[str, Any]) -> pathlib.Path:
  """Writes `bench_results/<name>.json` and prints the payload as the last line."""
  RESULTS.mkdir(parents=True, exist_ok=True)
  path = RESULTS / f"{name}.json"
  payload = {**payload, "machine": machine()}
  path.write_text(json.dumps(payload, indent=2))
  print(json.dumps(payload))
  return path


TRACE_CLASSES = {  # words of kernel names in a CPU profiler trace, by class (the first class with a word wins)
  "dot": ("dot", "ynn", "xnn"),
  "copy/transpose": ("copy", "transpose"),
  "reduce": ("reduce",),
  "slice/broadcast/pad": ("slice", "broadcast", "concatenate", "pad", "dynamic"),
  "loop": ("while",),
}
RUNTIME_EVENTS = (  # trace events of the runtime and Python, not kernels
  "ThunkExecutor",
  "$",
  "PjitFunction",
  "end:",
  "Threadpool",
  "Slinky",
  "Batched",
  "Common",
  "Execute",
  "Parse",
  "shard",
  "Wait",
  "Allocate",
  "Handle",
  "PythonRefManager",
)


class KernelTimes(NamedTuple):
  """A profiler trace's kernels: `wall_ms` the executor's wall time per call; `ms` each kernel's time per call
  (by the compiled program's instruction name, summed over every thread, so kernels that run at once sum past
  the wall time); `runs` its runs per call in the trace. The profiler keeps a bounded number of events, so a
  call of many thousand loop steps is traced in part: there a kernel's `ms / runs`, the time of one run, is
  the figure to read."""

  wall_ms: float
  ms: collections.Counter
  runs: collections.Counter


def kernel_times(call: Callable[[], Any], repeats: int = 3) -> KernelTimes:
  """`KernelTimes` of `repeats` calls of `call()` (which must block until its work is done), traced after one
  untimed call."""
  call()
  with tempfile.TemporaryDirectory() as folder:
    jax.profiler.start_trace(folder, create_perfetto_trace=True)
    for _ in range(repeats):
      call()
    jax.profiler.stop_trace()
    (trace,) = pathlib.Path(folder).rglob("*.trace.json.gz")
    events = [e for e in json.load(gzip.open(trace))["traceEvents"] if e.get("ph") == "X"]
  wall_ms, ms, runs = 0.0, collections.Counter(), collections.Counter()
  for e in events:
    if e["name"] == "ThunkExecutor::Execute (wait for completion)":
      wall_ms += e["dur"] / 1e3 / repeats
    elif not e["name"].startswith(RUNTIME_EVENTS):
      ms[e["name"]] += e["dur"] / 1e3 / repeats
      runs[e["name"]] += 1 / repeats
  return KernelTimes(wall_ms, ms, runs)


def instructions(compiled_text: str) -> dict[str, tuple[str, str]]:
  """Each instruction of a compiled program's text (`jitted.lower(...).compile().as_text()`) by name:
  (its result shape, the op name JAX gave it, '' where XLA's fusions carry none)."""
  shape = r"\((?:[^()]|\([^()]*\))*\)|\S+"  # a tuple's shape whole (one level of nesting), else up to a space
  rows = re.findall(rf"^\s*(?:ROOT )?%([\w.-]+) = ({shape}) ([^\n]*)$", compiled_text, re.M)
  return {name: (shape, next(iter(re.findall(r'op_name="([^"]*)"', rest)), "")) for name, shape, rest in rows}


def is_backward(op_name: str) -> bool:
  """Whether a kernel with JAX's op name `op_name` belongs to the backward pass (its op is under a transpose); one
  without an op name counts as forward."""
  return "transpose(" in op_name


KERNEL_COLUMNS = ["kernel", "us_per_run", "share", "shape", "pass", "op"]  # of `costliest_kernels`'s rows


def costliest_kernels(call: Callable[[], Any], compiled_text: str, n: int, repeats: int = 1) -> list[dict]:
  """The `n` kernels with the most time in `repeats` calls of `call()` (`kernel_times`), `compiled_text` its
  compiled program's text: name, microseconds a run (a kernel of a training loop runs once a step), share of the
  traced kernel time, result shape, pass (backward when its op name is under a transpose) and the op JAX named
  (from inside the innermost loop's body)."""
  times = kernel_times(call, repeats)
  ops = instructions(compiled_text)
  total = sum(times.ms.values())
  rows = []
  for name, ms in times.ms.most_common(n):
    shape, op = ops.get(name, ("?", ""))
    where = "backward" if is_backward(op) else "forward"
    op = op.split("/while/body/")[-1].removeprefix("closed_call/")
    us = round(1e3 * ms / times.runs[name], 1)
    share = round(ms / total, 3)
    rows.append({"kernel": name, "us_per_run": us, "share": share, "shape": shape, "pass": where, "op": op})
  return rows


def op_time(fn, args, repeats: int = 3, split: bool = True) -> dict:
  """Milliseconds per call of the compiled program's kernels by class (`TRACE_CLASSES`, else elementwise), from
  a profiler trace of `repeats` calls (`kernel_times`); `wall_ms` the executor's wall time per call. With
  `split`, forward and backward apart: a kernel is backward when its op name is under a transpose (one
  without an op name counts as forward)."""
  ops = instructions(fn.lower(*args).compile().as_text())
  backward = {name for name, (_, op) in ops.items() if is_backward(op)}
  times = kernel_times(lambda: jax.block_until_ready(fn(*args)), repeats)
  out = collections.Counter({"wall_ms": times.wall_ms})
  for name, ms in times.ms.items():
    words = set(re.split(r"[_.-]", name))
    cls = next((c for c, of in TRACE_CLASSES.items() if words.intersection(of)), "elementwise")
    out[f"{'backward' if name in backward else 'forward'} {cls}" if split else cls] += ms
  return {k: round(v, 1) for k, v in sorted(out.items())}
