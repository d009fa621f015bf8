"""MQAR: recall accuracy against the number of key-value pairs, per memory.

Command:   contlearn run mqar                          # 10 models x 3 seeds at the rate 3e-3
           contlearn run mqar --only linear_attention,deltanet,gated_deltanet --set seeds=0,1,2,3,4
           contlearn run mqar --set small=true         (a smoke run, about a minute)
Runtime:   measured at 66b3c87 (3 lanes a row at the rate 3e-3, 3000 steps) on 2 CPU cores:
           431 s (sliding-window attention) to 938 s (Titans) a row for the rows that ran alone,
           759-3,261 s for those beside other jobs (docs/memories.md); each further rate in `lrs`
           adds 3 lanes.
Outputs:   OUT/mqar.json (every row, every lane), OUT/<model>/ (metrics.jsonl,
           checkpoints/, row.json); `--resume` keeps finished rows and continues
           an interrupted one from its last checkpoint.

Every model is a 2-layer byte LM of width 64. The memories hold the same
state per layer (2048 floats): matrix memories with 2 heads of 32x32, MLP
memories (TTT-MLP, Titans) with 4 heads of a 16-16-16 MLP, and sliding-window
attention with a 16-token window (16 keys + 16 values of width 64). The
memories' short convolution starts uniform in +-1/sqrt(4) (`mem_conv_init`,
the memories' `model.mixer.conv_init`,
as the reference implementations of Mamba and DeltaNet): MQAR asks each key
to be bound to the token after it, and with the identity start q, k and v see
only their own token until the outer loop learns the shift. Full causal
attention (a window as long as the sequence) is the reference without a
state limit.

Each model is a `sequence_learner` with a fresh memory per sequence, trained
by the engine on sequences of 1..`max_pairs` pairs (`contlearn.memories.mqar`,
pair counts log-uniform by default), the loss on the recalled values only. It
trains every seed of `seeds` at every learning rate of `lrs` at once: lane
(s, r) of one vmapped program is initialised from PRNGKey(s) (the learner draws
its parameters from the first key of split(PRNGKey(s))), learns at rate r (an
injected hyperparameter of its AdamW: warm-up, then cosine decay) and reads
step i's batch from fold_in(PRNGKey(s), i), drawn inside the compiled step;
a lane of seed s is therefore the run of `--set seeds=s` alone. Per seed, the
rate with the best mean accuracy on validation sequences is chosen, as in
Zoology's protocol, and scored on fresh test sequences of exactly n pairs,
n = 2, 4, ... up to `max_pairs` (the same sequences for every lane). The
report gives each cell's mean and sample standard deviation over the seeds.
A lane whose loss or state turns non-finite (a rate too high) is retired, not
the whole row stopped (`on_nonfinite`, docs/reliability.md): its rate is
never kept, and the report names it as diverged.

The defaults are the setting of docs/memories.md's runs C and E (one seed
each, where the delta rule led linear attention; at 3 seeds the two lie
within the seeds' spread, and full attention learns recall on 3 of 9
seeds): keys and values
from 512 tokens each, so keys outnumber the two heads' 64 key dimensions and
stored pairs interfere, as in Zoology's MQAR (8192 tokens); linear query/key
features (`mem_qk_act="identity"`); the gated write strength starting at 0.05
(`mem_lr_init`, DeltaNet's beta; the library's default is 0.5, and runs A-F,
one seed each, do not show which start is better); the one rate 3e-3, the rate of docs/memories.md's
3-seed table (only 3e-3 learned in runs A-F: 1e-3 and 1e-2 stayed on the
plateau at 512 keys; the default was 1e-3 and 3e-3 before). With keys from
64 tokens (`--set n_keys=64 --set n_values=64`) stored pairs barely interfere and the
memories sat near the ceiling in the one-seed former default table (docs/memories.md), which
is `--set n_keys=64 --set n_values=64 --set mem_qk_act=silu --set
mem_lr_init=0.5 --set lrs=0.003,0.01 --set seeds=0`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from contlearn import engine, spread, synthetic
from contlearn.cl.results import markdown_table
from contlearn.config import ModelConfig
from contlearn.errors import CheckpointError, ConfigError
from contlearn.learner import sequence_learner
from contlearn.memories import mqar
from contlearn.mixer_configs import with_known_fields
from contlearn.models import byte_lm
from contlearn.models.memory_layer import QK_ACTS
from contlearn.overrides import apply_preset
from contlearn.run_folder import fit
from contlearn.run_log import write_atomic


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of the table: a label, a mixer and its settings.

  Attributes:
    label: the row's name in the table.
    mixer: the sequence mixer.
    n_heads: heads of the memory (the state per layer stays 2 x 32^2 floats).
    decay: of "linear_attention": "multiscale" for RetNet's per-head decays.
    window: of "swa": None is the window of equal state, d_model / 4 tokens
      (2 x window x d_model floats, as 2 heads of (d_model / 2)^2); 0 is the
      whole sequence.
  """

  label: str
  mixer: str
  n_heads: int = 2
  decay: str = "none"
  window: int | None = None


