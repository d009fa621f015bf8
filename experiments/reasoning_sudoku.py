"""Reasoning on 6x6 Sudoku: TRM (recursion, deep supervision) against one pass of the same parameters.

Command:   contlearn run reasoning_sudoku                         # 2 models, 3 seeds, 1000 + 1000 puzzles
           contlearn run reasoning_sudoku --set smoke=true        (a smoke run, about a minute)
           contlearn run reasoning_sudoku --set train=200 --set test=200 --set steps=300
Runtime:   about 25 minutes on 2 shared CPU cores (scaled from a measured run of 400 steps, 3 seeds
           as lanes, load average 5-7: TRM 723 s, single pass 239 s, compilation included; plus
           generating 2000 puzzles), less on idle cores; the smoke run about 40 s.
Outputs:   OUT/results.json, OUT/results.md; OUT/<model>/ (metrics.jsonl, checkpoints/, row.json);
           `--resume` keeps finished models and continues an interrupted one from its last checkpoint.

Puzzles: minimal 6x6 Sudoku from `contlearn.puzzles.splits` (no test puzzle
a symmetry of a training one), augmented on the fly by the feed. As in the
official HRM/TRM Sudoku data, every puzzle has identifier 0: one shared
puzzle embedding, so test puzzles are read exactly as training ones.

Models: `trm` is `TRMConfig` (D=64, 2 mixer layers, T=2 rounds of n=3
latent updates per segment, up to N=8 supervision segments, halting);
`single_pass` is `trm.single_pass` of it: the same parameters, one latent
and one answer update, one segment per puzzle. Both train for the same
number of optimizer steps (one step = one supervision segment of every
batch row), the seeds as lanes of one vmapped program (same puzzles in the
same order, their own initialisation and halting draws).

Evaluation on the test split with the weights' moving average
(`ema_params`): exact (whole-puzzle) accuracy after 1..N segments, all
segments run (`trm.rollout`), and accuracy on the blank cells; with halting on (a puzzle
stops at its first segment with q_halt > 0, else at N): the mean segments
used, the exact accuracy at the halt, and the halt decision's accuracy
(q_halt > 0 against "the answer is exactly right", over every segment of
every test puzzle).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import engine, loop
from contlearn.config import FieldError, apply_preset, require
from contlearn.errors import CheckpointError, ConfigError
from contlearn.puzzles import PuzzleConfig, PuzzleFeed, PuzzleSet, puzzle_kind, splits
from contlearn.reasoning import ema_params, trm

MODELS = {"trm": "TRM (recursive)", "single_pass": "single pass"}


@dataclasses.dataclass(frozen=True)
class Config:
  """The reasoning_sudoku experiment.

  Attributes:
    models: the models to run, in order: trm (recursion, deep supervision,
      halting), single_pass (the same parameters, one pass).
    smoke: a smoke run of about a minute: each field of `SMOKE` still at its
      default takes its smoke value (64 + 64 puzzles, width 16, 1 layer,
      2 segments, 40 steps).
    size: the board's side (4, 6 or 9).
    train: training puzzles.
    test: test puzzles.
    min_clues: clues each puzzle keeps at least (0: minimal puzzles).
    data_seed: which puzzles, and the feed's order and augmentations.
    seeds: initialisation seeds, trained at once as lanes.
    width: D, the model width.
    layers: mixer blocks of the network.
    cycles: T, rounds of latent recursion per segment (TRM).
    latent_steps: n, latent updates per round (TRM).
    max_segments: N, supervision segments per puzzle at most (TRM), and
      the segments evaluated.
    lr: AdamATan2's rate on the network.
    puzzle_lr: sign-SGD's rate on the (single) puzzle embedding.
    weight_decay: decoupled weight decay of both rules.
    ema_rate: rate of the weights' moving average that is evaluated (0.99,
      an average over about 100 steps, for runs of a few thousand steps; the
      paper's 0.999 suits its ~10^5).
    steps: optimizer steps per model (one step = one segment of every row).
    batch: puzzles in flight per step.
    block: steps per compiled call (steps must be a multiple).
    checkpoint_every: blocks between checkpoints.
  """

  models: tuple[str, ...] = tuple(MODELS)
  smoke: bool = False
  size: int = 6
  train: int = 1000
  test: int = 1000
  min_clues: int = 0
  data_seed: int = 0
  seeds: tuple[int, ...] = (0, 1, 2)
  width: int = 64
  layers: int = 2
  cycles: int = 2
  latent_steps: int = 3
  max_segments: int = 8
  lr: float = 1e-3
  puzzle_lr: float = 1e-2
  weight_decay: float = 0.1
  ema_rate: float = 0.99
  steps: int = 600
  batch: int = 64
  block: int = 50
  checkpoint_every: int = 2

  def __post_init__(self):
    require(
      self,
      positive=(
        *("size", "train", "test", "width", "layers", "cycles", "latent_steps", "max_segments"),
        *("lr", "puzzle_lr", "steps", "batch", "block", "checkpoint_every"),
      ),
      non_negative=("min_clues", "data_seed", "seeds", "weight_decay"),
      fraction=("ema_rate",),
    )
    owner = type(self).__name__
    if not self.models or any(m not in MODELS for m in self.models):
      raise FieldError(owner, "models", self.models, f"one or more of {', '.join(MODELS)}")
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise FieldError(owner, "seeds", self.seeds, "one or more distinct seeds")


SMOKE = {
  "train": 64,
  "test": 64,
  "width": 16,
  "layers": 1,
  "max_segments": 2,
  "steps": 40,
  "batch": 16,
  "block": 10,
  "ema_rate": 0.9,
}


def get_config() -> Config:
  return Config()


def resolved(cfg: Config) -> Config:
  """`cfg` with `smoke` applied to the fields still at their defaults, and checked across fields.

  Raises:
    ConfigError: steps is not a multiple of block (checked here, so `--set` may give them in any order).
  """
  cfg = apply_preset(cfg, SMOKE) if cfg.smoke else cfg
  if cfg.steps % cfg.block:
    raise ConfigError(f"steps={cfg.steps} must be a multiple of block={cfg.block}")
  return cfg


def _json(cfg: Config) -> dict:
  return json.loads(json.dumps(dataclasses.asdict(cfg)))


def one_identifier(puzzles: PuzzleSet) -> PuzzleSet:
  """The set with every puzzle's id 0 (one shared puzzle embedding, as the official Sudoku data)."""
  return PuzzleSet(puzzles.config, puzzles.inputs, puzzles.labels, np.zeros_like(puzzles.ids), puzzles.meta)


