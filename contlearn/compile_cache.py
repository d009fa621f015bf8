"""JAX's persistent compilation cache for `contlearn run`.

The command line turns it on before anything compiles, so a second run of
the same configuration (the same shapes, jax version, backend and XLA flags)
reads its programs back instead of compiling them again. Programs that
compile in under a second are not stored (jax's own threshold).

The folder, first match wins:

    --compile-cache DIR | off          the flag
    $CONTLEARN_COMPILATION_CACHE       DIR, or "off"
    $XDG_CACHE_HOME/contlearn/jax      (XDG_CACHE_HOME defaults to ~/.cache)

A folder that cannot be created leaves the cache off with one warning line;
the run goes on. The cache holds compiled programs only, never results: a
run reads the same numbers with or without it. jax 0.10.2 has segfaulted,
rarely, while serialising a program for the cache (about once in a full
run of the test suite when it stored every program); a run that dies that
way goes on from its last checkpoint with `--resume`, and `--compile-cache
off` avoids it.

>>> folder("off", {}) is None
True
>>> str(folder(None, {"CONTLEARN_COMPILATION_CACHE": "/tmp/c"}))
'/tmp/c'
>>> str(folder(None, {"XDG_CACHE_HOME": "/x"}))
'/x/contlearn/jax'
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Mapping

ENV = "CONTLEARN_COMPILATION_CACHE"
OFF = "off"


def folder(flag: str | None, environ: Mapping[str, str] = os.environ) -> pathlib.Path | None:
  """The cache folder the flag and the environment ask for; None when the cache is off."""
  choice = flag if flag is not None else environ.get(ENV)
  if choice is not None:
    return None if choice.strip().lower() == OFF else pathlib.Path(choice).expanduser()
  base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "contlearn" / "jax"


def enable(path: pathlib.Path | None) -> pathlib.Path | None:
  """Points jax's persistent compilation cache at `path` (None: leaves it off); returns the folder in use."""
  if path is None:
    return None
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    print(f"contlearn: warning: compilation cache off: cannot create {path}: {e.strerror or e}", file=sys.stderr)
    return None
  import jax

  jax.config.update("jax_compilation_cache_dir", str(path))
  return path
