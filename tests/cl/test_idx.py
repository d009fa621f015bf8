"""IDX folders (MNIST's file format): values read back, each bad input's one line, a run on one."""

import gzip
import json
import re
import struct

import numpy as np
import pytest

from contlearn import cli
from contlearn.cl import datasets, idx
from contlearn.errors import DataError

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
  """`array` (uint8) as an IDX file: magic (0x0800 + ndim unless given), dimensions, data."""
  magic = 0x0800 + array.ndim if magic is None else magic
  return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_folder(folder, arrays: dict, gz: bool = True):
  """Writes `arrays` (stem -> uint8 array) as IDX files in `folder`, gzipped or plain; returns folder."""
  folder.mkdir(parents=True, exist_ok=True)
  for stem, array in arrays.items():
    data = array if isinstance(array, bytes) else idx_bytes(array)
    if gz:
      (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
    else:
      (folder / stem).write_bytes(data)
  return folder


def tiny_arrays(n_train=50, n_test=20, classes=10, side=4, seed=0) -> dict:
  """Images [N, side, side] of random bytes; labels cycling through 0..classes-1."""
  rng = np.random.default_rng(seed)
  return {
    STEMS[0]: rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
    STEMS[1]: (np.arange(n_train) % classes).astype(np.uint8),
    STEMS[2]: rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
    STEMS[3]: (np.arange(n_test) % classes).astype(np.uint8),
  }


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_values_read_back_exactly(tmp_path, gz):
  arrays = tiny_arrays(n_train=6, n_test=3, classes=3, side=2)
  arrays[STEMS[0]][0] = [[0, 255], [51, 102]]
  folder = write_folder(tmp_path / "f", arrays, gz)
  ds = datasets.load(f"idx:{folder}")
  assert ds.name == f"idx:{folder}"
  assert ds.image_shape == (2, 2) and ds.n_classes == 3
  assert ds.x_train.shape == (6, 4) and ds.x_test.shape == (3, 4) and ds.x_train.dtype == np.float32
  np.testing.assert_array_equal(ds.x_train[0], np.float32([0.0, 1.0, 0.2, 0.4]))
  np.testing.assert_array_equal(ds.x_train, arrays[STEMS[0]].reshape(6, 4).astype(np.float32) / 255.0)
  np.testing.assert_array_equal(ds.x_test, arrays[STEMS[2]].reshape(3, 4).astype(np.float32) / 255.0)
  np.testing.assert_array_equal(ds.y_train, [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(ds.y_test, [0, 1, 2])
  assert ds.y_train.dtype == np.int32


def test_a_plain_file_is_read_when_both_are_there(tmp_path):
  arrays = tiny_arrays(n_train=4, n_test=2, classes=2)
  folder = write_folder(tmp_path / "f", arrays, gz=True)
  plain = arrays[STEMS[1]][::-1].copy()
  (folder / STEMS[1]).write_bytes(idx_bytes(plain))
  np.testing.assert_array_equal(datasets.from_idx(str(folder)).y_train, plain)


def test_emnist_names_a_prefix_and_test_files_read_as_the_plain_names(tmp_path):
  arrays = tiny_arrays(n_train=8, n_test=4, classes=4, side=2)
  plain = write_folder(tmp_path / "plain", arrays)
  emnist = {f"emnist-digits-{stem.replace('t10k-', 'test-')}": a for stem, a in arrays.items()}
  folder = write_folder(tmp_path / "emnist", emnist)
  write_folder(folder, {f"emnist-letters-{stem}": a[::-1].copy() for stem, a in arrays.items()})  # a second set beside
  ours, theirs = datasets.load(f"idx:{plain}"), datasets.load(f"idx:{folder}/emnist-digits-")
  for field in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(theirs, field), getattr(ours, field))
  assert theirs.name == f"idx:{folder}/emnist-digits-"
  write_folder(folder, {f"emnist-balanced-{STEMS[0]}": arrays[STEMS[0]]})  # a set without its labels
  with pytest.raises(DataError, match=r"emnist-balanced-train-labels-idx1-ubyte\[\.gz\]: missing"):
    datasets.load(f"idx:{folder}/emnist-balanced-")
  locations = (f"{tmp_path}/nowhere/emnist-digits-", f"{folder}/kmnist-", f"{tmp_path}/plainer", f"{tmp_path}/plai")
  for location in locations:  # the last a folder's name cut short, not a prefix of files
    with pytest.raises(DataError, match=rf"^{re.escape(location)}: no such folder, nor IDX files named"):
      datasets.load(f"idx:{location}")


def test_names_with_a_dot_before_idx_read_as_the_plain_names(tmp_path):
  arrays = tiny_arrays(n_train=8, n_test=4, classes=4, side=2)
  plain = write_folder(tmp_path / "plain", arrays)
  dotted = write_folder(tmp_path / "dotted", {stem.replace("-idx", ".idx"): a for stem, a in arrays.items()}, gz=False)
  ours, theirs = datasets.load(f"idx:{plain}"), datasets.load(f"idx:{dotted}")
  for field in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(theirs, field), getattr(ours, field))
  (dotted / "t10k-labels.idx1-ubyte").rename(dotted / "t10k-labels-idx1-ubyte")  # labels named unlike their images
  with pytest.raises(DataError, match=r"t10k-labels\.idx1-ubyte\[\.gz\]: missing"):
    datasets.from_idx(str(dotted))


def test_the_labels_file_is_named_as_the_images_file_found(tmp_path):
  arrays = tiny_arrays(n_train=8, n_test=4, classes=4, side=2)
  arrays = {stem.replace("t10k-labels", "test-labels"): a for stem, a in arrays.items()}  # t10k images, test labels
  folder = write_folder(tmp_path / "f", arrays)
  with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\[\.gz\]: missing"):
    datasets.from_idx(str(folder))


def test_labels_are_numbered_from_zero_in_their_order(tmp_path):
  arrays = tiny_arrays(n_train=6, n_test=3, classes=3)
  arrays[STEMS[1]] = np.array([1, 2, 26, 1, 2, 26], np.uint8)  # EMNIST letters count from 1
  arrays[STEMS[3]] = np.array([26, 1, 2], np.uint8)
  ds = datasets.from_idx(str(write_folder(tmp_path / "f", arrays)))
  assert ds.n_classes == 3
  np.testing.assert_array_equal(ds.y_train, [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(ds.y_test, [2, 0, 1])


def bad(stem, value):
  return lambda arrays: {**arrays, stem: value}


def truncated(stem, cut):
  return lambda arrays: {**arrays, stem: idx_bytes(arrays[stem])[:cut]}


BAD = [
  ("missing", lambda arrays: {k: v for k, v in arrays.items() if k != STEMS[2]}, STEMS[2], "missing"),
  (
    "images magic",
    lambda arrays: {**arrays, STEMS[0]: idx_bytes(arrays[STEMS[0]], 0x00000801)},
    STEMS[0],
    "magic number 0x00000801, expected 0x00000803",
  ),
  (
    "labels magic",
    lambda arrays: {**arrays, STEMS[3]: idx_bytes(arrays[STEMS[3]], 0x00000803)},
    STEMS[3],
    "magic number 0x00000803, expected 0x00000801",
  ),
  ("short of the magic", truncated(STEMS[1], 2), STEMS[1], "truncated, 2 bytes"),
  ("short of the header", truncated(STEMS[0], 10), STEMS[0], "truncated, 10 bytes, shorter than its 16-byte header"),
  ("short of the data", truncated(STEMS[0], -5), STEMS[0], r"795 bytes of data, its header \(50, 4, 4\) needs 800"),
  ("counts differ", bad(STEMS[3], np.zeros(19, np.uint8)), STEMS[3], "19 labels for 20 images"),
  ("label out of range", bad(STEMS[3], np.full(20, 10, np.uint8)), STEMS[3], r"labels 10 not among the 10 .* \(0, 1,"),
]


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("corrupt, stem, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_naming_the_file(tmp_path, gz, corrupt, stem, message):
  folder = write_folder(tmp_path / "f", corrupt(tiny_arrays()), gz)
  with pytest.raises(DataError) as e:
    datasets.load(f"idx:{folder}")
  line = str(e.value)
  assert "\n" not in line
  assert re.search(rf"{re.escape(str(folder / stem))}(\.gz|\[\.gz\])?: .*{message}", line), line


def test_a_cut_gzip_stream_is_one_line_naming_the_file(tmp_path):
  folder = write_folder(tmp_path / "f", tiny_arrays())
  path = folder / f"{STEMS[0]}.gz"
  path.write_bytes(path.read_bytes()[:-30])
  with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: cannot be read"):
    idx.read_folder(str(folder))


@pytest.mark.slow
def test_three_scenarios_runs_on_an_idx_folder(tmp_path, capsys):
  folder = write_folder(tmp_path / "data", tiny_arrays())
  out = tmp_path / "run"
  split = dict(dataset=f"idx:{folder}", steps_per_task=4, eval_every=2, hidden=8, batch=4, max_test=4)
  argv = ["run", "cl_three_scenarios", "--out", str(out), "--no-progress", "--only", "none", "--set", "kinds=task"]
  for key, value in split.items():
    argv += ["--set", f"split.{key}={value}"]
  assert cli.main(argv) == 0
  summary = json.loads((out / "none_task" / "summary.json").read_text())
  assert summary["config"]["dataset"] == f"idx:{folder}"
  assert 0.0 <= summary["summary"]["acc"] <= 1.0
  assert np.asarray(summary["matrix"]).shape == (3, 5, 5)  # the default 3 seeds, 5 tasks of 2 of the 10 labels
  assert "Task-IL" in capsys.readouterr().out
