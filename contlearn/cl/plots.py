"""Plots: the accuracy-matrix heatmap and per-task accuracy curves (PNG, Agg)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402

from contlearn.plots import save_figure  # noqa: E402


def accuracy_heatmap(r: np.ndarray, path: str, title: str = "") -> str:
  """Writes R[i, j] (accuracy on task j after task i) as an annotated heatmap."""
  r = np.asarray(r)
  fig, ax = plt.subplots(figsize=(1 + 0.6 * r.shape[1], 1 + 0.5 * r.shape[0]))
  im = ax.imshow(r, vmin=0.0, vmax=1.0, cmap="viridis")
  for i in range(r.shape[0]):
    for j in range(r.shape[1]):
      ax.text(j, i, f"{100 * r[i, j]:.0f}", ha="center", va="center", color="w" if r[i, j] < 0.6 else "k", fontsize=7)
  ax.set_xlabel("evaluated on task")
  ax.set_ylabel("after training task")
  ax.set_title(title)
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  save_figure(fig, path, dpi=120)
  return path


def accuracy_curves(acc: np.ndarray, steps: np.ndarray, boundaries, path: str, title: str = "") -> str:
  """Writes each task's accuracy against training steps, with task boundaries.

  Args:
    acc: [N, T] accuracy at each evaluation.
    steps: [N] training step of each evaluation.
    boundaries: steps at which a new task starts (vertical lines).
    path: output PNG.
    title: figure title.
  """
  acc = np.asarray(acc)
  fig, ax = plt.subplots(figsize=(8, 3.5))
  for t in range(acc.shape[1]):
    ax.plot(steps, acc[:, t], lw=1, label=f"task {t}")
  for b in boundaries:
    ax.axvline(b, color="gray", lw=0.5, ls="--")
  ax.set_xlabel("training step")
  ax.set_ylabel("test accuracy")
  ax.set_ylim(0, 1)
  ax.set_title(title)
  ax.legend(fontsize=7, ncol=min(acc.shape[1], 5))
  fig.tight_layout()
  save_figure(fig, path, dpi=120)
  return path