ROWS = {
  "attention": Row("attention (full)", "swa", window=0),
  "swa": Row("swa (equal state)", "swa"),
  "linear_attention": Row("linear attention", "linear_attention"),
  "retnet": Row("retnet decay", "linear_attention", decay="multiscale"),
  "mamba2": Row("mamba2 decay", "mamba2"),
  "deltanet": Row("deltanet", "deltanet"),
  "gated_deltanet": Row("gated deltanet", "gated_deltanet"),
  "ttt_linear": Row("ttt-linear", "ttt_linear"),
  "ttt_mlp": Row("ttt-mlp", "ttt_mlp", n_heads=4),
  "titans": Row("titans", "titans", n_heads=4),
}


@dataclasses.dataclass(frozen=True)
class MqarConfig:
  """The MQAR experiment.

  Attributes:
    models: the rows to run, names of `ROWS`: attention (full causal
      attention), swa (sliding window of equal state), linear_attention,
      retnet, mamba2, deltanet, gated_deltanet, ttt_linear, ttt_mlp, titans.
    small: a smoke run of about a minute: each field of `SMALL` still at its
      default takes its smoke value (swa and deltanet, 60 steps in blocks of
      20, up to 4 pairs, keys and values from 64 tokens each, 64 evaluation
      sequences).
    d_model: model width; the memories' states scale as d_model^2.
    n_layers: blocks of the byte LM.
    mem_chunk: tokens per chunk of the memories' fast form (their
      model.mixer.chunk).
    mem_conv_init: the memories' short convolution start, "uniform" or
      "identity" (their model.mixer.conv_init).
    mem_qk_act: the memories' query/key feature map, "silu" or "identity"
      (their model.mixer.qk_act; the library's default is silu).
    mem_lr_init: initial gated inner rate in (0, 1), e.g. DeltaNet's beta
      (model.mixer.lr_init of the memories with a gated rate; the library's
      default is 0.5).
    max_pairs: most pairs in a training sequence (>= 2); sequences are
      4 * max_pairs tokens and evaluation is at 2, 4, ... up to max_pairs.
    mix: pair-count distribution in training, "uniform" or "log_uniform".
    n_keys: size of the key vocabulary (>= max_pairs: keys are distinct).
    n_values: size of the value vocabulary (>= 1).
    steps: training steps.
    batch: sequences per step.
    lrs: learning rates, trained at once as lanes; the best on validation
      sequences is kept per model and seed.
    warmup: fraction of the steps of linear warm-up, before cosine decay.
    weight_decay: AdamW's decoupled weight decay.
    clip: global gradient-norm clip.
    eval_batch: validation and test sequences per pair count.
    seeds: initialisation and data seeds, trained at once as lanes (seeds x
      lrs): lane (s, r) is initialised from PRNGKey(s) and reads step i's batch from
      fold_in(PRNGKey(s), i); the report gives each cell's mean and sample
      standard deviation over the seeds.
    block: steps per compiled call (steps must be a multiple).
    checkpoint_every: blocks between checkpoints.
    on_nonfinite: a lane (seed, rate) whose loss or state turns non-finite:
      "retire" keeps it at its state before that block, reports it as
      diverged (never the rate kept; a seed whose every rate diverged scores
      NaN) and trains the other lanes on; "stop" ends the row's run. A
      resume may change it.
  """

  models: tuple[str, ...] = tuple(ROWS)
  small: bool = False
  d_model: int = 64
  n_layers: int = 2
  mem_chunk: int = 16
  mem_conv_init: str = "uniform"
  mem_qk_act: str = "identity"
  mem_lr_init: float = 0.05
  max_pairs: int = 16
  mix: str = "log_uniform"
  n_keys: int = 512
  n_values: int = 512
  steps: int = 3000
  batch: int = 32
  lrs: tuple[float, ...] = (3e-3,)
  warmup: float = 0.1
  weight_decay: float = 0.1
  clip: float = 1.0
  eval_batch: int = 256
  seeds: tuple[int, ...] = (0, 1, 2)
  block: int = 100
  checkpoint_every: int = 5
  on_nonfinite: str = "retire"


