"""The host loop: feed chunks, log, checkpoint. Nothing per step runs here.

    stream --prefetch--> chunk --(one compiled scan, state donated)--> state
                                     |                                   |
                               metrics [steps]                 every N chunks
                                     v                                   v
                     metrics.jsonl, TensorBoard, progress      orbax checkpoint
                                                              (state + position)

`train(cfg, out)` runs one model; `run_experiment` runs each model of an
experiment into its own subfolder and returns their summaries.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import threading
from typing import Any, Sequence

import jax
import numpy as np

from contlearn import rules
from contlearn.checkpoint import Checkpoints
from contlearn.config import Config, to_dict
from contlearn.engine import (
    check_batch,
    compile_chunk,
    data_mesh,
    place_chunk,
    place_state,
    state_sharding,
)
from contlearn.errors import CheckpointError, ConfigError, DataError
from contlearn.learner import Learner, sequence_learner
from contlearn.models import Model, byte_lm, cms
from contlearn.models.lm import is_hidden_matrix
from contlearn.plots import plot_learning_curves
from contlearn.run_log import LN2, RunLog, Tally
from contlearn.stream import Chunk, Prefetcher, build_stream

# Set (by the CLI's signal handlers) to end the run at the next chunk boundary.
STOP = threading.Event()

# Settings that may change between a run and its resumption.
_RESUMABLE_CHANGES = ("train.tokens", "train.checkpoint_every", "train.keep", "train.log_every", "data.prefetch")


def check_step_length(cfg: Config, model: Model) -> None:
  """Raises ConfigError unless every step holds whole inner mini-batches / segments of the model."""
  seq, multiple = cfg.data.seq, model.step_multiple
  if seq % multiple:
    raise ConfigError(f"data.seq={seq} must be a multiple of {multiple}, {model.step_reason}, which restarts at every step")


def build_learner(cfg: Config) -> Learner:
  """The model of `cfg.model`, trained by the outer optimizer and CMS levels.

  Raises ConfigError for a bad model or a step length the model cannot carry.
  """
  model = byte_lm(cfg.model)
  check_step_length(cfg, model)
  t = cfg.train
  level_rules = {"outer": rules.optimizer(t.optimizer, t.lr, t.clip, is_hidden_matrix=is_hidden_matrix)}
  periods = cfg.model.cms_periods
  for i, period in enumerate(periods):
    rule = rules.periodic(rules.optimizer(t.cms_optimizer, t.cms_lr), period)
    if cfg.model.cms_variant == "nested" and i + 1 < len(periods):
      rule = rules.reset_every(rule, periods[i + 1])  # wiped when the slower level steps
    level_rules[cms.level_name(i)] = rule
  return sequence_learner(model, rules.levels(level_rules, model.level_labels))


def check_tokens(chunk: Chunk, vocab: int, chunk_index: int, source: str) -> None:
  """Raises DataError naming the first token id outside [0, vocab)."""
  bad = (chunk.tokens < 0) | (chunk.tokens >= vocab)
  if bad.any():
    step, lane, pos = (int(i) for i in np.argwhere(bad)[0])
    value = int(chunk.tokens[step, lane, pos])
    raise DataError(
        f"token id {value} in {source} (chunk {chunk_index}, step {step}, lane {lane}, "
        f"position {pos}) is outside the vocabulary [0, {vocab}) set by model.vocab"
    )


def _flat(cfg: Config) -> dict[str, Any]:
  out = {}
  for section, values in to_dict(cfg).items():
    for key, value in values.items():
      out[f"{section}.{key}"] = list(value) if isinstance(value, tuple) else value
  return out


def _check_same_run(saved: dict[str, Any], cfg: Config, where: pathlib.Path) -> None:
  now = _flat(cfg)
  changed = [k for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
  if changed:
    detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
    raise CheckpointError(f"cannot resume {where}: the configuration changed ({detail})")


def train(
    cfg: Config,
    out: str | pathlib.Path,
    *,
    resume: bool = False,
    devices: Sequence[jax.Device] | None = None,
    progress: bool = True,
    name: str = "",
) -> dict[str, Any]:
  """Trains one model on its stream; returns the run's summary.

  Args:
    cfg: the run's configuration.
    out: output folder (metrics.jsonl, summary.json, tensorboard/, checkpoints/).
    resume: continue from the latest checkpoint in `out`.
    devices: devices to split the batch over (default: all local devices).
    progress: show a progress bar.
    name: label for the progress bar and the summary.

  Returns:
    The summary written to `out/summary.json`.
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  mesh = data_mesh(devices)
  check_batch(cfg.data.batch, mesh)
  learner = build_learner(cfg)
  stream = build_stream(cfg.data)
  steps_per_chunk = cfg.data.steps

  def init():
    return learner.init(jax.random.PRNGKey(cfg.train.seed), cfg.data.batch)

  #### State: fresh, or restored with the stream position ####
  checkpoints = Checkpoints(out / "checkpoints", keep=cfg.train.keep)
  if resume:
    abstract = jax.eval_shape(init)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        abstract,
        state_sharding(abstract, mesh),
    )
    state, meta, chunk_index = checkpoints.restore(abstract)
    _check_same_run(meta["config"], cfg, out)
    position, tokens = meta["position"], int(meta["tokens"])
    nll_total, count_total = float(meta["nll_total"]), float(meta["count_total"])
  else:
    if checkpoints.latest() is not None:
      raise CheckpointError(
          f"{out / 'checkpoints'} already holds checkpoints; pass --resume to continue "
          "that run, or choose another --out"
      )
    state = place_state(jax.jit(init)(), mesh)
    position, tokens, chunk_index = stream.start(), 0, 0
    nll_total = count_total = 0.0

  log = RunLog(out, cfg.train.tokens or None, progress, name or out.name)
  log.truncate_after(chunk_index)
  log.start_at(tokens)
  tally = Tally(nll_total, count_total, cfg.train.log_every, cfg.data.steps)
  run_chunk = compile_chunk(learner, state, mesh)
  pending = None  # (chunk, tokens, new tokens, device metrics) not yet read back

  def settle():
    """Reads back the last chunk's metrics: one host transfer per chunk."""
    nonlocal pending
    if pending is not None:
      record = tally.add(*pending[:3], jax.device_get(pending[3]))
      log.advance(pending[2])
      if record:
        log.write(record)
      pending = None

  def save():
    settle()
    meta = {
        "position": position,
        "tokens": tokens,
        "nll_total": tally.nll_total,
        "count_total": tally.count_total,
        "config": _flat(cfg),
    }
    checkpoints.save(chunk_index, state, meta)

  #### Loop over chunks: dispatch chunk i, then read chunk i-1's metrics ####
  prefetch = Prefetcher(stream, position, cfg.data.prefetch)
  saved_at, seen_any = chunk_index, chunk_index > 0
  try:
    for chunk, position_after in prefetch:
      if cfg.train.tokens and tokens >= cfg.train.tokens:
        break
      if STOP.is_set():  # a signal asked to stop: the state is whole here
        raise KeyboardInterrupt
      seen_any = True
      check_tokens(chunk, cfg.model.vocab, chunk_index, stream.describe())
      n_tokens = int(chunk.mask.sum())
      state, metrics = run_chunk(state, place_chunk(chunk, mesh))
      settle()
      chunk_index, tokens, position = chunk_index + 1, tokens + n_tokens, position_after
      pending = (chunk_index, tokens, n_tokens, metrics)
      if chunk_index % cfg.train.checkpoint_every == 0:
        save()
        saved_at = chunk_index
    if not seen_any:
      raise DataError(f"the stream from {stream.describe()} is empty: it yields no tokens")
    if saved_at != chunk_index:
      save()
    settle()
  except KeyboardInterrupt:
    # An interrupt inside a chunk call may find the donated state gone; the
    # last checkpoint then stands. At a chunk boundary all is saved.
    if not any(leaf.is_deleted() for leaf in jax.tree.leaves(state)):
      save()
    raise
  finally:
    prefetch.close()
    log.close()
    checkpoints.close()

  records = log.records()
  recent = records[-max(1, len(records) // 10) :]
  recent_loss = sum(r["loss"] for r in recent) / max(1, len(recent))
  loss_all = tally.nll_total / max(tally.count_total, 1.0)
  summary = {
      "name": name or out.name,
      "mixer": cfg.model.mixer,
      "cms_periods": list(cfg.model.cms_periods),
      "tokens": tokens,
      "chunks": chunk_index,
      "tokens_per_s": tally.tokens_per_s(),
      "first_chunk_s": tally.first_chunk_s,
      "loss": recent_loss,
      "bits_per_byte": recent_loss / LN2,
      "loss_all": loss_all,
      "bits_per_byte_all": loss_all / LN2,
      "params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(state.params))),
      "devices": len(mesh.devices.flat),
  }
  (out / "summary.json").write_text(json.dumps(summary, indent=2))
  return summary


def run_experiment(
    configs: dict[str, Config],
    out: str | pathlib.Path,
    *,
    resume: bool = False,
    tokens: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
  """Trains each named configuration into `out/<name>`; returns the summaries.

  Also writes `out/bits_per_byte.png`, the learning curves of all models.
  """
  out = pathlib.Path(out)
  for cfg in configs.values():  # every model's configuration is checked before the first one runs
    build_learner(cfg)
  summaries = []
  for name, cfg in configs.items():
    if tokens is not None:
      cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, tokens=tokens))
    summaries.append(train(cfg, out / name, resume=resume, progress=progress, name=name))
  plot_learning_curves([out / name for name in configs], out / "bits_per_byte.png", title=out.name)
  return summaries


def summary_table(summaries: list[dict[str, Any]]) -> str:
  """A text table of tokens, tokens/s, loss and bits per byte for each model."""
  head = f"{'model':<24} {'params':>9} {'tokens':>10} {'tokens/s':>10} {'loss':>7} {'bits/byte':>9} {'bpb (all)':>9}"
  lines = [head, "-" * len(head)]
  for s in summaries:
    lines.append(
        f"{s['name']:<24} {s['params']:>9,} {s['tokens']:>10,} {s['tokens_per_s']:>10,.0f} "
        f"{s['loss']:>7.3f} {s['bits_per_byte']:>9.3f} {s['bits_per_byte_all']:>9.3f}"
    )
  lines.append("loss and bits/byte: prequential (each step scored before it is learned from), "
               "over the last 10% of the run; 'all': over the whole run.")
  return "\n".join(lines)


__all__ = ["build_learner", "check_step_length", "check_tokens", "run_experiment", "summary_table", "train"]
