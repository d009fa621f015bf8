"""Test set-up: 8 fake CPU devices and strict numerics, before jax is imported."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Runs made through the command line compile afresh (tests/test_compile_cache.py turns the cache on).
os.environ["CONTLEARN_COMPILATION_CACHE"] = "off"

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
