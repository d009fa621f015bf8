"""Forgetting and recovery on a stream of domains, from a held-out loss matrix."""

import numpy as np
import pytest

from contlearn.cl import shift_metrics as sm
from contlearn.errors import ConfigError

ORDER = (0, 1, 2, 0)
LOSSES = np.array(
  [
    [3.0, 4.0, 5.0],  # after phase 0 (domain 0)
    [3.2, 3.5, 4.9],  # after phase 1 (domain 1)
    [3.4, 3.9, 4.0],  # after phase 2 (domain 2)
    [3.05, 3.7, 4.3],  # after phase 3 (domain 0 again)
  ]
)
TRACE = [(0, 50, [3.0, 4.0, 5.0]), (3, 100, [3.3, 3.8, 4.1]), (3, 200, [3.04, 3.7, 4.2]), (3, 300, [3.05, 3.7, 4.3])]


def test_forgetting_is_the_worst_rise_before_the_domain_returns():
  assert sm.forgetting(LOSSES, ORDER) == pytest.approx([0.4, 0.4, 0.3])
  assert sm.final_change(LOSSES, ORDER) == pytest.approx([0.05, 0.2, 0.3])


def test_recovery_fraction_and_tokens():
  rec = sm.recovery(LOSSES, ORDER, TRACE, within=0.05)
  assert rec[1] is None and rec[2] is None  # only domain 0 returns
  assert rec[0]["forgot"] == pytest.approx(0.4)
  assert rec[0]["fraction"] == pytest.approx((3.4 - 3.05) / 0.4)
  assert rec[0]["tokens"] == 200  # first evaluation of phase 3 at or below 3.0 + 0.05
  assert sm.recovery(LOSSES, ORDER, TRACE, within=0.01)[0]["tokens"] is None
  assert sm.recovery(LOSSES, ORDER, TRACE, within=0.5)[0]["tokens"] == 0  # never left the margin


def test_nothing_to_undo_gives_no_fraction():
  better = LOSSES.copy()
  better[1:3, 0] = 2.9
  assert sm.recovery(better, ORDER, TRACE, within=0.05)[0]["fraction"] is None
  assert sm.forgetting(better, ORDER)[0] == pytest.approx(-0.1)


def test_bad_shapes_are_named():
  with pytest.raises(ConfigError, match="must be \\[phases=3, domains\\]"):
    sm.forgetting(LOSSES, (0, 1, 2))
  with pytest.raises(ConfigError, match="outside 0..2"):
    sm.forgetting(LOSSES, (0, 1, 3, 0))
