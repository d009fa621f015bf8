"""A loop hook that writes one JSON line per block and shows progress about five times a run.

`BlockLog` is the skeleton; a subclass says what a block's record holds
(`record`, which may also update the hook's own state) and what its
progress line says (`describe`). A fresh run's first block starts the
file anew; a resumed run keeps only the records up to the checkpoint's
block (the blocks after it are learned, and written, again).

>>> import json, pathlib, tempfile
>>> class Losses(BlockLog):
...   def record(self, block, metrics):
...     return {"loss": metrics}
...   def describe(self, units, record):
...     return f"step {units}: loss {record['loss']}"
>>> folder = tempfile.TemporaryDirectory()
>>> path = pathlib.Path(folder.name) / "metrics.jsonl"
>>> log = Losses(path, "tiny", total=4, progress=True)
>>> for block in (1, 2):
...   log.on_metrics(None, block, 2 * block, 2, 0.5 / block)
  tiny step 2: loss 0.5
  tiny step 4: loss 0.25
>>> log.restore({"block": 1})
>>> [json.loads(line) for line in path.read_text().splitlines()]
[{'block': 1, 'step': 2, 'loss': 0.5}]
>>> folder.cleanup()
"""

from __future__ import annotations

import pathlib
from typing import Any

from contlearn import loop
from contlearn.run_log import append_jsonl, keep_jsonl


class BlockLog(loop.Hook):
  """One JSON line per block to `path` (`{"block", unit: units learned, **record(metrics)}`), and with
  `progress` a line `  {label} {describe(units, record)}` each time the units pass a fifth of `total`.
  `unit` names what the loop counts ("step" or "tokens")."""

  unit = "step"

  def __init__(self, path: pathlib.Path, label: str, total: int, progress: bool):
    self.path, self.label, self.total, self.progress = path, label, total, progress

  def record(self, block: int, metrics: Any) -> dict[str, Any]:
    """What the line of block `block` (1-based) holds from its `metrics` (on the host), as JSON values."""
    raise NotImplementedError

  def describe(self, units: int, record: dict[str, Any]) -> str:
    """The progress line's text after the label."""
    raise NotImplementedError

  def on_metrics(self, run, block: int, units: int, new_units: int, metrics: Any) -> None:
    record = self.record(block, metrics)
    append_jsonl(self.path, {"block": block, self.unit: units, **record}, fresh=units == new_units)
    every = max(1, self.total // 5)
    if self.progress and (units - new_units) // every != units // every:
      print(f"  {self.label} {self.describe(units, record)}", flush=True)

  def restore(self, meta: dict[str, Any]) -> None:
    keep_jsonl(self.path, lambda r: r["block"] <= meta["block"])
