"""Continual-learning metrics over an accuracy matrix or an accuracy trajectory.

Notation: `R[i, j]` is the accuracy on task j after training on task i
(T x T). A trajectory `A[n, j]` is the accuracy on task j at evaluation n;
`ends[i]` is the index of the first evaluation taken after training on
task i finished (so task i trained during evaluations `< ends[i]`).
"""

from __future__ import annotations

import numpy as np

from contlearn.errors import ConfigError


def _square(r: np.ndarray) -> np.ndarray:
  r = np.asarray(r, np.float64)
  if r.ndim != 2 or r.shape[0] != r.shape[1]:
    raise ConfigError(f"accuracy matrix must be [T, T], got shape {r.shape}")
  return r


def average_accuracy(r: np.ndarray) -> float:
  """ACC: mean accuracy over all tasks after the last task."""
  return float(np.mean(_square(r)[-1]))


def forgetting(r: np.ndarray) -> float:
  """Mean over tasks j < T-1 of max_{j <= l < T-1} R[l, j] - R[T-1, j] (Chaudhry et al.)."""
  r = _square(r)
  t = r.shape[0]
  if t < 2:
    return 0.0
  return float(np.mean([np.max(r[j : t - 1, j]) - r[-1, j] for j in range(t - 1)]))


def backward_transfer(r: np.ndarray) -> float:
  """BWT: mean over j < T-1 of R[T-1, j] - R[j, j] (Lopez-Paz & Ranzato)."""
  r = _square(r)
  t = r.shape[0]
  return float(np.mean([r[-1, j] - r[j, j] for j in range(t - 1)])) if t > 1 else 0.0


def forward_transfer(r: np.ndarray, baseline: np.ndarray) -> float:
  """FWT: mean over j >= 1 of R[j-1, j] - baseline[j] (accuracy at random init)."""
  r = _square(r)
  b = np.asarray(baseline, np.float64)
  if b.shape != (r.shape[0],):
    raise ConfigError(f"forward_transfer: baseline must be [{r.shape[0]}], got {b.shape}")
  t = r.shape[0]
  return float(np.mean([r[j - 1, j] - b[j] for j in range(1, t)])) if t > 1 else 0.0


def _trajectory(a: np.ndarray, ends) -> tuple[np.ndarray, np.ndarray]:
  a = np.asarray(a, np.float64)
  ends = np.asarray(ends, int)
  if a.ndim != 2 or ends.ndim != 1 or ends.shape[0] > a.shape[1]:
    raise ConfigError(f"trajectory must be [N, T] with ends [<=T], got {a.shape} and {ends.shape}")
  if np.any(np.diff(ends) < 0) or np.any(ends < 1) or np.any(ends > a.shape[0]):
    raise ConfigError(f"ends must be increasing in [1, {a.shape[0]}], got {ends.tolist()}")
  return a, ends


def min_accuracy(a: np.ndarray, ends) -> float:
  """avg-min-ACC (De Lange et al.) at the end of the trajectory.

  For each task i trained before the last one, the minimum accuracy over the
  evaluations after its training ended; averaged over those tasks.
  """
  a, ends = _trajectory(a, ends)
  k = len(ends)
  if k < 2:
    return float("nan")
  return float(np.mean([np.min(a[ends[i] :, i]) for i in range(k - 1)]))


def final_old_accuracy(a: np.ndarray, ends) -> float:
  """Mean accuracy at the last evaluation on the tasks trained before the last one."""
  a, ends = _trajectory(a, ends)
  k = len(ends)
  return float(np.mean(a[-1, : k - 1])) if k >= 2 else float("nan")


def stability_gap(a: np.ndarray, ends) -> float:
  """The transient dip of the old tasks that training on later ones recovers: final old-task
  accuracy minus avg-min-ACC (>= 0). Permanent forgetting is not in it: a task whose accuracy
  falls and stays down has no gap.

  >>> a = np.array([[0.9, 0.1], [0.5, 0.8], [0.8, 0.9]])  # task 0 dips to 0.5, recovers to 0.8
  >>> round(stability_gap(a, [1, 3]), 3)
  0.3
  """
  return final_old_accuracy(a, ends) - min_accuracy(a, ends)


def dip_timing(a: np.ndarray, ends, tol: float = 0.03) -> np.ndarray:
  """When each old task's dip falls and how soon it recovers: int [k - 1, 2].

  For task i < k - 1 (k = len(ends) tasks seen): column 0, the evaluations from
  the task boundary before its minimum (the one after its own training, or a
  later one) to the minimum, the one `min_accuracy` takes; column 1, the
  evaluations from the minimum until it is back within `tol` of its final
  accuracy (0 if the minimum already is).

  >>> a = np.array([[0.9, 0.1], [0.5, 0.8], [0.7, 0.8], [0.8, 0.9]])  # task 0 dips right after the boundary
  >>> dip_timing(a, [1, 4]).tolist()
  [[1, 2]]
  """
  a, ends = _trajectory(a, ends)
  rows = []
  for i in range(len(ends) - 1):
    low = ends[i] + int(np.argmin(a[ends[i] :, i]))  # index of the minimum
    boundary = ends[ends <= low].max()  # evaluations up to the last boundary before it
    back = int(np.argmax(a[low:, i] >= a[-1, i] - tol))
    rows.append([low + 1 - boundary, back])
  return np.asarray(rows, int).reshape(-1, 2)


