"""Solving many ARC puzzles at once: one compiled scan per signature, one puzzle per lane.

`solve(puzzles, steps=...)` groups the puzzles by `Signature`
(`task.by_signature`), and trains each group with the host loop
(`run_folder.fit`): the group's learners (`learner.learner`) are lanes of one
vmapped program, each reading its own puzzle (`lane_env`), advanced in
compiled blocks of `block` steps, checkpointed every `checkpoint_every`
blocks (`--resume` continues a group exactly, its ballots included). After
each block the two candidates of every step of every lane leave the device
together and go into that puzzle's `selection.Ballot`; the two attempts are
read at each step of `report_at` and at the end.

Padding puzzles of other shapes into one signature is not done: it would not
be the same computation. The decoder's softmax layers normalise over whole
colour, direction, x and y axes and its x/y `share_down` means are masked
only when the signature implies the output sizes, so extra padded rows,
columns or colours change every output (tests/compress_arc/test_learner.py
shows a padded puzzle's outputs differ); lanes therefore hold puzzles of
exactly one signature, and a lane equals its puzzle trained alone.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import engine, loop, run_folder
from contlearn.compress_arc import selection, task
from contlearn.compress_arc.learner import SolverConfig, learner, puzzle_key
from contlearn.compress_arc.puzzle import Signature
from contlearn.config import to_dict
from contlearn.run_log import write_atomic
from contlearn.synthetic import StepFeed, step_indices


def group_name(sig: Signature) -> str:
  """A folder name for a signature, e.g. `3+1_c4_10x10_same`."""
  sizes = "same" if sig.in_out_same_size else "outs" if sig.all_out_same_size else "free"
  return f"{sig.n_train}+{sig.n_test}_c{sig.n_colors}_{sig.n_x}x{sig.n_y}_{sizes}"


class Tally(loop.Hook):
  """Each lane's ballot, fed every step's candidates after each block; the attempts at `report_at` steps."""

  def __init__(self, puzzles: Sequence[task.Puzzle], report_at: Sequence[int], progress: str | None):
    self.puzzles, self.report_at, self.progress = list(puzzles), sorted(report_at), progress
    self.ballots = [selection.Ballot(p) for p in self.puzzles]
    self.reports: dict[int, list[dict[str, Any]]] = {}
    self.losses: list[float] = []

  def on_metrics(self, run, block, units, new_units, metrics) -> None:
    candidates = jax.tree.map(np.asarray, metrics.candidates)  # leaves [lanes, steps, ...]
    first, done = units - new_units, 0
    for at in [s for s in self.report_at if first < s <= units]:  # a report counts the candidates of steps < at
      self._vote(candidates, slice(done, at - first))
      self.reports[at], done = self.attempts(), at - first
    self._vote(candidates, slice(done, None))
    self.losses = np.asarray(metrics.loss)[:, -1].tolist()
    if self.progress:
      print(f"  {self.progress} step {units}: loss {np.round(self.losses, 1).tolist()}", flush=True)

  def _vote(self, candidates: selection.Candidates, steps: slice) -> None:
    for lane, ballot in enumerate(self.ballots):
      ballot.add(selection.Candidates(*(a[lane, steps] for a in candidates)))

  def attempts(self) -> list[dict[str, Any]]:
    """Per puzzle: its two attempts (lists of grids) and, with a solution, pass@1 and pass@2."""
    rows = []
    for p, ballot in zip(self.puzzles, self.ballots):
      attempts = [[[list(row) for row in grid] for grid in answer] for answer in ballot.attempts]
      row = {"task_id": p.task_id, "attempts": attempts}  # answer, test output, row: lists (JSON's form)
      if p.solution is not None:
        row["pass@1"], row["pass@2"] = ballot.passes()
      rows.append(row)
    return rows

  def meta(self) -> dict[str, Any]:
    return {
      "ballots": [
        {"totals": [[a, t] for a, t in b.totals.items()], "first": b.first, "second": b.second} for b in self.ballots
      ],
      "reports": {str(k): v for k, v in self.reports.items()},
      "losses": self.losses,
    }

  def restore(self, meta: dict[str, Any]) -> None:
    def answer(a) -> selection.Answer:
      return tuple(tuple(tuple(int(c) for c in row) for row in grid) for grid in a)

    for ballot, saved in zip(self.ballots, meta["ballots"]):
      ballot.totals = {answer(a): float(t) for a, t in saved["totals"]}
      ballot.first, ballot.second = answer(saved["first"]), answer(saved["second"])
    self.reports = {int(k): v for k, v in meta["reports"].items()}
    self.losses = meta["losses"]


def solve_group(
  sig: Signature,
  puzzles: Sequence[task.Puzzle],
  out: pathlib.Path,
  *,
  steps: int,
  block: int,
  report_at: Sequence[int],
  cfg: SolverConfig,
  seed: int,
  resume: bool,
  checkpoint_every: int,
  progress: bool,
  hooks: Sequence[loop.Hook] = (),
  compiled: Callable[..., Any] | None = None,
) -> dict[str, Any] | None:
  """Trains one signature's puzzles as lanes into `out`; per puzzle its attempts at each report step and at the
  end (None when a hook stopped the run before the end)."""
  solver = learner(sig, cfg)
  keys = jnp.stack([puzzle_key(seed, p.task_id) for p in puzzles])
  tally = Tally(puzzles, report_at, group_name(sig) if progress else None)
  start = time.time()
  run = run_folder.fit(
    solver,
    lambda: engine.init(solver, keys, lanes=True),
    StepFeed(steps, block, step_indices, name=f"{len(puzzles)} ARC puzzles"),
    out,
    config={
      "signature": sig._asdict(),
      "puzzles": [p.task_id for p in puzzles],
      "solver": json.loads(json.dumps(to_dict(cfg))),
      "seed": seed,
      "steps": steps,
      "block": block,
    },
    hooks=[tally, *hooks],
    env=jax.tree.map(jnp.asarray, task.stack(puzzles)),
    lanes=True,
    lane_env=True,
    resume=resume,
    checkpoint_every=checkpoint_every,
    compiled=compiled,
  )
  if run.units < steps:
    return None
  reports = {**{str(k): v for k, v in tally.reports.items()}, str(steps): tally.attempts()}
  return {"reports": reports, "seconds": time.time() - start, "losses": tally.losses}


def trace_group(sig: Signature, puzzles: Sequence[task.Puzzle], block: int, cfg: SolverConfig) -> jax.stages.Traced:
  """The block call of a signature group (`engine.compile`), traced from shapes alone."""
  solver = learner(sig, cfg)
  keys = jax.ShapeDtypeStruct((len(puzzles),), jax.random.key(0).dtype)
  state = jax.eval_shape(jax.vmap(solver.init), keys)
  env = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.asarray(a).dtype), task.stack(puzzles))
  steps = jax.ShapeDtypeStruct((block,), jnp.int32)
  return engine.compile(solver, state, lanes=True, lane_env=True).trace(state, steps, env)


def compile_group(sig: Signature, puzzles: Sequence[task.Puzzle], block: int, cfg: SolverConfig) -> Callable:
  """The block call of a signature group, compiled now from shapes alone (as `engine.compile_ahead` does)."""
  return trace_group(sig, puzzles, block, cfg).lower().compile()


def solve(
  puzzles: Sequence[task.Puzzle],
  *,
  steps: int = 2000,
  block: int = 100,
  report_at: Sequence[int] = (),
  cfg: SolverConfig | None = None,
  seed: int = 0,
  out: str | pathlib.Path | None = None,
  resume: bool = False,
  checkpoint_every: int = 5,
  progress: bool = True,
  hooks: Sequence[loop.Hook] = (),
  workers: int = 2,
) -> dict[str, Any]:
  """Trains every puzzle for `steps` steps, its signature's group as lanes of one program.

  Returns `{"puzzles": {task_id: {"group", "seconds" (the group's, shared),
  str(step): {"attempts", "pass@1", "pass@2"}}}, "pass@1": {step: mean},
  "pass@2": {step: mean}, "seconds"}` for every step of `report_at` and `steps`;
  pass@k is ARC's scoring (each test example counts on its own, a puzzle
  scores the fraction it gets right) and needs the puzzles' solutions.
  `workers` groups are compiled and trained at once, each on its own thread
  (XLA compiles and runs with the interpreter lock released). Groups of
  different signatures cannot be lanes of one program; on threads, two of
  them train at once (about 1.35 times the throughput of one after the other
  on 2 cores, as much as two lanes of one program gain:
  `benchmarks/compress_arc_step.py`), and one group compiles while another
  trains. Each group's result is the same whatever `workers` is.
  Each group's checkpoints go to `out/<group name>/` (a temporary folder when
  `out` is None); a group whose `result.json` exists is read back under `resume`.
  `hooks` join every group's run (several at once when `workers` > 1, so a
  hook must keep no per-run state); when one stops a group early, its puzzles
  are listed under "unfinished" and the scores leave them out, as are the
  groups not started when a signal stops the run (`loop.STOP`).
  """
  if workers < 1:
    raise ValueError(f"workers must be an integer >= 1, got {workers}")
  if out is None:
    with tempfile.TemporaryDirectory(prefix="compress_arc_") as tmp:
      return solve(
        puzzles,
        steps=steps,
        block=block,
        report_at=report_at,
        cfg=cfg,
        seed=seed,
        out=tmp,
        checkpoint_every=checkpoint_every,
        progress=progress,
        hooks=hooks,
        workers=workers,
      )
  out, cfg = pathlib.Path(out), cfg or SolverConfig()
  report_at = sorted({s for s in report_at if 0 < s < steps})
  start = time.time()
  per_puzzle: dict[str, dict[str, Any]] = {}
  unfinished: list[str] = []
  groups = list(task.by_signature(puzzles).items())
  results: dict[Signature, dict[str, Any]] = {}
  for sig, _ in groups:
    done = out / group_name(sig) / "result.json"
    if resume and done.exists():
      results[sig] = json.loads(done.read_text())

  def compile_and_train(sig: Signature, group: list[task.Puzzle]) -> dict[str, Any] | None:
    if loop.STOP.is_set():  # a signal stopped the run: groups not yet started stay unfinished
      return None
    result = solve_group(
      sig,
      group,
      out / group_name(sig),
      steps=steps,
      block=block,
      report_at=report_at,
      cfg=cfg,
      seed=seed,
      resume=resume,
      checkpoint_every=checkpoint_every,
      progress=progress,
      hooks=hooks,
      compiled=compile_group(sig, group, block, cfg),
    )
    if result is not None:
      write_atomic(out / group_name(sig) / "result.json", json.dumps(result))
    return result

  with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compress_arc") as pool:
    running = {sig: pool.submit(compile_and_train, sig, group) for sig, group in groups if sig not in results}
    for sig, future in running.items():
      result = future.result()
      if result is not None:
        results[sig] = result
  for sig, group in groups:
    if sig not in results:
      unfinished += [p.task_id for p in group]
      continue
    for i, p in enumerate(group):
      reports = {at: rows[i] for at, rows in results[sig]["reports"].items()}
      per_puzzle[p.task_id] = {
        "group": group_name(sig),
        "lanes": len(group),
        "seconds": results[sig]["seconds"],
        **reports,
      }
  summary: dict[str, Any] = {"puzzles": per_puzzle, "unfinished": unfinished, "seconds": time.time() - start}
  scored = [p for p in puzzles if p.task_id in per_puzzle and p.solution is not None]
  if scored:
    for k in ("pass@1", "pass@2"):
      summary[k] = {
        str(at): float(np.mean([per_puzzle[p.task_id][str(at)][k] for p in scored])) for at in (*report_at, steps)
      }
  return summary
