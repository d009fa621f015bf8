"""Recursive models against one pass of the same parameters on one puzzle set: the reasoning experiments' run.

`run_comparison(cfg, presets, out)` trains every model of `cfg.models` in
turn on the training split of `cfg.puzzles`, each for `cfg.steps` optimizer steps (one
step = one supervision segment of every batch row), its seeds as lanes of
one vmapped `run_folder.fit` run into `OUT/<model>/` (metrics.jsonl, checkpoints;
`resume` continues an interrupted model and keeps finished ones), then
scores the test split with the weights' moving average (`ema_params`):

- `exact`: `[seeds, N]`, whole puzzles right after k = 1..N segments, all N run;
- `filled`: `[seeds, N]`, accuracy on the tokens the answer changes (a
  Sudoku's blanks, a maze's path) after k segments;
- with halting on (a puzzle stops at its first segment whose halt logit is
  > 0, else at N): `halt_segments` (mean segments used), `halt_exact`
  (exact accuracy at the halt) and `halt_decision` (accuracy of "halt"
  against "the answer is exactly right", over every segment of every test
  puzzle), each `[seeds]`;
- on ARC, `pass@1`, `pass@2` `[seeds]`: the official score, a vote over
  the augmentations of each test input of the answers after N segments
  (`contlearn.puzzles.arc_vote`); ARC's canvas padding counts nowhere;
- Sudoku and mazes: `exact_by` `[seeds, G]`, exact accuracy after N
  segments within each of G ranges of the test puzzles' difficulty (the
  Sudoku generator's) or path length (tokens on a maze's path), the ranges
  (`strata`, about equal quarters of the test split) in the row's `strata`:
  a score at a floor or a ceiling says which puzzles it comes from.

The models (`MODELS`): `trm` (TRM: T rounds of n latent updates per segment,
up to N segments, halting), `hrm` (HRM: two modules of `layers // 2` blocks
each, so about TRM's parameters, N high cycles of T low steps, Q-learning
halting) and `single_pass` (TRM's parameters run once: one latent and one
answer update, one segment per puzzle). Every Sudoku and maze has id 0: one
shared puzzle embedding, as in the official Sudoku and maze data, so test
puzzles are read exactly as training ones. ARC puzzles keep their ids, one
per (task, augmentation), and are not augmented by the feed (their sets hold
the augmentations).

OUT/results.json holds every seed's numbers, OUT/results.md the table (mean
± standard deviation over seeds), OUT/segments.png exact accuracy against
the segments used.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import engine, run_folder
from contlearn.block_log import BlockLog
from contlearn.errors import ConfigError
from contlearn.field_checks import FieldError, require
from contlearn.overrides import apply_preset
from contlearn.plots import save_figure
from contlearn.puzzles import PuzzleConfig, PuzzleFeed, PuzzleSet, arc_canvas, arc_vote, puzzle_kind, splits
from contlearn.reasoning import hrm, trm
from contlearn.reasoning.ema import ema_params
from contlearn.reasoning.segments import SegmentConfig, rollout
from contlearn.run_log import model_row, write_atomic

MODELS = {"trm": "TRM (recursive)", "hrm": "HRM (hierarchical)", "single_pass": "single pass"}
SCALES = ("smoke", "cpu", "gpu")


@dataclasses.dataclass(frozen=True)
class ComparisonConfig:
  """A comparison of recursive models with one pass on one kind of puzzle.

  Attributes:
    models: the models to run, in order: trm, hrm, single_pass.
    scale: "cpu" (the fields as they are), "smoke" (a run of about a minute)
      or "gpu" (the experiment's accelerator-scale configuration); a preset
      sets only the fields still at their defaults.
    puzzles: the puzzle sets (kind, size, train and test counts, seed).
    seeds: initialisation seeds, trained at once as lanes.
    width: D, the model width.
    layers: blocks of TRM's network (HRM: `layers // 2` in each of its two modules).
    mixer: how a block mixes positions: "mlp" (TRM's MLP-mixer) or "attention".
    heads: attention heads (mixer="attention").
    puzzle_tokens: P, puzzle-embedding tokens before the input (the official code uses 16).
    cycles: T, rounds of latent recursion per segment (TRM).
    latent_steps: n, latent updates per round (TRM).
    high_cycles: N, z_H updates per segment (HRM).
    low_steps: T, z_L updates per high cycle (HRM).
    max_segments: supervision segments per puzzle at most, and the segments evaluated.
    lr: AdamATan2's rate on the network.
    warmup: steps of linear warm-up of both rates from 0.
    puzzle_lr: sign-SGD's rate on the (single) puzzle embedding.
    weight_decay: decoupled weight decay of both rules.
    ema_rate: rate of the weights' moving average that is evaluated.
    steps: optimizer steps per model (one step = one segment of every row).
    batch: puzzles in flight per step.
    block: steps per compiled call (steps must be a multiple).
    checkpoint_every: blocks between checkpoints.
    eval_batch: test puzzles scored per compiled call.
  """

  models: tuple[str, ...] = tuple(MODELS)
  scale: str = "cpu"
  puzzles: PuzzleConfig = PuzzleConfig()
  seeds: tuple[int, ...] = (0, 1, 2)
  width: int = 64
  layers: int = 2
  mixer: str = "mlp"
  heads: int = 2
  puzzle_tokens: int = 1
  cycles: int = 2
  latent_steps: int = 3
  high_cycles: int = 2
  low_steps: int = 2
  max_segments: int = 8
  lr: float = 3e-3
  warmup: int = 0
  puzzle_lr: float = 1e-2
  weight_decay: float = 0.1
  ema_rate: float = 0.99
  steps: int = 800
  batch: int = 64
  block: int = 50
  checkpoint_every: int = 2
  eval_batch: int = 250

  def __post_init__(self):
    require(
      self,
      positive=(
        *("width", "layers", "heads", "puzzle_tokens", "cycles", "latent_steps", "high_cycles", "low_steps"),
        *("max_segments",),
        *("lr", "puzzle_lr", "steps", "batch", "block", "checkpoint_every", "eval_batch"),
      ),
      non_negative=("seeds", "weight_decay", "warmup"),
      fraction=("ema_rate",),
      choices={"scale": SCALES, "mixer": ("mlp", "attention")},
    )
    owner = type(self).__name__
    if not self.models or any(m not in MODELS for m in self.models):
      raise FieldError(owner, "models", self.models, f"one or more of {', '.join(MODELS)}")
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise FieldError(owner, "seeds", self.seeds, "one or more distinct seeds")


def resolved(cfg: ComparisonConfig, presets: dict[str, dict[str, Any]]) -> ComparisonConfig:
  """`cfg` with its scale's preset applied to the fields still at their defaults, checked across fields.

  Raises:
    ConfigError: steps is not a multiple of block (checked here, so `--set` may give them in any order).
  """
  cfg = apply_preset(cfg, presets.get(cfg.scale, {}))
  if cfg.steps % cfg.block:
    raise ConfigError(f"steps={cfg.steps} must be a multiple of block={cfg.block}")
  return cfg


def model_config(cfg: ComparisonConfig, name: str, ids: int = 1) -> SegmentConfig:
  """The `TRMConfig` or `HRMConfig` of model `name` on `cfg.puzzles`, with `ids` puzzle embeddings."""
  kind = puzzle_kind(cfg.puzzles)
  shared = dict(
    vocab=kind.vocab,
    length=kind.length,
    puzzles=ids,
    puzzle_tokens=cfg.puzzle_tokens,
    ignore_label=arc_canvas.PAD if cfg.puzzles.kind == "arc" else -1,
    width=cfg.width,
    mixer=cfg.mixer,
    heads=cfg.heads,
    max_segments=cfg.max_segments,
    lr=cfg.lr,
    warmup=cfg.warmup,
    weight_decay=cfg.weight_decay,
    puzzle_lr=cfg.puzzle_lr,
    puzzle_weight_decay=cfg.weight_decay,
    ema_rate=cfg.ema_rate,
  )
  if name == "hrm":
    return hrm.HRMConfig(**shared, layers=max(1, cfg.layers // 2), high_cycles=cfg.high_cycles, low_steps=cfg.low_steps)
  recursive = trm.TRMConfig(**shared, layers=cfg.layers, cycles=cfg.cycles, latent_steps=cfg.latent_steps)
  return trm.single_pass(recursive) if name == "single_pass" else recursive


def _module(model: SegmentConfig):
  """The module of a model's config: `(learner(cfg, batch), segment(params, cfg, carry))`."""
  if isinstance(model, hrm.HRMConfig):
    return hrm.hrm_learner, hrm.segment
  return trm.trm_learner, trm.segment


def one_identifier(puzzles: PuzzleSet) -> PuzzleSet:
  """The set with every puzzle's id 0 (one shared puzzle embedding)."""
  return PuzzleSet(puzzles.config, puzzles.inputs, puzzles.labels, np.zeros_like(puzzles.ids), puzzles.meta)


def _json(value: Any) -> Any:
  return json.loads(json.dumps(dataclasses.asdict(value)))


class TrainLog(BlockLog):
  """Per block, the mean loss, token accuracy and exact fraction of each lane, to `path` (JSON lines)."""

  def __init__(self, path: pathlib.Path, label: str, total_steps: int, progress: bool):
    super().__init__(path, label, total_steps, progress)
    self.last: list[float] = []

  def record(self, block, metrics) -> dict[str, Any]:
    record = {name: np.mean(np.asarray(getattr(metrics, name)), axis=-1).tolist() for name in ("loss", "accuracy")}
    record["exact"] = np.mean(np.asarray(metrics.exact), axis=-1).tolist()
    self.last = record["loss"]
    return record

  def describe(self, units: int, record: dict[str, Any]) -> str:
    return f"step {units}: loss {np.round(record['loss'], 3).tolist()}"

  def meta(self) -> dict:
    return {"last_loss": self.last}

  def restore(self, meta: dict) -> None:
    super().restore(meta)
    self.last = meta["last_loss"]


def answers_fn(model: SegmentConfig) -> Callable:
  """`answers(state, inputs [P, L], ids [P]) -> (answers int32 [lanes, N, P, L], halt logits float32 [lanes, N, P])`,
  every segment run, on the weights' moving average; compiled once, mapped over lanes."""
  segment = _module(model)[1]

  def answers(state, inputs, ids):
    return rollout(segment, ema_params(state.opt_state), model, inputs, ids)

  return engine.compile_call(answers, lanes=True, donate=False)


STRATA = {"sudoku": "difficulty", "maze": "path"}  # the meta that `exact_by` breaks the test split down by


def strata(test: PuzzleSet, groups: int = 4) -> dict[str, Any] | None:
  """The test puzzles in up to `groups` ranges of their `STRATA` meta (cut at its quantiles, so ties stay in one
  range): `{"meta": name, "group": int [P] (the range of each puzzle), "ranges": [[low, high, puzzles], ...]}`;
  None for a kind without one (ARC) or a set without that meta.

  >>> from contlearn.puzzles import PuzzleConfig, PuzzleSet
  >>> test = PuzzleSet(PuzzleConfig(kind="maze"), None, None, None, {"path": np.array([1, 1, 2, 5, 9, 9, 12, 30])})
  >>> strata(test)["ranges"]
  [[1, 1, 2], [2, 5, 2], [9, 9, 2], [12, 30, 2]]
  """
  name = STRATA.get(test.config.kind)
  if name not in test.meta:
    return None
  values = np.asarray(test.meta[name])
  edges = np.unique(np.quantile(values, np.arange(1, groups) / groups, method="lower"))
  _, group = np.unique(np.searchsorted(edges, values, side="left"), return_inverse=True)  # ranges 0..G-1, none empty
  ranges = [
    [int(values[group == g].min()), int(values[group == g].max()), int(np.sum(group == g))]
    for g in range(group.max() + 1)
  ]
  return {"meta": name, "group": group, "ranges": ranges}


def scores(answers: np.ndarray, halt_logits: np.ndarray, test: PuzzleSet, ignore_label: int = -1) -> dict:
  """The test scores of the module docstring from `answers [S, N, P, L]` and `halt_logits [S, N, P]` of S seeds;
  tokens labelled `ignore_label` do not count. ARC test splits add `pass@1` and `pass@2` `[S]`: the vote over
  augmentations (`arc_vote`) of the answers after the last segment, ties broken by sigmoid(halt logit); Sudoku and
  maze splits add `exact_by` `[S, G]`, the exact accuracy after the last segment in each range of `strata(test)`."""
  labels, inputs = test.labels[None, None], test.inputs[None, None]
  counted = labels != ignore_label
  correct = (answers == labels) & counted  # [S, N, P, L]
  exact = np.all(correct | ~counted, axis=-1)  # [S, N, P]
  changed = (labels != inputs) & counted
  halt = halt_logits > 0
  n = answers.shape[1]
  first = np.where(np.any(halt, axis=1), np.argmax(halt, axis=1), n - 1)  # [S, P]
  result = {
    "exact": exact.mean(axis=2),
    "filled": np.sum(correct & changed, axis=(2, 3)) / max(np.sum(changed), 1),
    "halt_segments": np.mean(first + 1.0, axis=1),
    "halt_exact": np.take_along_axis(exact, first[:, None], axis=1)[:, 0].mean(axis=1),
    "halt_decision": np.mean(halt == exact, axis=(1, 2)),
  }
  by = strata(test)
  if by is not None:
    result["exact_by"] = np.stack([exact[:, -1, by["group"] == g].mean(axis=1) for g in range(len(by["ranges"]))], 1)
  if test.config.kind == "arc":
    confidence = 1 / (1 + np.exp(-halt_logits[:, -1]))  # [S, P]
    votes = [arc_vote.vote(test, answers[s, -1], confidence[s]) for s in range(answers.shape[0])]
    result |= {f"pass@{k}": np.array([arc_vote.pass_at(v, k) for v in votes]) for k in (1, 2)}
  return result


def evaluate(model: SegmentConfig, state, test: PuzzleSet, eval_batch: int) -> dict[str, np.ndarray]:
  """`scores` of `state` (lanes) on `test`, in compiled calls of `eval_batch` puzzles (the last one padded)."""
  answers = answers_fn(model)
  parts = []
  for start in range(0, len(test), eval_batch):
    inputs = test.inputs[start : start + eval_batch]
    ids = test.ids[start : start + eval_batch]
    pad = eval_batch - len(inputs)
    inputs, ids = np.pad(inputs, ((0, pad), (0, 0))), np.pad(ids, (0, pad))
    a, h = jax.device_get(answers(state, jnp.asarray(inputs), jnp.asarray(ids)))
    parts.append((a[:, :, : eval_batch - pad], h[:, :, : eval_batch - pad]))
  answers, halt_logits = (np.concatenate([part[i] for part in parts], axis=2) for i in (0, 1))
  return scores(answers, halt_logits, test, model.ignore_label)


def train_and_eval(cfg: ComparisonConfig, name: str, data, out: pathlib.Path, *, resume: bool, progress: bool) -> dict:
  """Trains model `name` for every seed (lanes) into `out`; its scores on the test split, per seed."""
  train, test = data
  model = model_config(cfg, name, ids=int(max(train.ids.max(), test.ids.max(initial=0))) + 1)
  learner = _module(model)[0](model, cfg.batch)
  blocks = cfg.steps // cfg.block
  arc = cfg.puzzles.kind == "arc"  # ARC sets hold their augmentations; Sudoku and mazes are augmented by the feed
  feed = PuzzleFeed(train, steps=cfg.block, batch=cfg.batch, seed=cfg.puzzles.seed, augment=not arc, blocks=blocks)
  log = TrainLog(out / "metrics.jsonl", MODELS[name], cfg.steps, progress)
  keys = engine.seed_keys(cfg.seeds)
  start = time.time()
  run = run_folder.fit(
    learner,
    lambda: engine.init(learner, keys, lanes=True),
    feed,
    out,
    config={"experiment": _json(dataclasses.replace(cfg, models=(name,))), "model": dataclasses.asdict(model)},
    hooks=[log],
    lanes=True,
    resume=resume,
    checkpoint_every=cfg.checkpoint_every,
  )
  result = evaluate(model, run.state, test, cfg.eval_batch)
  by = strata(test)
  return {
    **({"strata": {"meta": by["meta"], "ranges": by["ranges"]}} if by else {}),
    "model": name,
    "label": MODELS[name],
    "segments": model.max_segments,
    "seeds": list(cfg.seeds),
    "parameters": _parameters(run.state.params),
    **{k: np.asarray(v, np.float64).tolist() for k, v in result.items()},  # [seeds, N] or [seeds]
    "train_loss": log.last,
    "train_seconds": run.seconds,  # over every invocation of a resumed run; None: not recorded
    "seconds": time.time() - start,  # this invocation's, evaluation included
  }


def _parameters(params) -> int:
  """Trained parameters of one lane (the fixed initial vectors and the puzzle table excluded)."""
  counted = {k: v for k, v in params.items() if k not in ("init", "puzzle_emb")}
  return int(sum(np.prod(leaf.shape[1:]) for leaf in jax.tree.leaves(counted)))


def run_comparison(
  cfg: ComparisonConfig,
  presets: dict[str, dict[str, Any]],
  out: pathlib.Path,
  *,
  resume: bool = False,
  progress: bool = True,
) -> dict:
  """Every model of `cfg.models` in turn; writes OUT/results.json, results.md and segments.png after each."""
  cfg = resolved(cfg, presets)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  data = splits(cfg.puzzles)
  if cfg.puzzles.kind != "arc":  # one shared puzzle embedding; ARC has one per (task, augmentation)
    data = tuple(one_identifier(s) for s in data)
  rows = []
  for name in cfg.models:
    saved_config = _json(dataclasses.replace(cfg, models=(name,)))
    train = functools.partial(train_and_eval, cfg, name, data, out / name, resume=resume, progress=progress)
    row = model_row(out / name / "row.json", saved_config, resume, train)
    rows.append(row)
    result = {"config": _json(cfg), "rows": rows, "seconds": sum(r["seconds"] for r in rows)}
    result["puzzles"] = {"train": len(data[0]), "test": len(data[1])}
    write_atomic(out / "results.json", json.dumps(result, indent=2))
    write_atomic(out / "results.md", report(result) + "\n")
    plot_segments(result, out / "segments.png")
  return result


def _cell(values) -> str:
  """`mean ± std` over seeds of a percentage."""
  v = 100 * np.asarray(values, np.float64)
  return f"{v.mean():.1f} ± {v.std():.1f}"


def report(result: dict) -> str:
  """Exact accuracy (%) on the test split per segments used, and the halting statistics; mean ± std over seeds."""
  n = max(r["segments"] for r in result["rows"])
  cols = ["model", "parameters"] + [f"exact@{k}" for k in range(1, n + 1)]
  cols += ["filled@N", "halt: segments", "halt: exact", "halt: decision"]
  votes = [k for k in ("pass@1", "pass@2") if all(k in r for r in result["rows"])]  # ARC
  cols += [f"ARC {k}" for k in votes]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in result["rows"]:
    exact = np.asarray(r["exact"])  # [seeds, segments]
    cells = [r["label"], f"{r['parameters']:,}"] + [_cell(exact[:, k]) if k < r["segments"] else "-" for k in range(n)]
    halting = np.asarray(r["halt_segments"])
    cells += [_cell(np.asarray(r["filled"])[:, -1]), f"{halting.mean():.2f} ± {halting.std():.2f}"]
    cells += [_cell(r["halt_exact"]), _cell(r["halt_decision"])] + [_cell(r[k]) for k in votes]
    lines.append("| " + " | ".join(cells) + " |")
  c, p = result["config"], result["config"]["puzzles"]
  n_train, n_test = result["puzzles"]["train"], result["puzzles"]["test"]
  lines.append(
    f"{p['kind']} of size {p['size']}, {n_train} training and {n_test} test puzzles, {c['steps']} steps of "
    f"batch {c['batch']}, seeds {c['seeds']}; % on the test split, mean ± std over seeds; "
    f"total {result['seconds']:.0f} s"
  )
  return "\n".join(lines + _by_stratum(result["rows"]))


def _by_stratum(rows: list[dict]) -> list[str]:
  """The table of `exact_by`: exact@N per range of the strata's meta, one column per range (none without)."""
  rows = [r for r in rows if "strata" in r]
  if not rows:
    return []
  meta, ranges = rows[0]["strata"]["meta"], rows[0]["strata"]["ranges"]
  heads = [f"{meta} {lo}-{hi} ({n})" if lo < hi else f"{meta} {lo} ({n})" for lo, hi, n in ranges]
  lines = ["", f"exact@N by {meta} (test puzzles per range):", "", "| model | " + " | ".join(heads) + " |"]
  lines.append("|" + "---|" * (len(heads) + 1))
  for r in rows:
    by = np.asarray(r["exact_by"])  # [seeds, G]
    lines.append("| " + " | ".join([r["label"]] + [_cell(by[:, g]) for g in range(by.shape[1])]) + " |")
  return lines


def plot_segments(result: dict, path: pathlib.Path) -> pathlib.Path:
  """Exact and filled-token accuracy against segments used at test time, mean and spread over seeds."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
  for ax, key, title in zip(axes, ("exact", "filled"), ("exact (whole puzzle)", "filled tokens")):
    for r in result["rows"]:
      v = 100 * np.asarray(r[key])  # [seeds, N]
      k = np.arange(1, v.shape[1] + 1)
      ax.errorbar(k, v.mean(axis=0), yerr=v.std(axis=0), marker="o", capsize=3, label=r["label"])
    ax.set(xlabel="segments at test time", ylabel="% of the test split", title=title)
  axes[0].legend()
  fig.tight_layout()
  save_figure(fig, path, dpi=100)
  return path
