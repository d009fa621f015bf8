"""Counting the programs jax builds: each one is compiled by XLA or read from a persistent compilation cache (the
suite runs without one, conftest.py), and either way it is one program that the code asked for."""

import contextlib

import jax

COMPILED = "/jax/core/compile/backend_compile_duration"
READ_FROM_CACHE = "/jax/compilation_cache/cache_retrieval_time_sec"


class Programs:
  """A running count of the programs built since it was made; `close()` stops counting."""

  def __init__(self):
    self.count = 0
    jax.monitoring.register_event_duration_secs_listener(self._listen)

  def _listen(self, event, duration, **kwargs):
    # A cache read is only timed when it finds the program; a miss goes on to compile and is counted there.
    if event in (COMPILED, READ_FROM_CACHE):
      self.count += 1

  def close(self):
    jax.monitoring.unregister_event_duration_listener(self._listen)


@contextlib.contextmanager
def count_programs():
  """`with count_programs() as programs: ...`, then `programs.count`."""
  programs = Programs()
  try:
    yield programs
  finally:
    programs.close()