SMALL = {
  "models": ("swa", "deltanet"),
  "steps": 60,
  "block": 20,
  "max_pairs": 4,
  "n_keys": 64,
  "n_values": 64,
  "eval_batch": 64,
}


def get_config() -> MqarConfig:
  return MqarConfig()


def resolved(cfg: MqarConfig) -> MqarConfig:
  """`cfg` with `small` applied to the fields still at their defaults, and checked.

  Raises:
    ConfigError: a setting that cannot make a valid run, named in one line.
  """
  if cfg.small:
    cfg = apply_preset(cfg, SMALL)
  unknown = [m for m in cfg.models if m not in ROWS]
  if unknown or not cfg.models:
    raise ConfigError(f"models={','.join(cfg.models)}: choose from {', '.join(ROWS)}")
  if cfg.max_pairs < 2:
    raise ConfigError(f"max_pairs={cfg.max_pairs}: evaluation needs at least 2 pairs")
  if cfg.n_keys < cfg.max_pairs or cfg.n_values < 1:
    raise ConfigError(
      f"n_keys={cfg.n_keys}, n_values={cfg.n_values}: a sequence of {cfg.max_pairs} pairs needs "
      f"at least {cfg.max_pairs} distinct keys and one value"
    )
  if not 0.0 < cfg.mem_lr_init < 1.0:
    raise ConfigError(f"mem_lr_init={cfg.mem_lr_init} must lie in (0, 1)")
  if cfg.mix not in mqar.MIXES:
    raise ConfigError(f"mix={cfg.mix!r}: choose one of {', '.join(mqar.MIXES)}")
  if cfg.mem_qk_act not in QK_ACTS:
    raise ConfigError(f"mem_qk_act={cfg.mem_qk_act!r}: choose one of {', '.join(QK_ACTS)}")
  if not cfg.lrs or min(cfg.lrs) <= 0:
    raise ConfigError(f"lrs={cfg.lrs}: give one or more positive learning rates")
  if not cfg.seeds or len(set(cfg.seeds)) < len(cfg.seeds):
    raise ConfigError(f"seeds={cfg.seeds}: give one or more distinct seeds")
  if cfg.on_nonfinite not in ("retire", "stop"):
    raise ConfigError(f"on_nonfinite={cfg.on_nonfinite!r}: choose retire or stop")
  if cfg.block < 1 or cfg.steps < 1 or cfg.steps % cfg.block:
    raise ConfigError(f"steps={cfg.steps} must be a positive multiple of block={cfg.block}")
  return cfg


def eval_pairs(cfg: MqarConfig) -> tuple[int, ...]:
  """The pair counts scored: the powers of 2 from 2 up to max_pairs."""
  return tuple(2**i for i in range(1, cfg.max_pairs.bit_length()))


def window(cfg: MqarConfig, row: Row) -> int:
  if row.window is None:
    return cfg.d_model // 4
  return row.window or 4 * cfg.max_pairs


def model_config(cfg: MqarConfig, row: Row) -> ModelConfig:
  """The row's byte LM; its mixer takes those of the experiment's settings it has."""
  mixer = with_known_fields(
    row.mixer,
    decay=row.decay,
    window=window(cfg, row),
    chunk=cfg.mem_chunk,
    conv_init=cfg.mem_conv_init,
    qk_act=cfg.mem_qk_act,
    lr_init=cfg.mem_lr_init,
    expansion=1,
  )
  return ModelConfig(
    mixer=mixer,
    vocab=mqar.vocab_size(cfg.n_keys, cfg.n_values),
    d_model=cfg.d_model,
    n_layers=cfg.n_layers,
    n_heads=row.n_heads,
  )


