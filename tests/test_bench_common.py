"""Shared benchmark helpers that change how a benchmark's process runs."""

import doctest
import mmap
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


def test_kernel_times_names_each_kernel_of_the_compiled_program_and_counts_its_runs_in_a_loop():
  import jax
  import jax.numpy as jnp

  @jax.jit
  def loop(w, x):
    return jax.lax.fori_loop(0, 7, lambda _, h: jnp.tanh(h @ w), x)

  w, x = jnp.eye(64) * 0.5, jnp.ones((8, 64))
  ops = common.instructions(loop.lower(w, x).compile().as_text())
  times = common.kernel_times(lambda: jax.block_until_ready(loop(w, x)), repeats=2)
  assert times.wall_ms > 0
  assert set(times.ms) <= set(ops), set(times.ms) - set(ops)  # every traced kernel is an instruction of the program
  products = [name for name in times.ms if ops[name][1].endswith("dot_general")]
  assert products and all(times.runs[name] == 7 for name in products)  # once a loop step
  assert ops[products[0]][0].startswith("f32[8,64]")
  assert ("(s32[], f32[8,64]{1,0}, f32[64,64]{1,0})", "jit(loop)/while") in ops.values()  # the loop's tuple whole


def test_costliest_kernels_are_ranked_and_split_into_forward_and_backward():
  import jax
  import jax.numpy as jnp

  grad = jax.jit(jax.grad(lambda w, x: jnp.sum(jnp.tanh(x @ w) ** 2)))
  w, x = jnp.eye(256) * 0.5, jnp.ones((64, 256))
  text = grad.lower(w, x).compile().as_text()
  rows = common.costliest_kernels(lambda: jax.block_until_ready(grad(w, x)), text, 50, repeats=2)
  assert 0 < len(rows) <= 50 and 0.99 <= sum(r["share"] for r in rows) <= 1.01  # every traced kernel, all shares
  assert [r["share"] for r in rows] == sorted((r["share"] for r in rows), reverse=True)
  assert {r["pass"] for r in rows} == {"forward", "backward"}
  assert len(common.costliest_kernels(lambda: jax.block_until_ready(grad(w, x)), text, 1)) == 1


def test_faulted_mib_counts_the_pages_a_call_touches_for_the_first_time():
  size = 8 * 2**20

  def fresh_pages():
    with mmap.mmap(-1, size) as fresh:  # anonymous: every page comes from the kernel on its first write
      for offset in range(0, size, mmap.PAGESIZE):
        fresh[offset] = 1

  kept = bytearray(size)

  def same_pages():
    for offset in range(0, size, mmap.PAGESIZE):
      kept[offset] = 1

  assert 8 <= common.faulted_mib(fresh_pages) < 9
  assert common.faulted_mib(same_pages) < 0.5


def test_the_helpers_docstring_examples():
  result = doctest.testmod(common)
  assert result.attempted > 0 and result.failed == 0
