"""XLA settings contlearn makes, on import, before jax starts its CPU backend (`XLA_FLAGS`, read once, at the
first computation: importing contlearn after a computation has run leaves them out).

jaxlib 0.10.2's CPU backend hands some reductions to YNNPACK by default; on CompressARC's decoder one of those
fusions crashes the process in YNNPACK's transpose (a segmentation fault inside `ynn_invoke_runtime`, on the
CPU's compute threads; `tests/compress_arc/test_learner.py` runs into it). contlearn takes that one fusion
type out of the defaults, `--xla_cpu_experimental_ynn_fusion_type=-reduce`, for jaxlib 0.10.2 and later (the
version it was checked on; XLA refuses a flag it does not know, so earlier versions, which may lack it, get
nothing), unless `XLA_FLAGS` already sets the fusion types.

>>> env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
>>> add_to(env, jaxlib=(0, 10, 2))
>>> env["XLA_FLAGS"]
'--xla_force_host_platform_device_count=8 --xla_cpu_experimental_ynn_fusion_type=-reduce'
>>> add_to(env, jaxlib=(0, 10, 2)); env["XLA_FLAGS"].count("ynn")  # once
1
"""

import importlib.metadata
import os
from collections.abc import MutableMapping

YNN_FUSION_TYPES = "--xla_cpu_experimental_ynn_fusion_type"
WITHOUT_REDUCE = f"{YNN_FUSION_TYPES}=-reduce"
FIRST_WITH_THE_FLAG = (0, 10, 2)


def jaxlib_version() -> tuple[int, ...]:
  """The installed jaxlib's (major, minor, patch), read without importing it; () when it is not installed."""
  try:
    version = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return ()
  return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in version.split(".")[:3])


def add_to(environ: MutableMapping[str, str] = os.environ, *, jaxlib: tuple[int, ...] | None = None) -> None:
  """Adds the settings above to `environ["XLA_FLAGS"]` (where the user has not set them)."""
  jaxlib = jaxlib_version() if jaxlib is None else jaxlib
  flags = environ.get("XLA_FLAGS", "")
  if jaxlib >= FIRST_WITH_THE_FLAG and YNN_FUSION_TYPES not in flags:
    environ["XLA_FLAGS"] = f"{flags} {WITHOUT_REDUCE}".strip()


add_to()