def rule(cfg: MqarConfig) -> optax.GradientTransformation:
  """AdamW with warm-up and cosine decay; its `learning_rate` an injected hyperparameter (a lane's rate)."""
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, int(cfg.warmup * cfg.steps)), cfg.steps)

  def adamw(learning_rate):
    return optax.chain(
      optax.clip_by_global_norm(cfg.clip),
      optax.scale_by_adam(),
      optax.add_decayed_weights(cfg.weight_decay),
      optax.scale_by_schedule(schedule),
      optax.scale(-learning_rate),
    )

  return optax.inject_hyperparams(adamw)(learning_rate=1.0)


def lane_keys(cfg: MqarConfig) -> jax.Array:
  """[seeds x lrs, 2] uint32: lane (s, r), at s * len(lrs) + r, holds PRNGKey(seeds[s]), its start and data key."""
  return jnp.repeat(engine.seed_keys(cfg.seeds), len(cfg.lrs), axis=0)


def lane_rates(cfg: MqarConfig) -> jax.Array:
  """[seeds x lrs] float32: lane (s, r) learns at lrs[r]."""
  return jnp.tile(jnp.asarray(cfg.lrs, jnp.float32), len(cfg.seeds))


def with_rates(state, rates: jax.Array):
  """A lane-stacked state whose lane l learns at `rates[l]` ([L] float32)."""
  opt = state.opt_state
  return state.replace(opt_state=opt._replace(hyperparams={**opt.hyperparams, "learning_rate": rates}))


def training_batch(cfg: MqarConfig, key: jax.Array, i: jax.Array) -> synthetic.ScoredChunk:
  """Step i's batch, from fold_in(key, i) with the lane's key PRNGKey(seed): every token read, recalls scored."""
  k_n, k_b = jax.random.split(jax.random.fold_in(key, i))
  pairs = mqar.pair_counts(k_n, cfg.batch, cfg.max_pairs, cfg.mix)
  b = mqar.sample(k_b, cfg.batch, pairs, cfg.max_pairs, cfg.n_keys, cfg.n_values)
  return synthetic.ScoredChunk(b.tokens, jnp.ones(b.answer.shape, bool), b.answer)


def learner_and_state(cfg: MqarConfig, row: Row):
  """The MQAR learner of `row` and a function making its lane-stacked initial state (seeds x lrs lanes).

  The learner's block entries are step numbers and its env, one entry per
  lane (`lane_env`), is the lane's `lane_keys` entry, from which it draws
  its batches.
  """
  model = byte_lm(model_config(cfg, row))
  inner = sequence_learner(model, rule(cfg), cfg.batch, carry_memory=False)
  learner = engine.Learner(inner.init, lambda state, i, key: inner.step(state, training_batch(cfg, key, i), None))

  def init_state():
    return with_rates(engine.init(learner, lane_keys(cfg), lanes=True), lane_rates(cfg))

  return model, learner, init_state


def accuracy_fn(cfg: MqarConfig, model):
  """`accuracy(state, key, pairs) -> [lanes]`: recall accuracy on `eval_batch` fresh sequences, no update.

  Every lane reads the same sequences, drawn from `key`.
  """

  def accuracy(state, key, pairs):
    batch = mqar.sample(key, cfg.eval_batch, pairs, cfg.max_pairs, cfg.n_keys, cfg.n_values)
    x = batch.tokens[:, :-1]
    logits, _ = model.apply(state.params, model.init_memory(x.shape[0]), x, jnp.ones(x.shape, bool))
    hit = (jnp.argmax(logits, axis=-1) == batch.tokens[:, 1:]) & batch.answer
    return jnp.sum(hit) / jnp.sum(batch.answer)

  return engine.compile_call(accuracy, lanes=True, donate=False)


