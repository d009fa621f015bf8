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
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tqdm

from contlearn.errors import CheckpointError, DataError
from contlearn.processes import is_writer
from contlearn.tensorboard import ScalarWriter, truncate_events

LN2 = math.log(2.0)


def read_jsonl(path: pathlib.Path) -> list[dict[str, Any]]:
  """The records of a JSON-lines file; a torn last line (a killed writer) is left out."""
  if not path.exists():
    return []
  lines = path.read_text().splitlines()
  out = []
  for i, line in enumerate(lines):
    try:
      out.append(json.loads(line))
    except ValueError:
      if i < len(lines) - 1:
        raise DataError(f"{path}, line {i + 1}: not a JSON record") from None
  return out


def write_atomic(path: pathlib.Path, text: str) -> None:
  """Replaces `path` by `text` all at once (a kill leaves the old file or the new one);
  only the writing process writes (`contlearn.processes.is_writer`)."""
  if not is_writer():
    return
  staged = path.with_name(path.name + ".tmp")
  staged.write_text(text)
  staged.replace(path)


def append_jsonl(path: pathlib.Path, record: dict[str, Any], *, fresh: bool = False) -> None:
  """Appends `record` as one JSON line to `path` (`fresh`: starts the file anew); writing process only."""
  if not is_writer():
    return
  with path.open("w" if fresh else "a") as f:
    f.write(json.dumps(record) + "\n")


def keep_jsonl(path: pathlib.Path, keep: Callable[[dict[str, Any]], bool]) -> None:
  """Drops the records of `path` for which `keep` is False (a resumed run writes them again) and a
  torn last line; writing process only."""
  if is_writer() and path.exists():
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in read_jsonl(path) if keep(r)))


