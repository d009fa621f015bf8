"""The persistent compilation cache of `contlearn run`: a second run reads its programs back."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from contlearn import compile_cache

# A child process (the cache is per process): counts jax's cache hits and misses around one `contlearn run`.
CHILD = textwrap.dedent(
  """
  import collections, json, sys
  import jax.monitoring
  from contlearn.cli import main
  events = collections.Counter()
  jax.monitoring.register_event_listener(lambda name, **kw: events.update([name]))
  code = main(sys.argv[1:])
  print(json.dumps({"code": code, "hits": events["/jax/compilation_cache/cache_hits"]}))
  """
)


def test_the_flag_wins_over_the_environment_and_off_turns_it_off(tmp_path):
  env = {compile_cache.ENV: str(tmp_path / "env"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
  assert compile_cache.folder(str(tmp_path / "flag"), env) == tmp_path / "flag"
  assert compile_cache.folder(None, env) == tmp_path / "env"
  assert compile_cache.folder("OFF", env) is None and compile_cache.folder(None, {compile_cache.ENV: "off"}) is None
  assert compile_cache.folder(None, {"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "contlearn" / "jax"


def test_a_folder_that_cannot_be_made_leaves_the_cache_off_with_one_line(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("")
  assert compile_cache.enable(blocker / "cache") is None
  line = capsys.readouterr().err.strip()
  assert line.startswith(f"contlearn: warning: compilation cache off: cannot create {blocker / 'cache'}")
  assert "\n" not in line


@pytest.mark.slow
def test_a_second_run_reads_its_programs_from_the_cache(tmp_path):
  cache = tmp_path / "cache"
  # Every program stored, however fast it compiles (jax's default threshold is one second).
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  env.pop(compile_cache.ENV, None)

  def run(out: str) -> dict:
    args = ["run", "byte_lm", "--set", "model.d_model=32", "--set", "model.n_layers=1", "--set", "data.batch=2"]
    args += ["--set", "data.seq=32", "--tokens", "256", "--out", str(tmp_path / out), "--no-progress"]
    args += ["--compile-cache", str(cache)]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])

  first = run("first")
  stored = sorted(p.name for p in cache.iterdir())
  assert first == {"code": 0, "hits": 0} and stored
  second = run("second")
  assert second["code"] == 0 and second["hits"] >= 1
  assert sorted(p.name for p in cache.iterdir()) == stored  # nothing compiled anew was worth storing
