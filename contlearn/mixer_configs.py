"""The settings of sequence mixers: `MixerConfig` and the registry of mixers' names and settings classes.

`ModelConfig` (`contlearn.config`) holds the fields every model shares
(vocab, widths, layers, heads, CMS); the sequence mixer's own settings are
its own frozen dataclass, a `MixerConfig` subclass defined next to the mixer
(e.g. `contlearn.models.titans.TitansConfig`) and registered with it
(`contlearn.models.mixer.register_mixer(name, config_class)`).
`ModelConfig.mixer` holds that instance; a mixer's name given in its place
becomes that mixer's default config, and on the command line a mixer is
chosen first, then its fields are set (`contlearn.overrides`):

>>> from contlearn.config import ModelConfig
>>> ModelConfig(mixer=mixer_config("titans", chunk=16)).mixer.chunk
16
>>> ModelConfig(mixer="swa").mixer
SlidingWindowConfig(window=64, persistent_tokens=0)

The names and settings classes are registered here (`register_mixer_config`,
called by `contlearn.models.mixer.register_mixer`, which keeps the
factories), so this module imports no model code and a user's mixer
registers its settings like a built-in one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from contlearn.errors import ConfigError
from contlearn.field_checks import did_you_mean


@dataclasses.dataclass(frozen=True)
class MixerConfig:
  """The settings of one sequence mixer: the base class of each mixer's config.

  A mixer defines a frozen dataclass of the fields it reads, subclassing this
  one (or a shared base such as `contlearn.models.memory_layer.MemoryConfig`),
  documents them in an `Attributes:` section, checks them in `__post_init__`
  (with `require`, after `super().__post_init__()`) and registers it with its
  factory. Its name is the name it was registered under.
  """

  def __post_init__(self):
    """Subclasses check their own fields here, after `super().__post_init__()`."""

  @property
  def name(self) -> str:
    """The name this config's class is registered under (`register_mixer`)."""
    return mixer_name(self)


class MissingMixerField(ConfigError):
  """`--set model.mixer.FIELD=...` where the current mixer has no FIELD."""


_MIXER_CONFIGS: dict[str, type[MixerConfig]] = {}


def register_mixer_config(name: str, config: type[MixerConfig]) -> None:
  """Registers `config` as the settings class of the mixer `name` (`models.mixer.register_mixer` calls this).

  Raises:
    TypeError: `config` is not a `MixerConfig` dataclass.
    ValueError: it has a field `name`, the name is taken, or the class is another mixer's.
  """
  if not (isinstance(config, type) and issubclass(config, MixerConfig) and dataclasses.is_dataclass(config)):
    raise TypeError(f"register_mixer({name!r}, ...): the config must be a MixerConfig dataclass, not {config!r}")
  if "name" in {f.name for f in dataclasses.fields(config)}:
    raise ValueError(f"{config.__name__}: a mixer's config has no field 'name' (it is the registered name)")
  if name in _MIXER_CONFIGS:
    raise ValueError(f"mixer {name!r} is registered twice")
  if config in _MIXER_CONFIGS.values():
    raise ValueError(f"{config.__name__} is the config of mixer {mixer_name(config())!r}; give {name!r} its own class")
  _MIXER_CONFIGS[name] = config


def mixer_names() -> list[str]:
  """The registered mixers, sorted."""
  return sorted(_MIXER_CONFIGS)


def mixer_config_class(name: str) -> type[MixerConfig]:
  """The settings class of the mixer `name`, or a ConfigError naming the choices."""
  if name not in _MIXER_CONFIGS:
    hint = did_you_mean(name, _MIXER_CONFIGS)
    raise ConfigError(
      f"model.mixer={name!r} is not a known mixer; {hint + ' ' if hint else ''}choose one of {', '.join(mixer_names())}"
    )
  return _MIXER_CONFIGS[name]


def mixer_name(cfg: MixerConfig) -> str:
  """The name the class of `cfg` is registered under, or a ConfigError."""
  for name, config in _MIXER_CONFIGS.items():
    if type(cfg) is config:
      return name
  raise ConfigError(f"model.mixer: {type(cfg).__name__} is no mixer's config; register it: register_mixer(name, cls)")


def mixers_with(field: str) -> list[str]:
  """The mixers whose config has `field`, sorted."""
  return [n for n in mixer_names() if field in {f.name for f in dataclasses.fields(_MIXER_CONFIGS[n])}]


def mixer_config(name: str, **fields: Any) -> MixerConfig:
  """The config of the mixer `name` at its defaults, with `fields` set (each one the mixer must have).

  >>> mixer_config("titans", chunk=16).chunk
  16
  """
  cfg = mixer_config_class(name)()
  for field in fields:
    check_mixer_field(cfg, field, f"mixer_config({name!r}, {field}=...)", "")
  return dataclasses.replace(cfg, **fields)


def with_known_fields(mixer: MixerConfig | str, **fields: Any) -> MixerConfig:
  """`mixer` (a config, or a name for its defaults) with those of `fields` it has; the others are dropped.

  For settings shared by mixers of different kinds, e.g. an experiment's
  attention window and memory chunk:

  >>> with_known_fields("swa", window=16, chunk=8)
  SlidingWindowConfig(window=16, persistent_tokens=0)
  """
  cfg = mixer_config_class(mixer)() if isinstance(mixer, str) else mixer
  own = {f.name for f in dataclasses.fields(cfg)}
  return dataclasses.replace(cfg, **{k: v for k, v in fields.items() if k in own})


def check_mixer_field(mixer: MixerConfig, field: str, where: str, prefix: str) -> None:
  """Raises MissingMixerField, in one line, unless `mixer` has `field`.

  The line names the mixer, its fields and the mixers that have `field`
  (which must be chosen first); `prefix` is the mixer's dotted key with a
  trailing dot ("model.mixer."), or "" outside `--set`.
  """
  fields = [f.name for f in dataclasses.fields(mixer)]
  if field in fields:
    return
  having = mixers_with(field)
  if having:
    example = f" (--set {prefix[:-1]}={having[0]} before --set {prefix}{field}=...)" if prefix else ""
    hint = f"{field} is a field of {', '.join(having)}; set the mixer first{example}"
  else:
    close = did_you_mean(field, fields, prefix)
    hint = (f"{close} " if close else "") + f"no mixer has a field {field}"
  raise MissingMixerField(
    f"{where}: mixer {mixer.name!r} has no field {field} (its fields: {', '.join(fields) or 'none'}); {hint}"
  )
