"""Finding and loading experiments: one Python file each in `experiments/`.

An experiment file defines `get_config()` and a module docstring whose first
line says what it is and which gives the exact command and expected runtime.
A stream experiment's `get_config()` returns a `Config` or a dict
`{name: Config}` (one model each), run by the stream driver; a file may
define `run(configs, out, resume, tokens, progress)` and `report(summaries)`
to replace it. Any other experiment brings its own `main()`, which reads its
options from `sys.argv` (`contlearn run NAME -- OPTIONS`).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
from types import ModuleType

from contlearn.errors import ConfigError

DEFAULT = "byte_lm"


def experiments_dir() -> pathlib.Path:
  """`$CONTLEARN_EXPERIMENTS`, else `./experiments`, else the repository's."""
  if os.environ.get("CONTLEARN_EXPERIMENTS"):
    return pathlib.Path(os.environ["CONTLEARN_EXPERIMENTS"])
  here = pathlib.Path.cwd() / "experiments"
  if here.is_dir():
    return here
  return pathlib.Path(__file__).resolve().parent.parent / "experiments"


def available() -> dict[str, pathlib.Path]:
  folder = experiments_dir()
  if not folder.is_dir():
    return {}
  return {p.stem: p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")}


def load(name: str) -> ModuleType:
  """The experiment module `name` (or a path to a .py file)."""
  path = pathlib.Path(name)
  if not (path.suffix == ".py" and path.is_file()):
    found = available()
    if name not in found:
      choices = ", ".join(found) or f"none (no experiments in {experiments_dir()})"
      raise ConfigError(f"unknown experiment {name!r}; available: {choices}")
    path = found[name]
  spec = importlib.util.spec_from_file_location(f"contlearn_experiment_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up while it loads
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"experiment file {path} defines no get_config()")
  return module


def is_stream_experiment(configs) -> bool:
  """Whether `get_config()` returned a stream `Config` or a dict of them."""
  from contlearn.config import Config

  if isinstance(configs, dict):
    return bool(configs) and all(isinstance(c, Config) for c in configs.values())
  return isinstance(configs, Config)


def summary_line(module: ModuleType) -> str:
  doc = (module.__doc__ or "").strip()
  return doc.splitlines()[0] if doc else ""
