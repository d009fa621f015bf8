"""Finding, loading and describing experiments.

An experiment is one Python file in the repository's top-level `experiments/`
folder, installed as the subpackage `contlearn.experiments` (pyproject.toml
maps the folder there), so a wheel carries every experiment and `contlearn
run NAME` finds them from any working directory. A file elsewhere runs by its
path: `contlearn run path/to/my_exp.py`.

The protocol of an experiment file:

- a module docstring: its first line says what the experiment is; the rest
  gives the exact command and the expected runtime;
- `get_config()`: one frozen dataclass (any typed one, possibly nested), a
  stream `contlearn.config.Config`, or a dict `{model name: Config}`;
- optionally `run(cfg, out, *, resume, progress)`, which runs `cfg` into the
  folder `out` and returns a result; without it `cfg` must be a `Config` or a
  dict of them, run by `contlearn.driver.run_experiment`;
- optionally `report(result) -> str`, printed after the run (default for
  stream configs: `contlearn.driver.summary_table`).

A `run` that stops early because a signal asked it to (the CLI's stop event)
raises KeyboardInterrupt, as `contlearn.driver.train` does.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import pathlib
import pkgutil
import re
import sys
import typing
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from contlearn import field_checks
from contlearn.config import Config
from contlearn.errors import ConfigError
from contlearn.mixer_configs import MixerConfig

DEFAULT = "byte_lm"
PACKAGE = "contlearn.experiments"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
  """`"did you mean X? "` (to start a sentence) for the choice closest to `word`, or `""` when none is close."""
  hint = field_checks.did_you_mean(word, choices)
  return f"{hint} " if hint else ""


#### Finding and loading ####


def _source_folder() -> pathlib.Path:
  """The top-level `experiments/` folder of a source checkout next to this package."""
  return pathlib.Path(__file__).resolve().parent.parent / "experiments"


def package() -> ModuleType:
  """The `contlearn.experiments` package, always the one beside the imported `contlearn`.

  Installed (wheel or editable install), it is imported as usual. From a
  source checkout (the package imported through PYTHONPATH, perhaps beside
  an editable install of another checkout, or an older editable install
  that may even hold a module of that name), the checkout's `experiments/`
  folder is registered under the same name, so the experiments run with
  the library of the same checkout, the one a run's provenance names, and
  import each other through the package in every case.
  """
  init = _source_folder() / "__init__.py"
  try:
    module = importlib.import_module(PACKAGE)
    paths = {pathlib.Path(p).resolve() for p in getattr(module, "__path__", ())}
    if paths and (not init.is_file() or init.parent.resolve() in paths):
      return module
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
      del sys.modules[name]  # another checkout's package and experiments, or a stale install's module
  except ModuleNotFoundError as e:
    if e.name != PACKAGE:
      raise
  if not init.is_file():
    raise ConfigError(f"no experiments: {PACKAGE} is not installed and there is no {init}")
  spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[str(init.parent)])
  module = importlib.util.module_from_spec(spec)
  sys.modules[PACKAGE] = module
  spec.loader.exec_module(module)
  sys.modules["contlearn"].experiments = module
  return module


def available() -> dict[str, pathlib.Path]:
  """Every packaged experiment: name -> source file, sorted by name."""
  pkg = package()
  found = {}
  for info in pkgutil.iter_modules(pkg.__path__):
    if not info.ispkg and not info.name.startswith("_"):
      found[info.name] = pathlib.Path(info.module_finder.path) / f"{info.name}.py"
  return dict(sorted(found.items()))


def name_of(experiment: str) -> str:
  """The experiment's name: itself, or the stem of a `.py` path."""
  return pathlib.Path(experiment).stem if experiment.endswith(".py") else experiment


def load(experiment: str) -> ModuleType:
  """The experiment module named `experiment`, or the one in the `.py` file at that path."""
  if experiment.endswith(".py"):
    return _load_file(pathlib.Path(experiment))
  found = available()
  if experiment not in found:
    raise ConfigError(
      f"unknown experiment {experiment!r}; {did_you_mean(experiment, found)}available: {', '.join(found) or 'none'}"
    )
  module = importlib.import_module(f"{PACKAGE}.{experiment}")
  _check_protocol(module, found[experiment])
  return module


def _load_file(path: pathlib.Path) -> ModuleType:
  if not path.is_file():
    raise ConfigError(f"no experiment file {path}")
  spec = importlib.util.spec_from_file_location(f"contlearn_experiment_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up while it loads
  spec.loader.exec_module(module)
  _check_protocol(module, path)
  return module


def _check_protocol(module: ModuleType, path: pathlib.Path) -> None:
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"experiment file {path} defines no get_config()")


def summary_line(module: ModuleType) -> str:
  """The first line of the experiment's docstring."""
  doc = (module.__doc__ or "").strip()
  return doc.splitlines()[0] if doc else ""


def is_stream_config(cfg: Any) -> bool:
  """Whether `get_config()` returned a stream `Config` or a non-empty dict of them."""
  if isinstance(cfg, dict):
    return bool(cfg) and all(isinstance(c, Config) for c in cfg.values())
  return isinstance(cfg, Config)


#### Describing a configuration (`contlearn run NAME --help`) ####


@dataclasses.dataclass(frozen=True)
class Field:
  """One settable leaf of a (nested) config dataclass.

  Attributes:
    key: the dotted key `--set` takes, e.g. "model.d_model".
    type: the field's type as written, e.g. "tuple[int, ...]".
    value: the field's value in the described configuration.
    description: the field's entry in its class's `Attributes:` section
      (lines joined), or "" when the class documents none.
  """

  key: str
  type: str
  value: Any
  description: str


