"""Finding and loading experiments: one Python file each in `experiments/`.

An experiment file defines `get_config()`, returning a `Config` or a dict
`{name: Config}` (one model each), and a module docstring whose first line
says what it is and which gives the exact command and expected runtime. A
file may define `run(configs, out, resume, tokens, progress)` to replace the
default language-model driver, and `report(summaries) -> str` for its table.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
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
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"experiment file {path} defines no get_config()")
  return module


def summary_line(module: ModuleType) -> str:
  doc = (module.__doc__ or "").strip()
  return doc.splitlines()[0] if doc else ""
