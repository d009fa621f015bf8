"""The MQAR generator: every scored position asks for the value bound to its key."""

import jax
import jax.numpy as jnp
import numpy as np

from contlearn.memories import mqar


def test_answers_are_bound_values():
  pairs = jnp.array([1, 3, 5, 5])
  b = mqar.sample(jax.random.PRNGKey(0), 4, pairs, 5, n_keys=8, n_values=6)
  tokens, answer = np.asarray(b.tokens), np.asarray(b.answer)
  assert tokens.shape == (4, 20) and answer.shape == (4, 19)
  for row, n in zip(range(4), [1, 3, 5, 5]):
    seq = tokens[row]
    bound = dict(zip(seq[0 : 2 * n : 2], seq[1 : 2 * n : 2]))
    assert len(bound) == n and all(1 <= k <= 8 for k in bound) and all(9 <= v <= 14 for v in bound.values())
    scored = np.flatnonzero(answer[row])
    assert len(scored) == n and all(2 * n <= p < 4 * n for p in scored)
    assert sorted(seq[p] for p in scored) == sorted(bound)
    assert all(seq[p + 1] == bound[seq[p]] for p in scored)
    assert (seq[4 * n :] == 0).all()
