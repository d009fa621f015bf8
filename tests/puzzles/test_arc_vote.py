"""Voting over ARC augmentations: predictions mapped back agree, ranking and its tie rule, pass@k, exactness."""

import numpy as np
import pytest

from contlearn.puzzles import PuzzleConfig, arc, arc_canvas, arc_sets, arc_vote, splits

SIDE = 6
TRUTH = np.array([[1, 2, 3], [0, 4, 0]], np.int32)
WRONG_A = np.array([[5, 5], [5, 6]], np.int32)
WRONG_B = np.array([[7]], np.int32)


def _task(name, tests):
  demo = np.array([[1, 0], [2, 3]], np.int32)
  return arc.ArcTask(name, ((demo, demo.T),), tests)


@pytest.fixture(scope="module")
def test_set():
  config = PuzzleConfig(kind="arc", size=SIDE, augmentations=4, seed=0)
  _, test = arc_sets.build(config, [], [_task("t", ((TRUTH.T, TRUTH),))])
  assert len(test) == 4 and test.meta["dihedral"][0] == 0
  return test


def _predict(test, row, grid):
  """The canvas a model would give for `grid` (an answer on the original task) at test row `row`."""
  t = arc.Augmentation(int(test.meta["dihedral"][row]), test.meta["colours"][row])
  return arc_canvas.encode(arc.apply(t, grid), SIDE)


def _predictions(test, grids):
  return np.stack(
    [_predict(test, r, g) if g is not None else np.zeros(SIDE * SIDE, np.int32) for r, g in enumerate(grids)]
  )


def test_augmented_predictions_that_agree_after_inversion_win(test_set):
  [v] = arc_vote.vote(test_set, _predictions(test_set, [WRONG_A, TRUTH, TRUTH, WRONG_B]))
  assert (v.task, v.example, v.invalid) == (0, 0, 0)
  assert v.votes.tolist() == [2, 1, 1] and np.isnan(v.confidence).all()
  assert (v.candidates[0] == TRUTH).all() and (v.answer == TRUTH).all() and v.rank == 0
  assert (v.candidates[1] == WRONG_A).all() and (v.candidates[2] == WRONG_B).all()  # tie: the earlier row first
  assert v.passed(1) and v.passed(2)
  assert arc_vote.pass_at([v], 1) == 1.0


def test_ties_go_to_the_higher_mean_confidence_then_to_the_earlier_row(test_set):
  grids = [WRONG_A, TRUTH, None, None]  # two malformed predictions vote for nothing
  [plain] = arc_vote.vote(test_set, _predictions(test_set, grids))
  assert plain.invalid == 2 and plain.votes.tolist() == [1, 1]
  assert (plain.candidates[0] == WRONG_A).all() and plain.rank == 1  # the identity's row comes first
  assert not plain.passed(1) and plain.passed(2)
  [confident] = arc_vote.vote(test_set, _predictions(test_set, grids), np.array([0.2, 0.9, 1.0, 1.0]))
  assert confident.rank == 0 and np.allclose(confident.confidence, [0.9, 0.2])


def test_votes_outrank_confidence(test_set):
  grids = [WRONG_A, TRUTH, WRONG_B, WRONG_A]
  [v] = arc_vote.vote(test_set, _predictions(test_set, grids), np.array([0.1, 0.99, 0.5, 0.3]))
  assert (v.candidates[0] == WRONG_A).all() and v.votes.tolist() == [2, 1, 1] and np.allclose(v.confidence[0], 0.2)
  assert (v.candidates[1] == TRUTH).all() and v.rank == 1  # 0.99 before WRONG_B's 0.5


def test_no_valid_prediction_passes_nothing(test_set):
  [v] = arc_vote.vote(test_set, np.zeros_like(test_set.labels))
  assert v.candidates == () and v.invalid == 4 and v.rank == -1 and not v.passed(2)


def test_pass_at_averages_over_each_task_s_tests_then_over_tasks():
  vote = lambda task, example, rank: arc_vote.Vote(task, example, (), np.zeros(0), np.zeros(0), 0, TRUTH, rank)  # noqa: E731
  votes = [vote(0, 0, 0), vote(0, 1, -1), vote(1, 0, 1)]
  assert arc_vote.pass_at(votes, 1) == 0.25 and arc_vote.pass_at(votes, 2) == 0.75


def test_predictions_equal_to_the_augmented_outputs_score_one():
  tests = ((TRUTH.T, TRUTH), (TRUTH, WRONG_A))
  config = PuzzleConfig(kind="arc", size=SIDE, augmentations=16, seed=3)
  _, test = arc_sets.build(config, [], [_task("t", tests), _task("u", tests[:1])])
  assert len(set(test.meta["dihedral"].tolist())) == 8
  votes = arc_vote.vote(test, test.labels)
  assert [(v.task, v.example) for v in votes] == [(0, 0), (0, 1), (1, 0)]
  assert all(v.votes.tolist() == [16] and v.rank == 0 for v in votes)
  assert (votes[1].candidates[0] == WRONG_A).all() and arc_vote.pass_at(votes, 1) == 1.0


def test_predictions_must_match_the_set(test_set):
  with pytest.raises(ValueError, match="one per test puzzle"):
    arc_vote.vote(test_set, test_set.labels[:3])
  with pytest.raises(ValueError, match="one per test puzzle"):
    arc_vote.vote(test_set, test_set.labels, np.ones(3))


@pytest.mark.slow
@pytest.mark.parametrize("version", ["arc-agi-1", "arc-agi-2"])
def test_every_evaluation_task_restores_exactly(version):
  """All evaluation tasks on the 30x30 canvas: the test labels vote unanimously for the true outputs."""
  config = PuzzleConfig(kind="arc", size=30, augmentations=4, version=version)
  train, test = splits(config)
  evaluation = arc.load(version, "eval")
  votes = arc_vote.vote(test, test.labels)
  assert len(votes) == sum(len(t.test) for t in evaluation) and arc_vote.pass_at(votes, 1) == 1.0
  first = len(arc.load(version, "train"))
  for v in votes:
    assert (v.answer == evaluation[v.task - first].test[v.example][1]).all() and len(v.candidates) == 1
  tasks = first + len(evaluation)
  assert (
    set(train.ids.tolist()) == set(range(int(train.ids.max()) + 1)) and 3 * tasks < len(set(train.ids)) <= 4 * tasks
  )
