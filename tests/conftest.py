"""Test set-up: 8 fake CPU devices, strict numerics, fast compiles and one compilation cache for the session,
before jax is imported."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests build many identical small programs in different processes: jax's persistent cache, in a folder of
# this session's own (made by the first process, inherited by the xdist workers and the processes tests start,
# removed by the process that made it), builds each one once. Counting programs: tests/compiles.py.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="contlearn-tests-jax-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Most of the suite's time is XLA compiling tiny programs: it compiles them without LLVM's optimisations (half the
# time; results to the last bits of float rounding). JAX_DISABLE_MOST_OPTIMIZATIONS=0 tests the optimised code.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# `contlearn run` in a test does not point the cache elsewhere (tests/test_compile_cache.py tests that flag).
os.environ["CONTLEARN_COMPILATION_CACHE"] = "off"

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def step_not_stored():
  """Compiles without storing programs in the session's persistent cache. Under xdist, in full suites with jax
  0.10.2, a worker has segfaulted inside jax's serialisation of a large program for that cache
  (`compilation_cache.put_executable_and_time`): titans_mag's training step (`make test-all` at c294634, 0b228f9
  and 5dd981c) and the Pallas self-modifying Titans byte LM's gradient (at 99a4e31); never when the file ran
  alone; not traced further. It has also hit a small program (test_sharding's FSDP lanes, at 5f9c197), so it is
  not particular to these tests, and a full suite can still lose a worker to it. What a test computes and
  asserts is unchanged."""
  before = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))
  yield
  jax.config.update("jax_persistent_cache_min_compile_time_secs", before)
