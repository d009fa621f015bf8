"""Shared small data for the continual-learning tests."""

import jax
import pytest

from contlearn.cl import datasets, scenarios


@pytest.fixture(scope="session")
def digits():
  return datasets.digits()


@pytest.fixture(scope="session")
def split_digits_class(digits):
  return jax.device_put(scenarios.split(digits, 5, "class", max_test=60))


@pytest.fixture(scope="session")
def split_digits_task(digits):
  return jax.device_put(scenarios.split(digits, 5, "task", max_test=60))