def _json(cfg: MqarConfig) -> dict:
  return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _defining(config: dict) -> dict:
  """Of a config as JSON (`_json`), the settings a resumed row must share with its saved run: all but the
  non-finite policy."""
  return {k: v for k, v in config.items() if k != "on_nonfinite"}


def row_result(
  cfg: MqarConfig,
  label: str,
  val: np.ndarray,
  test: dict[int, np.ndarray],
  loss: np.ndarray,
  retired: dict[int, int] | None = None,
) -> dict:
  """The row of one model from its lanes' scores, each [seeds x lrs] float (lane (s, r) at s * len(lrs) + r).

  Per seed, the rate with the best validation accuracy `val` among the lanes
  that did not diverge (`retired`: lane -> the block that retired it) is kept
  and its test accuracy at each pair count n (`test[n]`) and training loss
  reported: "lr", "n=<n>" and "loss" are lists over the seeds (None for a
  seed whose every rate diverged), "mean" and "std" their mean and sample
  standard deviation per key over the seeds that did not (std None for one,
  both None for none), "trained" how many those are, and "lanes" every lane,
  with the chunk that retired it ("diverged_at", None when it did not; its
  loss None).
  """
  retired = retired or {}
  shape = (len(cfg.seeds), len(cfg.lrs))
  gone = np.isin(np.arange(len(val)), list(retired)).reshape(shape)
  best = np.argmax(np.where(gone, -np.inf, np.reshape(val, shape)), axis=1)  # [seeds]: the kept rate's index
  lost = gone[np.arange(len(best)), best]  # [seeds]: every rate diverged

  def kept(a):
    return [None if x else float(v) for x, v in zip(lost, np.reshape(a, shape)[np.arange(len(best)), best])]

  def finite(v):
    return float(v) if np.isfinite(v) else None

  scores = {**{f"n={n}": kept(acc) for n, acc in test.items()}, "loss": kept(loss)}
  trained = int(np.sum(~lost))
  stats = {k: spread.mean_std([x for x in v if x is not None]) if trained else (None, None) for k, v in scores.items()}
  lanes = [
    {
      "seed": s,
      "lr": lr,
      "val": float(val[i]),
      "loss": finite(loss[i]),
      **{f"n={n}": float(a[i]) for n, a in test.items()},
      "diverged_at": retired.get(i),
    }
    for i, (s, lr) in enumerate(itertools.product(cfg.seeds, cfg.lrs))
  ]
  return {
    "memory": label,
    "seeds": list(cfg.seeds),
    "lr": [None if x else cfg.lrs[b] for b, x in zip(best, lost, strict=True)],
    **scores,
    "trained": trained,
    "mean": {k: m for k, (m, _) in stats.items()},
    "std": {k: sd for k, (_, sd) in stats.items()},
    "lanes": lanes,
  }


