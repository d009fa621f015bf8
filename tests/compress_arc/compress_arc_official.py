"""The official CompressARC code (PyTorch, on the CPU) for slow cross-checks; tests using it skip without it.

Found at `$CONTLEARN_PEERS/CompressARC`, else `<repo>/../shared/peers/CompressARC`.
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


def root() -> Path:
  peers = os.environ.get("CONTLEARN_PEERS")
  return (Path(peers) if peers else Path(__file__).resolve().parents[2].parent / "shared" / "peers") / "CompressARC"


def modules():
  """(torch, preprocessing, train, solution_selection) of the official code, or the calling test skips."""
  torch = pytest.importorskip("torch")
  pytest.importorskip("matplotlib")
  if not (root() / "train.py").exists():
    pytest.skip(f"no official CompressARC code at {root()}")
  sys.modules.setdefault("visualization", types.ModuleType("visualization"))  # plots only; not shipped in the copy
  sys.path.insert(0, str(root()))
  try:
    import preprocessing
    import solution_selection
    import train
  finally:
    sys.path.remove(str(root()))
  torch.set_default_device("cpu")  # importing it made CUDA the default
  torch.set_default_dtype(torch.float32)
  return torch, preprocessing, train, solution_selection


def challenges(split: str = "training") -> dict:
  """The official challenge file of `split` (task id -> challenge)."""
  with open(root() / "dataset" / f"arc-agi_{split}_challenges.json") as f:
    return json.load(f)
