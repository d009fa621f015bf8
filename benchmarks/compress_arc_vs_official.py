"""Puzzles per hour: contlearn's CompressARC against the official PyTorch code, on the same puzzles and steps.

contlearn trains every puzzle of a fixed set of small ARC-AGI-1 training
puzzles (the `--puzzles` ones with the smallest canvas, `task.smallest`; 8
by default) for `--steps` steps (`contlearn.compress_arc.solve`: the puzzles
grouped by signature, each group vmapped lanes of one compiled scan,
`--workers` groups compiled and trained at once on threads; the Adam
steps, the answer selection and every compilation are in the time, with a cold compilation cache).
The official code (github.com/iliao2345/CompressARC, MIT, benchmark-only;
`--peer` points at its folder) trains the same puzzles (first, so that a
missing peer fails early) one at a time with
its own `train.take_step` (forward, loss, backward, Adam, its answer
logger) on the CPU, 2 torch threads. The official step takes seconds
here, so it is timed over `--peer-steps` steps per puzzle after one warm-up
step and scaled to `--steps` (said in the output); its per-puzzle set-up
(building the network) is timed once per puzzle and added.

Prints a table and ends with one JSON line: `puzzles_per_hour`,
`peer_puzzles_per_hour`, `ratio`.

    python benchmarks/compress_arc_vs_official.py [--steps 2000] [--peer-steps 5] [--peer DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402

# The official code (CompressARC at 83a22218), checked out beside the repository unless --peer says where.
DEFAULT_PEER = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "peers", "CompressARC"
)
PEER_PACKAGES = ["torch==2.13.0", "tqdm", "matplotlib"]
THREADS = 2
# the ratio to reach, in puzzles per hour (`run_all.py` prints it against its goal)
GOALS = {"ratio": 10.0}


def arguments() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000, help="training steps per puzzle (both)")
  parser.add_argument("--peer-steps", type=int, default=5, help="official steps timed per puzzle (then scaled)")
  parser.add_argument("--puzzles", type=int, default=8, help="the N training puzzles with the smallest canvas")
  parser.add_argument("--workers", type=int, default=2, help="contlearn's signature groups at once (solve)")
  parser.add_argument("--peer", default=os.environ.get("CONTLEARN_COMPRESS_ARC_PEER", DEFAULT_PEER))
  return parser.parse_args()


def ensure_peer(peer: str):
  """torch (pinned, CPU) installed if missing; the official modules imported from `peer` onto the CPU."""
  if not os.path.isfile(os.path.join(peer, "arc_compressor.py")):
    raise SystemExit(f"the official CompressARC code is not at {peer} (--peer)")
  if not all(importlib.util.find_spec(m) for m in ("torch", "tqdm", "matplotlib")):
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep rather than spin
  sys.path.insert(0, os.path.abspath(peer))
  # train.py imports its plotting module, which the benchmark never calls (and a trimmed copy may lack).
  sys.modules.setdefault("visualization", types.ModuleType("visualization"))
  import arc_compressor  # noqa: F401  (sets the default device to CUDA when imported)
  import preprocessing  # noqa: F401
  import solution_selection  # noqa: F401
  import torch
  import train  # noqa: F401

  torch.set_default_device(None)  # back onto the CPU, without a per-operation device context
  torch.set_default_dtype(torch.float32)
  torch.set_num_threads(THREADS)
  return torch


def peer_challenges(peer: str, ids: list[str]) -> dict[str, dict]:
  """The puzzles `ids` as the official code reads them (its own copy of the training split)."""
  path = os.path.join(peer, "dataset", "arc-agi_training_challenges.json")
  if not os.path.isfile(path):
    raise SystemExit(f"the official CompressARC code is not at {peer} (--peer): no {path}")
  with open(path) as f:
    everything = json.load(f)
  return {i: everything[i] for i in ids}


def peer_seconds(peer: str, challenges: dict[str, dict], timed: int) -> dict[str, dict[str, float]]:
  """Per puzzle: the official set-up seconds and the median seconds of one training step (`timed` steps)."""
  torch = ensure_peer(peer)
  import arc_compressor
  import preprocessing
  import solution_selection
  import train

  out = {}
  for task_id, challenge in challenges.items():
    start = time.perf_counter()
    task = preprocessing.Task(task_id, challenge, None)
    model = arc_compressor.ARCCompressor(task)
    optimizer = torch.optim.Adam(model.weights_list, lr=0.01, betas=(0.5, 0.9))
    logger = solution_selection.Logger(task)
    logger.solution_most_frequent = tuple(((0, 0), (0, 0)) for _ in range(task.n_test))
    logger.solution_second_most_frequent = logger.solution_most_frequent
    setup = time.perf_counter() - start
    times = []
    for step in range(timed + 1):  # the first step is a warm-up
      start = time.perf_counter()
      train.take_step(task, model, optimizer, step, logger)
      times.append(time.perf_counter() - start)
    out[task_id] = {"setup_s": setup, "step_s": statistics.median(times[1:])}
  return out


def main() -> None:
  args = arguments()
  from contlearn.compress_arc import solve, task

  puzzles = task.load("training", task.smallest("training", args.puzzles))
  groups = task.by_signature(puzzles)

  challenges = peer_challenges(args.peer, [p.task_id for p in puzzles])
  peer = peer_seconds(args.peer, challenges, args.peer_steps)  # first: a missing peer fails before the long part
  peer_total = sum(v["setup_s"] + v["step_s"] * args.steps for v in peer.values())
  theirs = len(puzzles) / peer_total * 3600

  start = time.perf_counter()
  solved = solve.solve(puzzles, steps=args.steps, progress=False, workers=args.workers)
  seconds = time.perf_counter() - start
  ours = len(puzzles) / seconds * 3600

  ours_label = f"contlearn (lanes, {args.workers} groups at once)"
  columns = ["code", "puzzles", f"seconds ({args.steps} steps each)", "puzzles per hour"]
  common.print_table(
    [
      dict(zip(columns, [ours_label, f"{len(puzzles)} in {len(groups)} groups", seconds, ours])),
      dict(zip(columns, ["official PyTorch (one at a time)", str(len(puzzles)), peer_total, theirs])),
    ],
    columns,
  )
  step_s = [v["step_s"] for v in peer.values()]
  print(
    f"official: median of {args.peer_steps} steps per puzzle after one warm-up ({min(step_s):.2f}-{max(step_s):.2f} "
    f"s/step), scaled to {args.steps} steps; contlearn's time includes compiling each group's program"
  )
  common.write_json(
    "compress_arc_vs_official",
    {
      "benchmark": "compress_arc_vs_official",
      "steps": args.steps,
      "puzzles": len(puzzles),
      "groups": len(groups),
      "workers": args.workers,
      "seconds": seconds,
      "peer_seconds_scaled": peer_total,
      "peer_steps_timed": args.peer_steps,
      "pass@2": solved["pass@2"],
      "puzzles_per_hour": ours,
      "peer_puzzles_per_hour": theirs,
      "ratio": ours / theirs,
      "goals": GOALS,
    },
  )


if __name__ == "__main__":
  main()
