"""End to end on permuted digits: EWC and replay forget less than fine-tuning."""

import jax
import numpy as np
import optax

from contlearn.cl import Mlp, Trainer, metrics, scenarios, strategies


def _run(sc, name, hparams, **kwargs):
  model = Mlp(64, (64,), 10)
  trainer = Trainer(model, strategies.make(name, strategies.classifier(model), **kwargs), optax.sgd(0.1),
                    eval_every=100)
  state = trainer.init(jax.random.key(0), hparams)
  rows = []
  for t in range(sc.n_tasks):
    state, curve = trainer.train(state, sc, trainer.schedule(t, sc.n_tasks, 300, 32))
    state = trainer.end_task(state, sc, t)
    rows.append(np.asarray(trainer.evaluate(state, sc)))
    np.testing.assert_allclose(rows[-1], np.asarray(curve.acc[-1]), atol=1e-6)
  # One compile per configuration: every task reused the same programs.
  assert trainer.train._cache_size() == 1 and trainer.end_task._cache_size() == 1
  return np.stack(rows)


def test_ewc_and_replay_forget_less_than_naive(digits):
  sc = jax.device_put(scenarios.permuted(digits, 3, "domain", seed=0))
  naive = _run(sc, "naive", {})
  ewc = _run(sc, "ewc", {"strength": 100.0})
  er = _run(sc, "er", {}, capacity=200)
  assert np.diag(naive).min() > 0.85  # each task is learned
  for other in (ewc, er):
    assert metrics.forgetting(other) < metrics.forgetting(naive) - 0.1
    assert metrics.average_accuracy(other) > metrics.average_accuracy(naive) + 0.05
