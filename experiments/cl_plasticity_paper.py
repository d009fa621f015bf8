"""Loss of plasticity at the paper's scale (Dohare et al., online permuted MNIST), for a GPU or TPU.

cl_plasticity's methods (backprop, continual backprop) on full MNIST: 800
permutations of the 60,000 training images, one image per SGD step (48M
steps), a 784-2000-2000-2000-10 MLP, rate 0.01, accuracy on 2,000 test rows
of each task at its end, 3 seeds as lanes (the permutations, steps and
widths are the paper's online permuted MNIST as its repository's configs,
shibhansh/loss-of-plasticity, set them; the rate 0.01 is one of the three
they try for backprop, 0.01/0.003/0.001, and their continual-backprop
config uses 0.003, so that method runs here at a rate its config does
not use: `--set run.lr=0.003`). Full MNIST through
tensorflow-datasets (`tfds:mnist`, which tfds must have prepared: with
TensorFlow installed, `tfds.builder("mnist").download_and_prepare(
file_format="array_record")`; without it the run stops at once, in one
line) or IDX files (`--set run.dataset=idx:<folder>`, the four files of
MNIST from any mirror). Not run by the project on its CPU machine; the
same code path as cl_plasticity, which the tests exercise. Its expected
cost: `python benchmarks/lm_gpu_cost.py` (docs/benchmarks.md).

Command:   contlearn run cl_plasticity_paper [--set run.dataset=idx:<folder>]
Runtime:   not measured (no accelerator); see the cost estimate.
"""

import dataclasses

from contlearn.experiments.cl_plasticity import Config, report, run  # noqa: F401  (the experiment's run and report)


def get_config() -> Config:
  base = Config()
  return dataclasses.replace(
    base,
    run=dataclasses.replace(
      base.run,
      dataset="tfds:mnist",
      n_tasks=800,
      hidden=(2000, 2000, 2000),
      lr=0.01,
      batch=1,
      steps_per_task=60_000,
      eval_every=60_000,
      max_test=2000,
      seeds=(0, 1, 2),
    ),
  )
