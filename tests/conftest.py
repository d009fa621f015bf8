"""Test set-up: 8 fake CPU devices, strict numerics, fast compiles and no persistent compilation cache, before
jax is imported."""

import os

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
# program (`fingerprint` in test_seed_lanes.py; the test passes alone), not seen with the default emitters since
# the persistent cache above was turned off.
# `contlearn run` in a test does not turn its cache on (tests/test_compile_cache.py tests that flag).
os.environ["CONTLEARN_COMPILATION_CACHE"] = "off"

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
