"""Learning curves from `metrics.jsonl`: bits per byte against stream tokens."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

from contlearn.processes import is_writer


def save_figure(fig, path: str | pathlib.Path, **options) -> None:
  """`fig.savefig(path, **options)` in the writing process only (`is_writer`), then closes `fig`."""
  import matplotlib.pyplot as plt

  if is_writer():
    fig.savefig(path, **options)
  plt.close(fig)


def plot_learning_curves(run_dirs: Sequence[pathlib.Path], path: pathlib.Path, title: str = "") -> pathlib.Path:
  """One line per run (its folder name), prequential bits/byte vs tokens; writes a PNG
  (in the writing process only, `contlearn.processes.is_writer`)."""
  if not is_writer():
    return path
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
  for run in run_dirs:
    metrics = pathlib.Path(run) / "metrics.jsonl"
    if not metrics.exists():
      continue
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    ax.plot([r["tokens"] for r in records], [r["bits_per_byte"] for r in records], label=pathlib.Path(run).name)
  ax.set_xlabel("stream tokens (bytes)")
  ax.set_ylabel("bits per byte (prequential)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  save_figure(fig, path)
  return path