def attribute_docs(cls: type) -> dict[str, str]:
  """The `Attributes:` sections of the docstrings of a class and its bases: name -> one-line text.

  A class's own entry for a name wins over its bases'.
  """
  docs: dict[str, str] = {}
  for klass in reversed(cls.__mro__):
    docs.update(_own_attribute_docs(klass))
  return docs


def _own_attribute_docs(cls: type) -> dict[str, str]:
  """The `Attributes:` section of a class's own Google-style docstring: name -> one-line text."""
  lines = inspect.cleandoc(cls.__dict__.get("__doc__") or "").splitlines()
  starts = [i for i, line in enumerate(lines) if line.strip() == "Attributes:"]
  if not starts:
    return {}
  base = _indent(lines[starts[0]])
  docs: dict[str, list[str]] = {}
  entry_indent, current = None, None
  for line in lines[starts[0] + 1 :]:
    if not line.strip():
      continue
    indent = _indent(line)
    if indent <= base:
      break  # the next section
    entry = re.match(r"(\w+)\s*(?:\([^)]*\))?:\s*(.*)", line.strip())
    if entry and (entry_indent is None or indent == entry_indent):
      entry_indent, current = indent, entry.group(1)
      docs[current] = [entry.group(2)]
    elif current is not None:
      docs[current].append(line.strip())
  return {name: " ".join(part for part in parts if part) for name, parts in docs.items()}


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def type_name(hint: Any) -> str:
  """A short spelling of a type: "int", "tuple[int, ...]", "str | None", "RunConfig"."""
  if isinstance(hint, type) and not typing.get_args(hint):
    return hint.__name__
  text = str(hint).replace("typing.", "").replace("NoneType", "None")
  return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)  # drop module paths


def fields(cfg: Any, prefix: str = "") -> list[Field]:
  """Every leaf field of the config dataclass `cfg`, nested dataclasses flattened to dotted keys."""
  try:
    hints = typing.get_type_hints(type(cfg))
  except Exception:  # an annotation that does not resolve: show it as written
    hints = {}
  docs = attribute_docs(type(cfg))
  out = []
  for f in dataclasses.fields(cfg):
    value = getattr(cfg, f.name)
    if isinstance(value, MixerConfig):
      out.append(Field(f"{prefix}{f.name}", "str", value.name, _mixer_text(docs.get(f.name, ""), f"{prefix}{f.name}")))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
      out += fields(value, f"{prefix}{f.name}.")
      continue
    hint = hints.get(f.name, f.type)
    out.append(
      Field(f"{prefix}{f.name}", hint if isinstance(hint, str) else type_name(hint), value, docs.get(f.name, ""))
    )
  return out


def _mixer_text(doc: str, key: str) -> str:
  """The description of a mixer's key: its field's, the mixers, and how to see another mixer's fields."""
  from contlearn.models import mixer_names

  return f"{doc} Mixers: {', '.join(mixer_names())}; another mixer's fields: --set {key}=NAME --help.".strip()


def _merged_fields(configs: Iterable[Any]) -> list[Field]:
  """The fields of every config, each key once: the first config's in order, another's after its preceding key."""
  merged: list[Field] = []
  for cfg in configs:
    own = fields(cfg)
    keys = {f.key for f in own}
    at = -1
    for f in own:
      known = [m.key for m in merged]
      if f.key in known:
        at = known.index(f.key)
        continue
      at += 1
      while at < len(merged) and merged[at].key not in keys:  # past the other configs' own keys
        at += 1
      merged.insert(at, f)
  return merged


def describe(name: str, module: ModuleType, cfg: Any) -> str:
  """The help text of an experiment: its docstring, its models, and every config field."""
  doc = inspect.cleandoc(module.__doc__ or "(no docstring)")
  parts = [f"experiment {name}: {doc}"]
  if isinstance(cfg, dict):
    first = next(iter(cfg))
    per_model = {model: {f.key: f.value for f in fields(c)} for model, c in cfg.items()}
    heading = (
      f"config fields (--set KEY=VALUE applies to every model, a mixer's field to the models whose mixer has it; "
      f"values of {first}, or of the first model that has the field; 'per model' where the models differ, "
      "'-' where a model has no such field):"
    )
    rows = [_field_text(f, per_model) for f in _merged_fields(cfg.values())]
    parts.append(f"models (--only NAMES): {', '.join(cfg)}")
  else:
    heading = "config fields (--set KEY=VALUE):"
    rows = [_field_text(f) for f in fields(cfg)]
    if _has_models(cfg):
      parts.append(f"models (--only NAMES): {', '.join(cfg.models)}")
  parts.append("\n".join([heading, *rows]))
  return "\n\n".join(parts)


def _has_models(cfg: Any) -> bool:
  models = getattr(cfg, "models", None)
  return isinstance(models, tuple) and all(isinstance(m, str) for m in models)


_NO_FIELD = object()  # a model without the field (another mixer's)


def _field_text(field: Field, per_model: dict[str, dict[str, Any]] | None = None) -> str:
  lines = [f"  {field.key}: {field.type} = {_short(field.value)}"]
  if field.description:
    lines.append(f"      {field.description}")
  if per_model:
    values = {model: v.get(field.key, _NO_FIELD) for model, v in per_model.items()}
    if len({repr(v) for v in values.values()}) > 1:
      shown = {m: "-" if v is _NO_FIELD else _short(v) for m, v in values.items()}
      lines.append("      per model: " + ", ".join(f"{m}={v}" for m, v in shown.items()))
  return "\n".join(lines)


def _short(value: Any, limit: int = 80) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[: limit - 3] + "..."
