import numpy as np
import pytest

from contlearn.cl import metrics
from contlearn.errors import ConfigError

# R[i, j]: accuracy on task j after training task i.
R = np.array([[0.9, 0.1, 0.2], [0.6, 0.8, 0.1], [0.5, 0.7, 0.9]])


def test_matrix_metrics_by_hand():
  assert metrics.average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.9) / 3)
  # Task 0: max(0.9, 0.6) - 0.5 = 0.4; task 1: 0.8 - 0.7 = 0.1.
  assert metrics.forgetting(R) == pytest.approx(0.25)
  assert metrics.backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
  # R[0,1] - b1 = 0.1 - 0.1, R[1,2] - b2 = 0.1 - 0.05.
  assert metrics.forward_transfer(R, np.array([0.1, 0.1, 0.05])) == pytest.approx(0.025)


def test_matrix_metrics_reject_bad_shapes():
  with pytest.raises(ConfigError, match=r"\[T, T\]"):
    metrics.average_accuracy(np.zeros((2, 3)))
  with pytest.raises(ConfigError, match="baseline"):
    metrics.forward_transfer(R, np.zeros(2))


# Trajectory: 6 evaluations, 2 tasks; task 0 trains during evaluations 0-2.
A = np.array(
  [
    [0.2, 0.0],
    [0.8, 0.1],
    [0.9, 0.1],
    [0.3, 0.6],  # stability gap on task 0
    [0.6, 0.8],
    [0.7, 0.9],
  ]
)


def test_continual_evaluation_metrics_by_hand():
  ends = [3, 6]
  assert metrics.min_accuracy(A, ends) == pytest.approx(0.3)
  assert metrics.worst_case_accuracy(A, ends) == pytest.approx(0.9 / 2 + 0.3 / 2)
  # Task 0 from its last training evaluation: [0.9, 0.3, 0.6, 0.7]; window 2 -> 0.6.
  # Task 1 from evaluation 5: [0.9] -> no pair, not counted.
  assert metrics.windowed_forgetting(A, ends, 2) == pytest.approx(0.6)
  assert metrics.windowed_forgetting(np.array([[0.9], [0.8], [0.5]]), [1], 2) == pytest.approx(0.3)
  assert metrics.windowed_forgetting(np.array([[0.9], [0.8], [0.5]]), [1], 3) == pytest.approx(0.4)


def test_learning_curve_area_by_hand():
  curves = np.array([[0.1, 0.5, 0.9], [0.3, 0.7, 0.8]])
  assert metrics.learning_curve_area(curves, 1) == pytest.approx((0.1 + 0.5 + 0.3 + 0.7) / 4)
  with pytest.raises(ConfigError):
    metrics.learning_curve_area(curves, 3)


def test_plasticity_measures_by_hand():
  h = np.array([[0.0, 1.0, 2.0, 0.01], [0.0, 3.0, 2.0, 0.01]])
  # Means: [0, 2, 2, 0.01], layer mean 1.0025; tau 0.1 catches units 0 and 3.
  assert metrics.dormant_fraction([h], tau=0.0) == pytest.approx(0.25)
  assert metrics.dormant_fraction([h], tau=0.1) == pytest.approx(0.5)
  assert metrics.effective_rank(np.eye(4)) == pytest.approx(4.0)
  assert metrics.effective_rank(np.outer(np.arange(1, 6), np.ones(3))) == pytest.approx(1.0)


def test_dip_timing_finds_each_minimum_after_the_boundary_before_it():
  # 3 tasks ending at evaluations 2, 4, 6; task 0 dips after the second boundary, task 1 after the third
  a = np.array(
    [
      [0.5, 0.0, 0.0],
      [0.9, 0.0, 0.0],  # task 0 learnt
      [0.8, 0.6, 0.0],
      [0.85, 0.9, 0.0],  # task 1 learnt
      [0.4, 0.5, 0.7],  # both dip right after the boundary
      [0.88, 0.3, 0.9],  # task 1's minimum is one evaluation later
      [0.9, 0.89, 0.95],
    ]
  )
  np.testing.assert_array_equal(metrics.dip_timing(a, [2, 4, 6]), [[1, 1], [2, 1]])
  np.testing.assert_array_equal(metrics.dip_timing(a, [2, 4, 6], tol=0.0), [[1, 2], [2, 1]])


def test_task_group_means_by_hand():
  """23 tasks in 10 groups: np.array_split's sizes (3 x 3, then 7 x 2), each lane's own means."""
  acc = np.stack([np.arange(23) / 23, 1 - np.arange(23) / 23])
  groups = metrics.task_group_means(acc)
  assert list(groups)[:4] == ["tasks 1-3", "tasks 4-6", "tasks 7-9", "tasks 10-11"]
  assert list(groups)[-1] == "tasks 22-23"
  np.testing.assert_allclose(groups["tasks 1-3"], [1 / 23, 1 - 1 / 23])
  np.testing.assert_allclose(groups["tasks 22-23"], [21.5 / 23, 1 - 21.5 / 23])
  with pytest.raises(ConfigError, match="task_group_means"):
    metrics.task_group_means(np.zeros(5))
