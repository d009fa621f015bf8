"""Which task each training sample comes from, step by step.

A schedule is an int32 array [S, B]: at step s, row b of the batch is drawn
from task `schedule[s, b]`. Task boundaries, blurred boundaries, cumulative
and joint training, and recurring tasks are all schedules over one scenario,
so the same compiled step serves every stream.
"""

from __future__ import annotations

import numpy as np

from contlearn.errors import ConfigError


def _check(name: str, **sizes: int) -> None:
  for k, v in sizes.items():
    if int(v) < 1:
      raise ConfigError(f"{name}: {k} must be >= 1, got {v}")


def task(t: int, steps: int, batch: int) -> np.ndarray:
  """Every sample from task t: [steps, batch]."""
  _check("schedules.task", steps=steps, batch=batch)
  return np.full((steps, batch), t, np.int32)


def cumulative(t: int, steps: int, batch: int, seed: int = 0) -> np.ndarray:
  """Each sample from a task drawn uniformly from 0..t (Cumulative training)."""
  _check("schedules.cumulative", steps=steps, batch=batch)
  return np.random.default_rng(seed).integers(0, t + 1, (steps, batch)).astype(np.int32)


def joint(n_tasks: int, steps: int, batch: int, seed: int = 0) -> np.ndarray:
  """Each sample from any task (Joint training, the upper bound)."""
  return cumulative(n_tasks - 1, steps, batch, seed)


def blurred(n_tasks: int, steps_per_task: int, batch: int, blur: int, seed: int = 0) -> np.ndarray:
  """A task-free stream whose boundaries are blurred over `blur` steps.

  Around each boundary between task t and t+1, the chance that a sample comes
  from t+1 rises linearly from 0 to 1 across `blur` steps centred on it.

  Returns:
    int32 [n_tasks * steps_per_task, batch].
  """
  _check("schedules.blurred", n_tasks=n_tasks, steps_per_task=steps_per_task, batch=batch)
  if not 0 <= blur <= steps_per_task:
    raise ConfigError(f"schedules.blurred: blur must be in [0, {steps_per_task}], got {blur}")
  s = np.arange(n_tasks * steps_per_task) + 0.5
  base = np.floor(s / steps_per_task)
  # Position relative to the nearest upcoming boundary, in steps.
  to_next = (base + 1) * steps_per_task - s
  p_next = np.clip(0.5 - to_next / max(blur, 1e-9), 0.0, 1.0) if blur else np.zeros_like(s)
  since = s - base * steps_per_task
  p_prev = np.clip(0.5 - since / max(blur, 1e-9), 0.0, 1.0) if blur else np.zeros_like(s)
  u = np.random.default_rng(seed).random((len(s), batch))
  t = base[:, None] + (u < p_next[:, None]) - (u > 1.0 - p_prev[:, None])
  return np.clip(t, 0, n_tasks - 1).astype(np.int32)


def recurring(n_tasks: int, n_segments: int, alpha: float = 1.5, seed: int = 0) -> np.ndarray:
  """A task order in which tasks recur with power-law spaced gaps.

  Each task is next due after a gap drawn from a Pareto law with exponent
  `alpha` (in segments, at least 1); each segment trains the task most overdue.

  Returns:
    int32 [n_segments], the task of each segment. Expand with `segments`.
  """
  _check("schedules.recurring", n_tasks=n_tasks, n_segments=n_segments)
  if alpha <= 0:
    raise ConfigError(f"schedules.recurring: alpha must be > 0, got {alpha}")
  rng = np.random.default_rng(seed)
  due = np.arange(n_tasks, dtype=np.float64)
  order = np.empty(n_segments, np.int32)
  for i in range(n_segments):
    t = int(np.argmin(due))
    order[i] = t
    due[t] = i + 1 + np.floor(rng.pareto(alpha))
  return order


def segments(order: np.ndarray, steps_per_segment: int, batch: int) -> np.ndarray:
  """Expands a task per segment [K] into a schedule [K * steps_per_segment, batch]."""
  _check("schedules.segments", steps_per_segment=steps_per_segment, batch=batch)
  return np.repeat(np.asarray(order, np.int32), steps_per_segment)[:, None].repeat(batch, 1)