def worst_case_accuracy(a: np.ndarray, ends) -> float:
  """WC-ACC = (1/k) A[last, k-1] + (1 - 1/k) avg-min-ACC, k = len(ends) tasks seen."""
  a, ends = _trajectory(a, ends)
  k = len(ends)
  if k < 2:
    return float(a[-1, 0])
  return float(a[-1, k - 1] / k + (1 - 1 / k) * min_accuracy(a, ends))


def windowed_forgetting(a: np.ndarray, ends, window: int) -> float:
  """WF^window: per task i, the largest drop A[m, i] - A[n, i] with m < n < m + window
  among evaluations from `ends[i] - 1` on (the last one of its training);
  averaged over tasks with at least two such evaluations."""
  a, ends = _trajectory(a, ends)
  if window < 2:
    raise ConfigError(f"windowed_forgetting: window must be >= 2, got {window}")
  drops = []
  for i, e in enumerate(ends):
    x = a[e - 1 :, i]
    if len(x) < 2:
      continue
    best = 0.0
    for lag in range(1, min(window, len(x))):
      best = max(best, float(np.max(x[:-lag] - x[lag:])))
    drops.append(best)
  return float(np.mean(drops)) if drops else 0.0


def learning_curve_area(curves: np.ndarray, beta: int) -> float:
  """LCA_beta (Chaudhry et al., A-GEM): mean over b <= beta of the mean over
  tasks of accuracy on a task after b evaluations of training on it.

  Args:
    curves: [T, E], accuracy on task t at its evaluations 0..E-1 while it
      trains (evaluation 0 before any step on it).
    beta: last evaluation counted (needs beta < E).
  """
  c = np.asarray(curves, np.float64)
  if c.ndim != 2 or not 0 <= beta < c.shape[1]:
    raise ConfigError(f"learning_curve_area: curves [T, E] with beta < E, got {c.shape}, {beta}")
  return float(np.mean(c[:, : beta + 1]))


def dormant_fraction(hiddens, tau: float = 0.0) -> float:
  """Fraction of dormant hidden units (Sokar et al.).

  A unit's score is its mean |activation| over the rows divided by the
  layer's mean of that quantity; a unit is dormant when its score <= tau.

  Args:
    hiddens: list of activations [N, W_l], one per hidden layer.
    tau: threshold (0: units that never fire).
  """
  dormant, total = 0, 0
  for h in hiddens:
    m = np.mean(np.abs(np.asarray(h, np.float64)), axis=0)
    s = m / max(float(np.mean(m)), 1e-12)
    dormant += int(np.sum(s <= tau))
    total += m.shape[0]
  return dormant / max(total, 1)


def effective_rank(features: np.ndarray) -> float:
  """exp(entropy of the normalised singular values) of features [N, W] (Roy & Vetterli)."""
  s = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
  if s.sum() <= 0:
    return 0.0
  p = s / s.sum()
  p = p[p > 0]
  return float(np.exp(-np.sum(p * np.log(p))))


def task_group_means(acc: np.ndarray, groups: int = 10) -> dict[str, np.ndarray]:
  """Each lane's mean of a per-task accuracy over consecutive groups of tasks (a curve in a few numbers).

  Args:
    acc: [L, T], e.g. each lane's accuracy on each task right after learning it.
    groups: how many groups, as equal as `np.array_split` makes them (one per task if T < groups).

  Returns:
    {"tasks a-b" (or "task a"): [L] means}, the groups in order, tasks counted from 1.

  >>> {k: np.round(v, 3).tolist() for k, v in task_group_means(np.array([[0.9, 0.8, 0.7, 0.6, 0.5]]), 2).items()}
  {'tasks 1-3': [0.8], 'tasks 4-5': [0.55]}
  >>> list(task_group_means(np.zeros((3, 2))))
  ['task 1', 'task 2']
  """
  acc = np.asarray(acc, np.float64)
  if acc.ndim != 2 or acc.shape[1] == 0 or groups < 1:
    raise ConfigError(f"task_group_means: acc [L, T] with T >= 1 and groups >= 1, got {acc.shape}, {groups}")
  split = np.array_split(np.arange(acc.shape[1]), min(groups, acc.shape[1]))
  label = lambda g: f"task {g[0] + 1}" if len(g) == 1 else f"tasks {g[0] + 1}-{g[-1] + 1}"
  return {label(g): acc[:, g].mean(1) for g in split}
