"""`--set key=value` overrides of typed, frozen configs, and presets.

Every field of a config dataclass is typed, so an override from the command
line is parsed and checked against the field's type, and the config's own
checks (`__post_init__`, `contlearn.field_checks.require`) run on the new value:

>>> from contlearn.config import Config
>>> cfg = apply_overrides(Config(), ["model.d_model=64", "train.lr=1e-3"])
>>> cfg.model.d_model, cfg.train.lr
(64, 0.001)

A mixer is chosen first, then its fields are set:

>>> cfg = apply_overrides(Config(), ["model.mixer=titans", "model.mixer.chunk=16"])
>>> cfg.model.mixer.name, cfg.model.mixer.chunk, cfg.model.mixer.depth
('titans', 16, 2)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from contlearn.errors import ConfigError
from contlearn.field_checks import FieldError, did_you_mean
from contlearn.mixer_configs import MissingMixerField, MixerConfig, check_mixer_field


def _parse_value(text: str, annotation: Any, key: str) -> Any:
  """Parses `text` as a value of type `annotation`, or raises ConfigError."""
  origin = typing.get_origin(annotation)
  if annotation is bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
      return True
    if low in ("0", "false", "no", "off"):
      return False
    raise ConfigError(f"--set {key}={text}: expected a boolean (true/false)")
  if annotation is int:
    try:
      return int(text)
    except ValueError:
      raise ConfigError(f"--set {key}={text}: expected an integer") from None
  if annotation is float:
    try:
      return float(text)
    except ValueError:
      raise ConfigError(f"--set {key}={text}: expected a number") from None
  if annotation is str:
    return text
  if origin is tuple:
    (item, *_rest) = typing.get_args(annotation)
    parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
    return tuple(_parse_value(p.strip(), item, key) for p in parts)
  if origin in (typing.Union, types.UnionType):
    errors = []
    for option in typing.get_args(annotation):
      try:
        return _parse_value(text, option, key)
      except ConfigError as e:
        errors.append(str(e))
    raise ConfigError("; ".join(errors))
  raise ConfigError(f"--set {key}: fields of type {annotation} cannot be set")


def field_names(cfg: Any, prefix: str = "") -> list[str]:
  """All settable dotted keys of a (nested) config dataclass (a mixer: its name's key and its fields)."""
  names = []
  for f in dataclasses.fields(cfg):
    value = getattr(cfg, f.name)
    if isinstance(value, MixerConfig):
      names.append(f"{prefix}{f.name}")
    if dataclasses.is_dataclass(value):
      names += field_names(value, f"{prefix}{f.name}.")
    else:
      names.append(f"{prefix}{f.name}")
  return names


def set_field(cfg: Any, key: str, text: str, full_key: str | None = None) -> Any:
  """Returns a copy of `cfg` with dotted `key` set from the string `text`.

  A mixer's key (`model.mixer=NAME`) takes a mixer's name, which restores
  that mixer's defaults; its fields are keys below it (`model.mixer.chunk`).
  """
  full_key = full_key or key
  where = f"--set {full_key}={text}"
  head, _, rest = key.partition(".")
  fields = {f.name: f for f in dataclasses.fields(cfg)}
  if head not in fields:
    close = did_you_mean(key, field_names(cfg), full_key.removesuffix(key))
    hint = f"{close} " if close else ""
    raise ConfigError(f"{where}: unknown key; {hint}valid keys are {', '.join(field_names(cfg))}")
  value = getattr(cfg, head)
  if isinstance(value, MixerConfig):
    if not rest:
      return dataclasses.replace(cfg, **{head: text})  # the new mixer's defaults (`ModelConfig.__post_init__`)
    check_mixer_field(value, rest.partition(".")[0], where, full_key.removesuffix(rest))
  if dataclasses.is_dataclass(value):
    if not rest:
      raise ConfigError(f"{where}: name a field, e.g. {full_key}.{field_names(value)[0]}")
    return dataclasses.replace(cfg, **{head: set_field(value, rest, text, full_key)})
  if rest:
    raise ConfigError(f"{where}: {head} has no sub-fields")
  hints = typing.get_type_hints(type(cfg))
  try:
    return dataclasses.replace(cfg, **{head: _parse_value(text, hints[head], full_key)})
  except FieldError as e:
    if e.name != head:  # another field checked against this one
      raise
    raise ConfigError(f"{where}: must be {e.allowed}") from None


def _parsed(overrides: list[str]) -> list[tuple[str, str]]:
  """The (key, value text) of each `key=value` string, checked for form and order.

  A key set after a key below it (`model.mixer=titans` after
  `model.mixer.chunk=16`) would discard that setting: refused, in one line.
  """
  pairs = []
  for item in overrides:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
      raise ConfigError(f"--set {item}: expected key=value")
    earlier = [f"{k}={t}" for k, t in pairs if k.startswith(key + ".")]
    if earlier:
      raise ConfigError(
        f"--set {item} after --set {earlier[0]} would restore the defaults of {key} and lose that setting; "
        f"set {key} first"
      )
    pairs.append((key, text))
  return pairs


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
  """Applies `key=value` strings in order; raises ConfigError on bad input."""
  for key, text in _parsed(overrides):
    cfg = set_field(cfg, key, text)
  return cfg


def apply_overrides_to_models(cfgs: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
  """`apply_overrides` on every config of `cfgs` (an experiment's models).

  A mixer's field (`model.mixer.FIELD=VALUE`) is set in the models whose
  mixer has FIELD; it is refused only when no model's mixer has it.
  """
  for key, text in _parsed(overrides):
    updated, missing = {}, []
    for name, cfg in cfgs.items():
      try:
        updated[name] = set_field(cfg, key, text)
      except MissingMixerField as e:
        updated[name] = cfg
        missing.append(e)
    if len(missing) == len(cfgs) and missing:
      raise missing[0]
    cfgs = updated
  return cfgs


def apply_preset(cfg: Any, preset: dict[str, Any]) -> Any:
  """`cfg` with the preset's values for the fields still at their class defaults.

  A preset (e.g. an experiment's smoke-run sizes) never overrides what a
  user set with `--set`.
  """
  default = type(cfg)()
  return dataclasses.replace(cfg, **{k: v for k, v in preset.items() if getattr(cfg, k) == getattr(default, k)})
