"""What a run reports: `metrics.jsonl`, TensorBoard events, a progress bar.

One record per logged chunk, e.g.
  {"chunk": 12, "step": 768, "tokens": 393216, "loss": 1.83,
   "bits_per_byte": 2.64, "grad_norm": 0.41, "tokens_per_s": 51234.0, "time_s": 8.1}
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
from typing import Any

import tqdm

from contlearn.tensorboard import ScalarWriter

LN2 = math.log(2.0)


class RunLog:
  """Appends metric records to `out/metrics.jsonl` and `out/tensorboard/`."""

  def __init__(self, out: pathlib.Path, total_tokens: int | None, progress: bool, name: str):
    self.path = out / "metrics.jsonl"
    self._writer = ScalarWriter(out / "tensorboard")
    self._bar = tqdm.tqdm(
        total=total_tokens or None,
        unit="tok",
        unit_scale=True,
        desc=name,
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )

  def truncate_after(self, chunk: int) -> None:
    """Drops records past `chunk` (a resumed run re-does those chunks)."""
    if not self.path.exists():
      return
    kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["chunk"] <= chunk]
    self.path.write_text("".join(line + "\n" for line in kept))

  def start_at(self, tokens: int) -> None:
    self._bar.update(tokens - self._bar.n)

  def write(self, record: dict[str, Any]) -> None:
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    for key in ("loss", "bits_per_byte", "grad_norm", "tokens_per_s"):
      if key in record:
        self._writer.add_scalar(key, record[key], record["tokens"])
    self._writer.flush()
    self._bar.set_postfix(loss=f"{record['loss']:.3f}", bpb=f"{record['bits_per_byte']:.3f}")

  def advance(self, tokens: int) -> None:
    self._bar.update(tokens)

  def records(self) -> list[dict[str, Any]]:
    if not self.path.exists():
      return []
    return [json.loads(line) for line in self.path.read_text().splitlines() if line]

  def close(self) -> None:
    self._bar.close()
    self._writer.close()
