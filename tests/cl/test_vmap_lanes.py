"""Seeds x hyperparameters as vmapped lanes: each lane equals the same run alone."""

import jax
import numpy as np
import optax

from contlearn import engine, strategies
from contlearn.cl import Mlp, classifier, classifier_learner, compile_calls, learner, sweep


def test_each_lane_equals_the_same_run_alone(split_digits_task):
  sc = split_digits_task
  model = Mlp(64, (16,), 2, 5)
  strategy = strategies.make("ewc", classifier(model), n_fisher=32, chunk=16)
  cl = classifier_learner(model, strategy, optax.sgd(0.1))
  keys, hp, lanes = sweep.grid([0, 1, 2], strength=[0.0, 10.0, 100.0])
  assert len(lanes) == 9
  state = engine.init(cl, keys, lanes=True, hparams=hp)
  calls = compile_calls(cl, model, strategy, state, eval_every=5, lanes=True)
  accs = []
  for t in range(2):
    state, (_, acc) = calls.train(state, learner.schedule(strategy, t, 5, 10, 8), sc)
    state = calls.end_task(state, sc, t)
    accs.append(acc)
  solo_calls = None
  for i in [0, 4, 8, 5]:
    solo = engine.init(cl, jax.random.key(lanes[i]["seed"]), hparams={"strength": lanes[i]["strength"]})
    solo_calls = solo_calls or compile_calls(cl, model, strategy, solo, eval_every=5)
    solo_accs = []
    for t in range(2):
      solo, (_, acc) = solo_calls.train(solo, learner.schedule(strategy, t, 5, 10, 8), sc)
      solo = solo_calls.end_task(solo, sc, t)
      solo_accs.append(acc)
    for a, b in zip(jax.tree.leaves(solo.params), jax.tree.leaves(state.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), rtol=1e-5, atol=1e-6)
    for a, b in zip(solo_accs, accs):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), atol=1e-6)
  # The strengths did change the runs: lanes of one seed differ after task 1.
  w = np.asarray(state.params[0]["w"])
  assert not np.allclose(w[0], w[2])
