"""Seeds x hyperparameters as vmapped lanes: each lane equals the same run alone."""

import jax
import numpy as np
import optax

from contlearn.cl import Mlp, Trainer, strategies, sweep


def test_each_lane_equals_the_same_run_alone(split_digits_task):
  sc = split_digits_task
  model = Mlp(64, (16,), 2, 5)
  trainer = Trainer(model, strategies.make("ewc", strategies.classifier(model), n_fisher=32, chunk=16),
                    optax.sgd(0.1), eval_every=5)
  keys, hp, lanes = sweep.grid([0, 1, 2], strength=[0.0, 10.0, 100.0])
  assert len(lanes) == 9
  state = trainer.init_lanes(keys, hp)
  accs = []
  for t in range(2):
    state, curve = trainer.train_lanes(state, sc, trainer.schedule(t, 5, 10, 8))
    state = trainer.end_task_lanes(state, sc, t)
    accs.append(curve.acc)
  for i in [0, 4, 8, 5]:
    solo = trainer.init(jax.random.key(lanes[i]["seed"]), {"strength": lanes[i]["strength"]})
    solo_accs = []
    for t in range(2):
      solo, curve = trainer.train(solo, sc, trainer.schedule(t, 5, 10, 8))
      solo = trainer.end_task(solo, sc, t)
      solo_accs.append(curve.acc)
    for a, b in zip(jax.tree.leaves(solo.params), jax.tree.leaves(state.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), rtol=1e-5, atol=1e-6)
    for a, b in zip(solo_accs, accs):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), atol=1e-6)
  # The strengths did change the runs: lanes of one seed differ after task 1.
  w = np.asarray(state.params[0]["w"])
  assert not np.allclose(w[0], w[2])