def model_row(
  path: pathlib.Path, config: dict[str, Any], resume: bool, train: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
  """A finished model's result row: read back from `path` when resuming a run of the same `config`, else
  `train()`'s, written to `path` with its config (an experiment that runs several models in turn keeps
  the finished ones when it resumes).

  Raises:
    CheckpointError: `path` holds a row of another configuration.
  """
  if resume and path.exists():
    saved = json.loads(path.read_text())
    if saved["config"] != config:
      raise CheckpointError(f"cannot resume {path}: it holds a run of another configuration")
    return saved["row"]
  row = train()
  write_atomic(path, json.dumps({"config": config, "row": row}, indent=2))
  return row


class RunLog:
  """Appends metric records to `out/metrics.jsonl` and `out/tensorboard/` and
  shows the progress bar; in the writing process only (`is_writer`), the
  others keep nothing but the bar's state."""

  def __init__(self, out: pathlib.Path, total_tokens: int | None, progress: bool, name: str):
    self.writes = is_writer()
    self.path = out / "metrics.jsonl"
    self.events = out / "tensorboard"
    self._writer: ScalarWriter | None = None
    # The bar opens when the run starts (not before a refused resume).
    self._bar_options = dict(
      total=total_tokens or None,
      unit="tok",
      unit_scale=True,
      desc=name,
      disable=not (progress and self.writes),
      file=sys.stderr,
      dynamic_ncols=True,
    )
    self._bar = tqdm.tqdm(disable=True)

  def truncate_after(self, chunk: int, tokens: int) -> None:
    """Drops the records past `chunk` and the TensorBoard events past `tokens`
    (a resumed run redoes them), and a torn last line left by a killed run."""
    if not self.writes:
      return
    keep_jsonl(self.path, lambda r: r["chunk"] <= chunk)
    truncate_events(self.events, tokens)
    self._writer = ScalarWriter(self.events)

  def start_at(self, tokens: int) -> None:
    self._bar = tqdm.tqdm(initial=tokens, **self._bar_options)

  def write(self, record: dict[str, Any]) -> None:
    if not self.writes:
      return
    append_jsonl(self.path, record)
    if self._writer is None:
      self._writer = ScalarWriter(self.events)
    for key in ("loss", "bits_per_byte", "grad_norm", "tokens_per_s"):
      if key in record:
        self._writer.add_scalar(key, record[key], record["tokens"])
    self._writer.flush()
    self._bar.set_postfix(loss=f"{record['loss']:.3f}", bpb=f"{record['bits_per_byte']:.3f}")

  def advance(self, tokens: int) -> None:
    self._bar.update(tokens)

  def records(self) -> list[dict[str, Any]]:
    return read_jsonl(self.path)

  def close(self) -> None:
    self._bar.close()
    if self._writer is not None:
      self._writer.close()


def lane_sums(values: Any, lanes: int) -> Any:
  """`values` ([lanes, ...] with lanes) summed over every axis but the lane axis: float64 [lanes], or a float
  with `lanes` 0."""
  a = np.asarray(values)
  return a.reshape(lanes, -1).sum(axis=1).astype(np.float64) if lanes else float(a.sum())


class Tally:
  """Loss sums and throughput of a run, fed the metrics of each chunk.

  With `lanes` > 0 the metrics have a leading lane axis (seeds trained at
  once): the loss sums are kept per lane (`nll_total`, `count_total` float64
  [lanes]) and each record gives the lanes' mean loss and every lane's
  (`loss_lanes`). A lane whose metrics are NaN (retired by the loop's
  `on_nonfinite="retire"`) adds nothing from then on: its sums stay where
  they were, its `loss_lanes` entry is None once a record's window holds
  none of its earlier chunks, and the record's loss and gradient norm are
  the mean over the lanes it holds. `tokens_per_s` counts stream
  tokens (every lane reads them) and leaves out the first chunk, whose time
  is mostly compilation (reported as `first_chunk_s`).

  >>> from types import SimpleNamespace
  >>> tally = Tally(np.zeros(2), np.zeros(2), log_every=1, steps_per_chunk=1, lanes=2)
  >>> metrics = SimpleNamespace(nll=np.array([[2.0], [4.0]]), count=np.array([[2.0], [2.0]]), grad_norm=np.ones((2, 1)))
  >>> record = tally.add(1, 4, 4, metrics)
  >>> record["loss"], record["loss_lanes"]
  (1.5, [1.0, 2.0])
  """

  def __init__(self, nll_total: Any, count_total: Any, log_every: int, steps_per_chunk: int, lanes: int = 0):
    self.lanes = lanes
    self.nll_total, self.count_total = lane_sums(nll_total, self.lanes), lane_sums(count_total, self.lanes)
    self.log_every, self.steps_per_chunk = log_every, steps_per_chunk
    self.start = time.perf_counter()
    self.first_chunk_s: float | None = None
    self._steady_start = self.start
    self._steady_tokens = 0
    self._window = self._empty()

  def _empty(self) -> dict[str, Any]:
    zero = lane_sums(np.zeros(self.lanes), self.lanes)
    return {"nll": zero, "count": zero, "grad": 0.0, "steps": 0}

  def tokens_per_s(self) -> float:
    elapsed = time.perf_counter() - self._steady_start
    return self._steady_tokens / elapsed if self._steady_tokens and elapsed > 0 else 0.0

  def add(self, chunk: int, tokens: int, new_tokens: int, metrics: Any) -> dict[str, Any] | None:
    """Counts one chunk's `[steps]` (or `[lanes, steps]`) metrics; returns a log record when one is due."""
    now = time.perf_counter()
    if self.first_chunk_s is None:
      self.first_chunk_s, self._steady_start = now - self.start, now
    else:
      self._steady_tokens += new_tokens
    nll, count = lane_sums(metrics.nll, self.lanes), lane_sums(metrics.count, self.lanes)
    live = np.isfinite(nll)  # False only for a retired lane, whose metrics the loop blanked
    nll, count = np.where(live, nll, 0.0), np.where(live, count, 0.0)
    if not self.lanes:
      nll, count = float(nll), float(count)
    self.nll_total = self.nll_total + nll
    self.count_total = self.count_total + count
    w = self._window
    w["nll"] = w["nll"] + nll
    w["count"] = w["count"] + count
    steps = np.shape(metrics.nll)[-1]
    grad = lane_sums(metrics.grad_norm, self.lanes)
    w["grad"] += float(np.sum(np.where(live, grad, 0.0))) / max(int(np.sum(live)), 1)
    w["steps"] += steps
    if chunk % self.log_every or np.all(w["count"] == 0):
      return None
    self._window = self._empty()
    counted = np.asarray(w["count"]) > 0
    loss = np.where(counted, w["nll"], np.nan) / np.where(counted, w["count"], 1.0)
    mean = float(np.mean(loss[counted])) if self.lanes else float(loss)
    record = {
      "chunk": chunk,
      "step": chunk * self.steps_per_chunk,
      "tokens": tokens,
      "loss": mean,
      "bits_per_byte": mean / LN2,
      "grad_norm": w["grad"] / w["steps"],
      "tokens_per_s": self.tokens_per_s(),
      "time_s": now - self.start,
    }
    if self.lanes:
      record["loss_lanes"] = [float(v) if c else None for v, c in zip(loss, counted, strict=True)]
    return record
