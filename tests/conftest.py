"""Test set-up: 8 fake CPU devices, strict numerics, fast compiles and no persistent compilation cache, before
jax is imported."""

import ctypes
import gc
import os

import pytest

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# No persistent compilation cache, even one the environment names: under xdist, jax 0.10.2 has segfaulted a
# worker inside its serialisation of a program for that cache (`compilation_cache.put_executable_and_time`,
# `executable.serialize()`) about once a full suite, in large and small programs alike, never in a test alone.
# Storing every program in one cache for the session saved 35 s of `make test`'s 605 on 2 cores (one run each).
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
# Most of the suite's time is XLA compiling tiny programs: it compiles them without LLVM's optimisations (half the
# time; results to the last bits of float rounding). JAX_DISABLE_MOST_OPTIMIZATIONS=0 tests the optimised code.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# Not used: XLA's older LLVM IR emitter for fused elementwise code (--xla_cpu_use_fusion_emitters=false) compiles
# the suite in about 60% of the time (`make test`: 526 s against 864 s of pytest, one run each, the same day), but
# in the first `make test-all` with it a worker died of a segmentation fault inside XLA's compile of a small
# program (`fingerprint` in test_seed_lanes.py; the test passes alone), and a later run hung. A later make test-all
# with the default emitters did both (a crash in a compile, below, and a worker idle after test_tensorboard.py's
# tests, as in the run that hung): the flag is not shown to cause either; it stays off until that is traced.
# `contlearn run` in a test does not turn its cache on (tests/test_compile_cache.py tests that flag).
os.environ["CONTLEARN_COMPILATION_CACHE"] = "off"

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


# A worker's resident memory grows with the programs jax keeps compiled (a `make test-all` worker reached 11 GiB on
# 2 cores): tests/memories/test_forms.py run in one process ends at 1.82 GiB, 1.78 after `jax.clear_caches()` alone
# and 0.42 after that and glibc's `malloc_trim(0)`, which hands the freed heap back. (The other worker of that run
# died of a segmentation fault inside an XLA compile, the first worker holding 11 GiB of the machine's 23 just
# after; whether memory caused it was not traced.) A program cleared here that a later test reuses (a test group's,
# Makefile) compiles again: slower, never wrong.
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None) if os.path.exists("/proc/self/statm") else None
_CLEAR_AFTER_GROWTH = 2 * 2**30  # bytes of resident memory gained since the last clear
_resident_after_clear = 0


def _resident_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(autouse=True)
def _bounded_compiled_programs():
  """After a test, once the worker has grown by 2 GiB since the last time: drops jax's compiled programs and hands
  the freed heap back to the system (glibc only)."""
  global _resident_after_clear
  yield
  if _MALLOC_TRIM is not None and _resident_bytes() > _resident_after_clear + _CLEAR_AFTER_GROWTH:
    jax.clear_caches()
    gc.collect()
    _MALLOC_TRIM(0)
    _resident_after_clear = _resident_bytes()
