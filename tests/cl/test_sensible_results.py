"""End to end on permuted digits: EWC and replay forget less than fine-tuning."""

import jax
import numpy as np
import optax
import pytest

from contlearn import engine, strategies
from contlearn.cl import Mlp, classifier, classifier_learner, compile_calls, learner, metrics, scenarios


def _run(sc, name, hparams, **kwargs):
  model = Mlp(64, (64,), 10)
  strategy = strategies.make(name, classifier(model), **kwargs)
  cl = classifier_learner(model, strategy, optax.sgd(0.1))
  state = engine.init(cl, jax.random.key(0), hparams=hparams)
  calls = compile_calls(cl, model, strategy, state, eval_every=100)
  rows = []
  for t in range(sc.n_tasks):
    state, (_, acc) = calls.train(state, learner.schedule(strategy, t, sc.n_tasks, 300, 32), sc)
    state = calls.end_task(state, sc, t)
    rows.append(np.asarray(calls.evaluate(state, sc)))
    np.testing.assert_allclose(rows[-1], np.asarray(acc[-1]), atol=1e-6)
  # One compile per configuration: every task reused the same programs.
  assert calls.train._cache_size() == 1 and calls.end_task._cache_size() == 1
  return np.stack(rows)


@pytest.mark.slow  # make test: the strategies' value tests and the lane test cover their steps
def test_ewc_and_replay_forget_less_than_naive(digits):
  sc = jax.device_put(scenarios.permuted(digits, 3, "domain", seed=0))
  naive = _run(sc, "naive", {})
  ewc = _run(sc, "ewc", {"strength": 100.0})
  er = _run(sc, "er", {}, capacity=200)
  assert np.diag(naive).min() > 0.85  # each task is learned
  for other in (ewc, er):
    assert metrics.forgetting(other) < metrics.forgetting(naive) - 0.1
    assert metrics.average_accuracy(other) > metrics.average_accuracy(naive) + 0.05
