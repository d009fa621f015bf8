"""The official CompressARC code (PyTorch, on the CPU) for slow cross-checks: the `official` fixture.

Found at `$CONTLEARN_PEERS/CompressARC`, else `<repo>/../shared/peers/CompressARC`;
tests using it skip without it or without torch.
"""

import json
import os
import sys
import types
from pathlib import Path

import pytest

# small puzzles of the training split covering the size cases
IDS = {
  "c8f0f002": "every train output has its input's size",
  "ff28f65a": "all train outputs share one size, inputs vary",
  "9af7a82c": "no size implied",
  "d631b094": "all inputs share one size, outputs vary",
}


@pytest.fixture(scope="session")
def official():
  """A namespace: torch, the official modules preprocessing, train and solution_selection, `ids` (IDS) and
  `dataset(split, kind)` (the official "challenges" or "solutions" file of a split: task id -> its entry)."""
  torch = pytest.importorskip("torch")
  pytest.importorskip("matplotlib")
  peers = os.environ.get("CONTLEARN_PEERS")
  root = (Path(peers) if peers else Path(__file__).resolve().parents[2].parent / "shared" / "peers") / "CompressARC"
  if not (root / "train.py").exists():
    pytest.skip(f"no official CompressARC code at {root}")
  sys.modules.setdefault("visualization", types.ModuleType("visualization"))  # plots only; not in the copy
  sys.path.insert(0, str(root))
  try:
    import preprocessing
    import solution_selection
    import train
  finally:
    sys.path.remove(str(root))
  torch.set_default_device("cpu")  # importing it made CUDA the default
  torch.set_default_dtype(torch.float32)

  def dataset(split, kind="challenges"):
    with open(root / "dataset" / f"arc-agi_{split}_{kind}.json") as f:
      return json.load(f)

  return types.SimpleNamespace(
    torch=torch,
    preprocessing=preprocessing,
    train=train,
    solution_selection=solution_selection,
    ids=tuple(IDS),
    dataset=dataset,
  )