def model_config(cfg: Config, name: str) -> trm.TRMConfig:
  """The TRM of `cfg`, or its single-pass baseline (`name` "single_pass")."""
  kind = puzzle_kind(PuzzleConfig("sudoku", cfg.size))
  recursive = trm.TRMConfig(
    vocab=kind.vocab,
    length=kind.length,
    puzzles=1,
    width=cfg.width,
    layers=cfg.layers,
    cycles=cfg.cycles,
    latent_steps=cfg.latent_steps,
    max_segments=cfg.max_segments,
    lr=cfg.lr,
    weight_decay=cfg.weight_decay,
    puzzle_lr=cfg.puzzle_lr,
    puzzle_weight_decay=cfg.weight_decay,
    ema_rate=cfg.ema_rate,
  )
  return trm.single_pass(recursive) if name == "single_pass" else recursive


class TrainLog(loop.Hook):
  """Per block, the mean loss, cell accuracy and exact fraction of each lane, to `path` (JSON lines)."""

  def __init__(self, path: pathlib.Path, label: str, total_steps: int, progress: bool):
    self.path, self.label, self.total, self.progress = path, label, total_steps, progress
    self.last: list[float] = []

  def on_metrics(self, run, block, units, new_units, metrics) -> None:
    record = {name: np.mean(np.asarray(getattr(metrics, name)), axis=-1).tolist() for name in ("loss", "accuracy")}
    record["exact"] = np.mean(np.asarray(metrics.exact), axis=-1).tolist()
    self.last = record["loss"]
    with self.path.open("a" if units > new_units else "w") as f:  # a fresh run starts the file anew
      f.write(json.dumps({"block": block, "step": units, **record}) + "\n")
    every = max(1, self.total // 5)
    if self.progress and (units - new_units) // every != units // every:
      print(f"  {self.label} step {units}: loss {np.round(record['loss'], 3).tolist()}", flush=True)

  def meta(self) -> dict:
    return {"last_loss": self.last}

  def restore(self, meta: dict) -> None:
    self.last = meta["last_loss"]
    if self.path.exists():  # records after the checkpoint are written again
      lines = self.path.read_text().splitlines()
      self.path.write_text("".join(line + "\n" for line in lines if json.loads(line)["block"] <= meta["block"]))


def evaluate_fn(model: trm.TRMConfig):
  """`evaluate(state, inputs [P, L], labels [P, L]) -> dict of per-lane arrays` on the EMA weights.

  exact, blanks: float32 `[N]`, whole-puzzle accuracy and accuracy on the
  blank cells after 1..N segments; halt_segments, halt_exact,
  halt_decision: float32 `[]`, the halting statistics of the module docstring.
  """

  def evaluate(state, inputs, labels):
    answers, q_halt = trm.rollout(ema_params(state.opt_state), model, inputs, jnp.zeros(inputs.shape[0], jnp.int32))
    correct = answers == labels[None]  # [N, P, L]
    exact = jnp.all(correct, axis=-1)  # [N, P]
    halt = q_halt > 0
    first = jnp.where(jnp.any(halt, axis=0), jnp.argmax(halt, axis=0), model.max_segments - 1)  # [P]
    return {
      "exact": jnp.mean(exact, axis=1),
      "blanks": jnp.sum(correct & (inputs[None] == 0), axis=(1, 2)) / jnp.sum(inputs == 0),
      "halt_segments": jnp.mean(first + 1.0),
      "halt_exact": jnp.mean(jnp.take_along_axis(exact, first[None], axis=0)),
      "halt_decision": jnp.mean(halt == exact),
    }

  return engine.compile_call(evaluate, lanes=True, donate=False)


def train_and_eval(cfg: Config, name: str, data, out: pathlib.Path, *, resume: bool, progress: bool) -> dict:
  """Trains model `name` for every seed (lanes) into `out`; its scores on the test split, per seed."""
  train, test = data
  model = model_config(cfg, name)
  learner = trm.trm_learner(model, cfg.batch)
  feed = PuzzleFeed(train, steps=cfg.block, batch=cfg.batch, seed=cfg.data_seed, blocks=cfg.steps // cfg.block)
  log = TrainLog(out / "metrics.jsonl", MODELS[name], cfg.steps, progress)
  keys = jnp.stack([jax.random.key(s) for s in cfg.seeds])
  start = time.time()
  run = loop.fit(
    learner,
    lambda: engine.init(learner, keys, lanes=True),
    feed,
    out,
    config={"experiment": _json(dataclasses.replace(cfg, models=(name,))), "trm": dataclasses.asdict(model)},
    hooks=[log],
    lanes=True,
    resume=resume,
    checkpoint_every=cfg.checkpoint_every,
  )
  trained = time.time() - start
  scores = jax.device_get(evaluate_fn(model)(run.state, jnp.asarray(test.inputs), jnp.asarray(test.labels)))
  return {
    "model": name,
    "label": MODELS[name],
    "segments": model.max_segments,
    "seeds": list(cfg.seeds),
    **{k: np.asarray(v, np.float64).tolist() for k, v in scores.items()},  # [seeds, N] or [seeds]
    "train_loss": log.last,
    "train_seconds": trained,
    "seconds": time.time() - start,
  }


def run(cfg: Config, out: pathlib.Path, *, resume: bool = False, progress: bool = True) -> dict:
  """Every model of `cfg.models` in turn; writes OUT/results.json and OUT/results.md after each."""
  cfg = resolved(cfg)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  puzzles = PuzzleConfig("sudoku", cfg.size, cfg.train, cfg.test, cfg.data_seed, cfg.min_clues)
  data = tuple(one_identifier(s) for s in splits(puzzles))
  rows = []
  for name in cfg.models:
    done = out / name / "row.json"
    saved_config = _json(dataclasses.replace(cfg, models=(name,)))
    if resume and done.exists():
      saved = json.loads(done.read_text())
      if saved["config"] != saved_config:
        raise CheckpointError(f"cannot resume {done}: it holds a run of another configuration")
      row = saved["row"]
    else:
      row = train_and_eval(cfg, name, data, out / name, resume=resume, progress=progress)
      done.write_text(json.dumps({"config": saved_config, "row": row}, indent=2))
    rows.append(row)
    result = {"config": _json(cfg), "rows": rows, "seconds": sum(r["seconds"] for r in rows)}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(report(result) + "\n")
  return result


def _cell(values) -> str:
  """`mean ± std` over seeds of a percentage."""
  v = 100 * np.asarray(values, np.float64)
  return f"{v.mean():.1f} ± {v.std():.1f}"


def report(result: dict) -> str:
  """Exact accuracy (%) on the test split per segments used, and the halting statistics; mean ± std over seeds."""
  n = max(r["segments"] for r in result["rows"])
  cols = (
    ["model"]
    + [f"exact@{k}" for k in range(1, n + 1)]
    + ["blanks@N", "halt: segments", "halt: exact", "halt: decision"]
  )
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in result["rows"]:
    exact = np.asarray(r["exact"])  # [seeds, segments]
    cells = [r["label"]] + [_cell(exact[:, k]) if k < r["segments"] else "-" for k in range(n)]
    halting = np.asarray(r["halt_segments"])
    cells += [_cell(np.asarray(r["blanks"])[:, -1]), f"{halting.mean():.2f} ± {halting.std():.2f}"]
    cells += [_cell(r["halt_exact"]), _cell(r["halt_decision"])]
    lines.append("| " + " | ".join(cells) + " |")
  c = result["config"]
  lines.append(
    f"{c['size']}x{c['size']} Sudoku, {c['train']} training and {c['test']} test puzzles, {c['steps']} steps of "
    f"batch {c['batch']}, seeds {c['seeds']}; % on the test split, mean ± std over seeds; "
    f"total {result['seconds']:.0f} s"
  )
  return "\n".join(lines)
