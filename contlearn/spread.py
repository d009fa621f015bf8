"""Mean and spread over seeds: the one place every results table takes them from.

Two conventions, each named where it is used:

  * ddof=1, the sample standard deviation (the default): stream runs, MQAR,
    needle in a haystack, the LM strategies; the seeds are a sample of
    what another seed would give.
  * ddof=0, the population standard deviation: the classic continual-learning
    tables (`contlearn.cl.results`), as Avalanche and Mammoth report them.

>>> mean_std([1.0, 2.0, 3.0])
(2.0, 1.0)
>>> mean_std([1.0, 2.0, 3.0], ddof=0)[1] ** 2
0.6666666666666666
>>> mean_std([0.25])
(0.25, None)
>>> text([0.1, 0.3, 0.5], digits=2), text([0.25], digits=2), text([])
('0.30 ± 0.20', '0.25', '-')
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def mean_std(values: Iterable[float], *, ddof: int = 1) -> tuple[float, float | None]:
  """The mean of per-seed `values` and their standard deviation (None for a single value).

  Raises:
    ValueError: no values.
  """
  values = np.asarray(list(values), np.float64)
  if values.size == 0:
    raise ValueError("mean_std of no values")
  return float(values.mean()), (float(values.std(ddof=ddof)) if values.size > 1 else None)


def text(values: Iterable[float | None], digits: int = 3, *, ddof: int = 1) -> str:
  """ "m ± s" over the values that are not None, the value alone for one, "-" for none."""
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  mean, std = mean_std(values, ddof=ddof)
  return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def known(reduce, values: list) -> float | None:
  """`reduce(values)` (a sum, a mean) as a float, or None if any value is None (not recorded).

  >>> known(sum, [1.0, 2.0]), known(sum, [1.0, None])
  (3.0, None)
  """
  return None if None in values else float(reduce(values))
