"""Stream runs: a byte LM learning from its stream, on the engine and the host loop.

`train(cfg, out)` builds the learner of `cfg`, its stream and the hooks of a
stream run (token check, token budget, metrics log and progress, orbax
checkpoints with the stream position) and hands them to `contlearn.run_folder.fit`;
`run_experiment` trains each model of an experiment into its own subfolder
and returns their summaries.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from contlearn import engine, loop, provenance, run_folder, sharding, spread
from contlearn.config import Config, DataConfig, MeshConfig, TrainConfig, to_flat_dict
from contlearn.errors import ConfigError, DataError
from contlearn.learner import build_learner
from contlearn.plots import plot_learning_curves
from contlearn.run_log import LN2, RunLog, Tally, lane_sums, write_atomic
from contlearn.stream import Chunk, Stream, build_stream, share_of

# Settings that may change between a run and its resumption.
_RESUMABLE_CHANGES = (
  "train.tokens",
  "train.checkpoint_every",
  "train.keep",
  "train.log_every",
  "train.on_nonfinite",
  "data.prefetch",
  "model.remat",
  "mesh.data",
  "mesh.fsdp",
  "mesh.tensor",
)

# Settings added after runs were saved, with the value that behaves as before them.
_ADDED_SETTINGS = {
  "model.param_dtype": "float32",
  "model.compute_dtype": "float32",
  "model.remat": "none",
  "model.scan_layers": False,
  "mesh.data": -1,
  "mesh.fsdp": 1,
  "mesh.tensor": 1,
  "train.seeds": [],
}


def check_tokens(chunk: Chunk, vocab: int, chunk_index: int, source: str, first_lane: int = 0) -> None:
  """Raises DataError naming the first token id outside [0, vocab) (lanes counted from `first_lane`)."""
  bad = (chunk.tokens < 0) | (chunk.tokens >= vocab)
  if bad.any():
    step, lane, pos = (int(i) for i in np.argwhere(bad)[0])
    value = int(chunk.tokens[step, lane, pos])
    raise DataError(
      f"token id {value} in {source} (chunk {chunk_index}, step {step}, lane {first_lane + lane}, "
      f"position {pos}) is outside the vocabulary [0, {vocab}) set by model.vocab"
    )


def _flat(cfg: Config) -> dict[str, Any]:
  return {key: list(value) if isinstance(value, tuple) else value for key, value in to_flat_dict(cfg).items()}


class TokenCheck(loop.Hook):
  """Refuses a block with a token id outside the vocabulary (`check_tokens`); the block holds
  the lanes from `first_lane` on (a process's share)."""

  def __init__(self, vocab: int, source: str, first_lane: int = 0):
    self.vocab, self.source, self.first_lane = vocab, source, first_lane

  def before_block(self, run: loop.Loop, xs: Chunk) -> None:
    check_tokens(xs, self.vocab, run.block, self.source, self.first_lane)


def _plain(sums: Any) -> float | list[float]:
  """Loss sums as JSON: a float, or one per lane."""
  return [float(v) for v in sums] if isinstance(sums, np.ndarray) else sums


class StreamLog(loop.Hook):
  """Loss sums, `metrics.jsonl`, TensorBoard and the progress bar of a stream run."""

  def __init__(
    self, out: pathlib.Path, *, tokens: int, log_every: int, steps: int, progress: bool, name: str, lanes: int = 0
  ):
    self.tally = Tally(np.zeros(lanes), np.zeros(lanes), log_every, steps, lanes)
    self.log = RunLog(out, tokens or None, progress, name)

  def on_start(self, run: loop.Loop) -> None:
    self.log.truncate_after(run.block, run.units)
    self.log.start_at(run.units)

  def on_metrics(self, run, block, units, new_units, metrics) -> None:
    record = self.tally.add(block, units, new_units, metrics)
    self.log.advance(new_units)
    if record:
      self.log.write(record)

  def meta(self) -> dict[str, Any]:
    return {"nll_total": _plain(self.tally.nll_total), "count_total": _plain(self.tally.count_total)}

  def restore(self, meta: dict[str, Any]) -> None:
    lanes = self.tally.lanes
    self.tally.nll_total = lane_sums(meta["nll_total"], lanes)
    self.tally.count_total = lane_sums(meta["count_total"], lanes)

  def close(self) -> None:
    self.log.close()


def fit(
  learner: engine.Learner,
  stream: Stream,
  out: str | pathlib.Path,
  *,
  settings: TrainConfig | None = None,
  vocab: int | None = None,
  resume: bool = False,
  devices: Sequence[jax.Device] | None = None,
  mesh: MeshConfig | None = None,
  prefetch: int = 2,
  progress: bool = True,
  name: str = "",
  hooks: Sequence[loop.Hook] = (),
  config: dict[str, Any] | None = None,
  describe: dict[str, Any] | None = None,
) -> dict[str, Any]:
  """Trains any stream learner on any stream, with logs, checkpoints and resume.

  The learner's step takes one step of a `Chunk` and returns `StepMetrics`
  (as `sequence_learner`'s does); the stream is any resumable source of
  fixed-shape chunks (`contlearn.stream.Stream`: `start`, `next`, `describe`).

  Args:
    learner: the learner (e.g. `sequence_learner(model, rule, batch)` with a
      model and update rules of your own).
    stream: the chunks; their batch axis is split over the devices.
    out: output folder (metrics.jsonl, summary.json, tensorboard/, checkpoints/).
    settings: seed, token budget, checkpoint_every, keep and log_every are
      read from it (its optimizer fields are the learner's business);
      None: `TrainConfig()`.
    vocab: refuse token ids outside [0, vocab) (None: no check).
    resume: continue from the latest checkpoint in `out`.
    devices: the devices of the mesh (default: every device of every process).
    mesh: the sizes of the mesh's data, fsdp and tensor axes (default: all
      data); a resume may use another mesh (the state is resharded).
    prefetch: chunks prepared ahead on a host thread.
    progress: show a progress bar.
    name: label for the progress bar and the summary.
    hooks: more hooks, called after the run's own at every point.
    config: a flat description of the run saved with every checkpoint; a
      resume with another one (beyond the budget and logging settings) is
      refused, naming the changed keys.
    describe: more fields for the summary (e.g. the model's mixer).

  Returns:
    The summary written to `out/summary.json`.
  """
  out = pathlib.Path(out)
  settings = settings or TrainConfig()
  mesh = sharding.make_mesh(mesh, devices)
  steps, batch, _ = stream.shape
  check_budget(stream, settings.tokens)
  seeds = tuple(settings.seeds)
  if settings.on_nonfinite == "retire" and not seeds:
    raise ConfigError("train.on_nonfinite=retire retires seeds: it needs train.seeds (e.g. 0,1,2); use stop or skip")
  if seeds:  # the seeds are lanes of one program: every process reads the whole stream they share
    key = engine.seed_keys(seeds)
    lanes = range(batch)
  else:
    key = jax.random.PRNGKey(settings.seed)
    sharding.check_batch(batch, mesh)
    lanes = sharding.local_lanes(batch, mesh)
    stream = share_of(stream, lanes)
  log = StreamLog(
    out,
    tokens=settings.tokens,
    log_every=settings.log_every,
    steps=steps,
    progress=progress,
    name=name or out.name,
    lanes=len(seeds),
  )
  checks = [TokenCheck(vocab, stream.describe(), lanes.start)] if vocab is not None else []
  run = run_folder.fit(
    learner,
    lambda: engine.init(learner, key, mesh=mesh, lanes=bool(seeds)),
    stream,
    out,
    config=config or {},
    hooks=[*checks, loop.StopAfter(settings.tokens), log, *hooks],
    mesh=mesh,
    lanes=bool(seeds),
    size=lambda xs: int(np.sum(xs.mask)),
    resume=resume,
    checkpoint_every=settings.checkpoint_every,
    keep=settings.keep,
    same_run=lambda saved: run_folder.check_same_config(saved, config or {}, out, _RESUMABLE_CHANGES, _ADDED_SETTINGS),
    prefetch=prefetch,
    on_nonfinite=settings.on_nonfinite,
    shares=not seeds,
  )
  if run.block == 0:
    raise DataError(f"the stream from {stream.describe()} is empty: it yields no tokens")
  if run.units < settings.tokens:
    print(
      f"contlearn: warning: {out}: the stream from {stream.describe()} ended after {run.units:,} of the "
      f"{settings.tokens:,} tokens of train.tokens",
      file=sys.stderr,
    )

  summary = {
    "name": name or out.name,
    **(describe or {}),
    "tokens": run.units,
    "chunks": run.block,
    "skipped_chunks": run.skipped,
    "seconds": run.seconds,  # training, over every invocation of a resumed run; None: not recorded
    "tokens_per_s": log.tally.tokens_per_s(),  # this invocation's, after its first chunk
    "first_chunk_s": log.tally.first_chunk_s,
    **_losses(log, seeds, run.retired),
    "params": int(sum(np.prod(x.shape[1 if seeds else 0 :]) for x in jax.tree.leaves(run.state.params))),
    "devices": len(mesh.devices.flat),
    "mesh": dict(mesh.shape),
    "config": config or {},
    "code": provenance.code_version(),  # the code that finished the run (run.json lists every invocation's)
  }
  write_atomic(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
  return summary


def check_budget(stream: Stream, tokens: int) -> None:
  """Refuses a token budget (`train.tokens`, 0: none) above what a finite stream of known size holds
  (its `targets()`, where it has one), in one line and before anything is built or compiled."""
  count = getattr(stream, "targets", None)
  held = count() if count is not None else None
  if tokens and held is not None and held < tokens:
    raise ConfigError(
      f"train.tokens={tokens:,} is more than the stream from {stream.describe()} holds ({held:,} tokens in "
      f"{stream.shape[1]} lanes): give a larger source (data.path, data.source=tfds) or set data.repeat=true "
      "to cycle through it"
    )


def _losses(log: StreamLog, seeds: tuple[int, ...], retired: dict[int, int]) -> dict[str, Any]:
  """The summary's losses: over the last 10% of the logged records and over the whole run; with
  `seeds`, the mean over seeds, their standard deviation and each seed's.

  A seed whose lane the loop retired (`retired`: lane -> chunk, policy
  "retire") has None as its own values and is left out of the mean and
  standard deviation; "retired" maps it to the chunk that retired it.
  """
  records = log.log.records()
  recent = records[-max(1, len(records) // 10) :]
  tally = log.tally
  if not seeds:
    loss = sum(r["loss"] for r in recent) / len(recent) if recent else None
    loss_all = tally.nll_total / max(tally.count_total, 1.0)
    return {"loss": loss, "bits_per_byte": _bits(loss), "loss_all": loss_all, "bits_per_byte_all": loss_all / LN2}
  kept = [lane for lane in range(len(seeds)) if lane not in retired]
  lanes = np.array([[np.nan if v is None else v for v in r["loss_lanes"]] for r in recent]).reshape(-1, len(seeds))
  loss = np.mean(lanes, axis=0) if recent else None
  loss_all = tally.nll_total / np.maximum(tally.count_total, 1.0)
  out: dict[str, Any] = {"seeds": list(seeds), "retired": {str(seeds[lane]): chunk for lane, chunk in retired.items()}}
  for name, per_seed in (("", loss), ("_all", loss_all)):
    mean, std = spread.mean_std(per_seed[kept]) if per_seed is not None else (None, None)
    out.update(
      {
        f"loss{name}": mean,
        f"bits_per_byte{name}": _bits(mean),
        f"bits_per_byte{name}_std": _bits(std),
        f"bits_per_byte{name}_seeds": [
          None if per_seed is None or lane in retired else float(per_seed[lane]) / LN2 for lane in range(len(seeds))
        ],
      }
    )
  return out


def _bits(loss: float | None) -> float | None:
  """A loss in nats as bits per byte; None (no value: no log record, or one seed's spread) stays None."""
  return None if loss is None else loss / LN2


def train(
  cfg: Config,
  out: str | pathlib.Path,
  *,
  resume: bool = False,
  devices: Sequence[jax.Device] | None = None,
  progress: bool = True,
  name: str = "",
  hooks: Sequence[loop.Hook] = (),
  stream: Stream | None = None,
) -> dict[str, Any]:
  """Trains the byte LM of `cfg` on the stream of `cfg.data` (see `fit`); returns the summary.

  `stream` is that stream when the caller has built it already (streams are
  read by position, so one serves any number of runs); None builds it.
  """
  return fit(
    build_learner(cfg),
    build_stream(cfg.data) if stream is None else stream,
    out,
    settings=cfg.train,
    vocab=cfg.model.vocab,
    resume=resume,
    devices=devices,
    mesh=cfg.mesh,
    prefetch=cfg.data.prefetch,
    progress=progress,
    name=name,
    hooks=hooks,
    config=_flat(cfg),
    describe={"mixer": cfg.model.mixer.name, "cms_periods": list(cfg.model.cms_periods)},
  )


def run_experiment(
  configs: dict[str, Config],
  out: str | pathlib.Path,
  *,
  resume: bool = False,
  tokens: int | None = None,
  progress: bool = True,
) -> list[dict[str, Any]]:
  """Trains each named configuration into `out/<name>`; returns the summaries.

  With `resume`, a model whose run finished (its `summary.json` records the
  same token budget) is skipped, an interrupted one continues from its
  checkpoints and one not begun starts. Also writes `out/bits_per_byte.png`,
  the learning curves of all models.
  """
  out = pathlib.Path(out)
  if tokens is not None:
    configs = {
      name: dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, tokens=tokens))
      for name, cfg in configs.items()
    }
  streams: dict[DataConfig, Stream] = {}  # one per distinct data setting, shared by the models that use it
  for cfg in configs.values():  # every model's configuration and budget is checked before the first one runs
    build_learner(cfg)
    if cfg.data not in streams:
      streams[cfg.data] = build_stream(cfg.data)
    check_budget(streams[cfg.data], cfg.train.tokens)
  summaries = []
  for name, cfg in configs.items():
    done = _finished(out / name, cfg) if resume else None
    if done is not None:
      print(f"contlearn: {out / name} finished earlier; kept", file=sys.stderr)
      summaries.append(done)
      continue
    summaries.append(train(cfg, out / name, resume=resume, progress=progress, name=name, stream=streams[cfg.data]))
  plot_learning_curves([out / name for name in configs], out / "bits_per_byte.png", title=out.name)
  return summaries


def _finished(folder: pathlib.Path, cfg: Config) -> dict[str, Any] | None:
  """The summary of a run of `cfg` that ended in `folder`, else None."""
  try:
    summary = json.loads((folder / "summary.json").read_text())
  except (OSError, ValueError):
    return None
  saved = {**_ADDED_SETTINGS, **summary.get("config", {})}
  same = all(saved.get(k) == v for k, v in _flat(cfg).items() if not k.startswith("mesh."))  # any mesh will do
  return summary if same else None


def summary_table(summaries: list[dict[str, Any]]) -> str:
  """A text table of tokens, tokens/s, loss and bits per byte for each model."""
  head = f"{'model':<24} {'params':>9} {'tokens':>10} {'tokens/s':>10} {'loss':>7} {'bits/byte':>9} {'bpb (all)':>9}"
  lines = [head, "-" * len(head)]
  number = lambda v, width: f"{'-':>{width}}" if v is None else f"{v:>{width}.3f}"  # noqa: E731
  plus_minus = lambda s, key: f" ± {s[key + '_std']:.3f}" if s.get(key + "_std") is not None else ""  # noqa: E731
  for s in summaries:
    lines.append(
      f"{s['name']:<24} {s['params']:>9,} {s['tokens']:>10,} {s['tokens_per_s']:>10,.0f} "
      f"{number(s['loss'], 7)} {number(s['bits_per_byte'], 9)}{plus_minus(s, 'bits_per_byte')} "
      f"{number(s['bits_per_byte_all'], 9)}{plus_minus(s, 'bits_per_byte_all')}"
    )
  if any(s.get("seeds") for s in summaries):
    lines.append("with seeds: the mean over seeds ± their standard deviation (loss: the mean).")
  for s in summaries:
    for seed, chunk in s.get("retired", {}).items():
      lines.append(f"{s['name']}: seed {seed} went non-finite in chunk {chunk} and was retired; left out of its mean.")
  lines.append(
    "loss and bits/byte: prequential (each step scored before it is learned from), "
    "over the last 10% of the run; 'all': over the whole run."
  )
  return "\n".join(lines)


__all__ = ["StreamLog", "TokenCheck", "check_budget", "fit", "check_tokens", "run_experiment", "summary_table", "train"]