def train_lanes(
  cfg: MqarConfig,
  learner: engine.Learner,
  init_state,
  keys: jax.Array,
  out: pathlib.Path,
  label: str,
  config: dict,
  *,
  resume: bool,
  progress: bool,
):
  """Trains the lane-stacked state `init_state()` for `cfg.steps` into `out`, lane l drawing its batches from
  `keys[l]`; the finished loop and its `LossLog` (out/metrics.jsonl, rows labelled `label`)."""
  seeds = ", ".join(map(str, cfg.seeds))
  feed = synthetic.StepFeed(cfg.steps, cfg.block, synthetic.step_indices, name=f"MQAR seeds {seeds}")
  log = synthetic.LossLog(out / "metrics.jsonl", max(1, cfg.steps // 20), label, cfg.steps, progress)
  run = fit(
    learner,
    init_state,
    feed,
    out,
    config=config,
    hooks=[log],
    env=keys,
    lanes=True,
    lane_env=True,
    resume=resume,
    checkpoint_every=cfg.checkpoint_every,
    on_nonfinite=cfg.on_nonfinite,
  )
  return run, log


def recall_on_test(cfg: MqarConfig, accuracy, state) -> dict[int, np.ndarray]:
  """Per pair count n of `eval_pairs`, every lane's recall on the test sequences of n pairs (drawn from
  PRNGKey(10_000 + n)), with `accuracy` from `accuracy_fn`."""
  return {n: np.asarray(accuracy(state, jax.random.PRNGKey(10_000 + n), n)) for n in eval_pairs(cfg)}


def train_and_eval(cfg: MqarConfig, name: str, out: pathlib.Path, *, resume: bool, progress: bool) -> dict:
  """Trains row `name` at every seed and rate of `cfg` into `out`; the row (`row_result`) and its seconds."""
  row = ROWS[name]
  model, learner, init_state = learner_and_state(cfg, row)
  config = {**{k: v for k, v in _defining(_json(cfg)).items() if k not in ("models", "small")}, "row": name}
  run, log = train_lanes(
    cfg, learner, init_state, lane_keys(cfg), out, row.label, config, resume=resume, progress=progress
  )
  accuracy = accuracy_fn(cfg, model)
  val = np.mean([np.asarray(accuracy(run.state, jax.random.PRNGKey(20_000 + n), n)) for n in eval_pairs(cfg)], axis=0)
  result = row_result(cfg, row.label, val, recall_on_test(cfg, accuracy, run.state), log.tail(), run.retired)
  result["seconds"] = run.seconds  # training, over every invocation of a resumed run; None: not recorded
  return result


def run(cfg: MqarConfig, out: pathlib.Path, *, resume: bool = False, progress: bool = True) -> dict:
  """Every model of `cfg.models` in turn; writes OUT/mqar.json after each row and returns its content."""
  cfg = resolved(cfg)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  rows = []
  for name in cfg.models:
    done = out / name / "row.json"
    if resume and done.exists():
      saved = json.loads(done.read_text())
      if _defining(saved["config"]) != _defining(_json(dataclasses.replace(cfg, models=(name,)))):
        raise CheckpointError(f"cannot resume {done}: it holds a run of another configuration")
      row = saved["row"]
    else:
      row = train_and_eval(cfg, name, out / name, resume=resume, progress=progress)
      write_atomic(done, json.dumps({"config": _json(dataclasses.replace(cfg, models=(name,))), "row": row}, indent=2))
    rows.append(row)
    if progress:
      print(json.dumps({k: v for k, v in row.items() if k != "lanes"}), flush=True)
    result = {
      "config": _json(cfg),
      "eval_pairs": list(eval_pairs(cfg)),
      "rows": rows,
      "seconds": spread.known(sum, [r["seconds"] for r in rows]),
    }
    write_atomic(out / "mqar.json", json.dumps(result, indent=2))
  return result


def report(result: dict) -> str:
  """The table: per model, the rate kept per seed, then test accuracy per pair count and training loss
  as mean ± sample standard deviation over the seeds (the mean alone for one seed), and seconds."""
  keys = [f"n={n}" for n in result["eval_pairs"]] + ["loss"]
  header = ["memory", "kept lr per seed"] + keys + ["s"]

  def cell(r, k):
    if r["mean"][k] is None:
      return "diverged"
    return r["mean"][k] if r["std"][k] is None else (r["mean"][k], r["std"][k])

  def rates(r):
    return ", ".join("diverged" if lr is None else f"{lr:g}" for lr in r["lr"])

  def seconds(r):
    return "-" if r["seconds"] is None else f"{r['seconds']:.0f}"

  rows = [[r["memory"], rates(r)] + [cell(r, k) for k in keys] + [seconds(r)] for r in result["rows"]]
  diverged = [
    f"{r['memory']}: seed {lane['seed']} at rate {lane['lr']:g} diverged in chunk {lane['diverged_at']}"
    for r in result["rows"]
    for lane in r.get("lanes", ())
    if lane.get("diverged_at") is not None
  ]
  diverged += [
    f"{r['memory']}: cells over {r['trained']} of {len(r['lr'])} seeds (the others diverged at every rate)"
    for r in result["rows"]
    if r.get("trained", len(r["lr"])) < len(r["lr"])
  ]
  seeds = ", ".join(map(str, result["config"]["seeds"]))
  return "\n".join(
    [
      f"seeds {seeds}: mean ± sample standard deviation over them; each seed keeps its best rate on validation",
      "",
      markdown_table(header, rows, percent=False),
      *diverged,
      f"total {result['seconds']:.0f} s of training and evaluation",
    ]
  )
