"""Shared benchmark helpers that change how a benchmark's process runs."""

import os
import pathlib
import subprocess
import sys

from benchmarks import common

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_tuned_malloc_runs_the_command_again_with_glibcs_tunables_and_records_them():
  code = (
    "import os, sys; sys.path.insert(0, sys.argv[1]); from benchmarks import common; "
    "print('start', os.environ.get('GLIBC_TUNABLES', '-')); common.with_tuned_malloc(); "
    "print('after', common.machine()['glibc_tunables'])"
  )
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  out = subprocess.run([sys.executable, "-c", code, str(ROOT)], env=env, capture_output=True, text=True, check=True)
  # the first process prints 'start -' and is replaced; the second starts with the tunables and goes on
  assert out.stdout.split("\n")[:3] == ["start -", f"start {common.TUNED_MALLOC}", f"after {common.TUNED_MALLOC}"]
