"""Checks of config fields: a bad value refused, in one line, when a config is built.

Every config dataclass of contlearn (and a user's mixer or experiment
config) calls `require` from its `__post_init__`, so a value outside its
range is refused before anything compiles, with the owner, the field and
what it must be (`FieldError`); `did_you_mean` names the closest choice to a
misspelt name.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

from contlearn.errors import ConfigError


class FieldError(ConfigError):
  """A config field holds a value outside its allowed range.

  `set_field` prefixes the dotted key the user typed (`--set train.lr=nan: ...`).
  """

  def __init__(self, owner: str, name: str, value: Any, allowed: str):
    self.name, self.value, self.allowed = name, value, allowed
    super().__init__(f"{owner}.{name}={value!r}: must be {allowed}")


def require(
  cfg: Any,
  *,
  positive: tuple[str, ...] = (),
  non_negative: tuple[str, ...] = (),
  fraction: tuple[str, ...] = (),
  choices: dict[str, tuple[Any, ...]] | None = None,
) -> None:
  """Raises FieldError naming the first field of `cfg` outside its range.

  Called from a config dataclass's `__post_init__`, so a bad value is refused
  when the config is built or a field is set, before anything compiles.
  Numbers must be finite; `positive` fields are > 0 (each item of a tuple
  field), `non_negative` >= 0, `fraction` strictly inside (0, 1); a `choices`
  field holds one of the listed values.

  >>> import dataclasses
  >>> @dataclasses.dataclass(frozen=True)
  ... class Opt:
  ...   lr: float = 0.1
  ...   def __post_init__(self):
  ...     require(self, non_negative=("lr",))
  >>> Opt(lr=-1.0)
  Traceback (most recent call last):
  ...
  contlearn.field_checks.FieldError: Opt.lr=-1.0: must be a finite number >= 0
  """
  owner = type(cfg).__name__

  def check(names, ok, allowed):
    for name in names:
      value = getattr(cfg, name)
      items = value if isinstance(value, tuple) else (value,)
      number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
      if not all(number(v) and ok(v) for v in items):
        kind = "integer" if all(isinstance(v, int) for v in items) else "finite number"
        raise FieldError(owner, name, value, allowed(kind) + (" (each item)" if isinstance(value, tuple) else ""))

  check(positive, lambda v: v > 0, lambda kind: f"an {kind} > 0" if kind == "integer" else f"a {kind} > 0")
  check(non_negative, lambda v: v >= 0, lambda kind: f"an {kind} >= 0" if kind == "integer" else f"a {kind} >= 0")
  check(fraction, lambda v: 0 < v < 1, lambda kind: "a number strictly between 0 and 1")
  for name, allowed in (choices or {}).items():
    value = getattr(cfg, name)
    if value not in allowed:
      hint = did_you_mean(value, map(str, allowed)) if isinstance(value, str) else ""
      raise FieldError(owner, name, value, "one of " + ", ".join(map(str, allowed)) + (f" ({hint})" if hint else ""))


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
  """`"did you mean X?"` for the choice closest to `word` (written `prefix + X`), or `""` when none is close.

  >>> did_you_mean("chunck", ["chunk", "depth"], prefix="model.mixer.")
  'did you mean model.mixer.chunk?'
  """
  close = difflib.get_close_matches(word, list(choices), n=1)
  return f"did you mean {prefix}{close[0]}?" if close else ""
