"""The delta rule's chunk system `(I + A) X = R` three ways: block inversion, a triangular solve, the series.

    python benchmarks/unit_lower_inverse.py [--chunks 16,64] [--batch 512] [--repeats 7] [--with-solve]

The WY / UT chunk form of the delta rule (`contlearn.memories.linear`)
solves one unit-lower-triangular `[C, C]` system per chunk, head and lane,
for a right-hand side `R [C, Dv + Dk]` (`chunk_terms`: `U_v` and `W_k`
at once). Rows, for each chunk size C over `--batch` systems (default 512:
8 lanes x 4 heads x 16 chunks) with heads of 32 (`R` 64 wide) in float32,
jitted, timed in turn (median of `--repeats`):

- `block`: `linear.unit_lower_inverse(A) @ R`, the form contlearn uses
  (blocks of size 1, 2, 4, ... inverted in turn, two matrix products a
  doubling).
- `solve` (with `--with-solve` only):
  `jax.scipy.linalg.solve_triangular(I + A, R)` (unit diagonal, lower),
  forward substitution. On the project's CPU machine with jax 0.10.2 it is
  faster than the block form when it returns, but its calls at these
  shapes can stop making progress (the process idle, never returning)
  after a few calls: its forward and backward holds two solves that do
  not depend on each other, and two of jaxlib's batched solves running
  at once deadlock a two-thread pool. So `make bench` leaves it out
  (docs/memories.md).
- `series`: `sum_j (-A)^j R`, the series summed by doubling,
  `prod_j (I + (-A)^(2^j))`.

Each row has the forward alone (`forward_ms`), the forward and backward of
`sum(X * S)` for a fixed random `S` (`grad_ms`, the gradient with respect
to `A` and `R`), each over the block form's, and the largest error
against a float64 solve on two kinds of keys: random unit keys
(`err_random`) and keys all alike (every key the same, rate 1:
`err_alike`), where the series' terms grow like binomial coefficients.
`A[i, j] = b_i k_i . k_j` for j < i, with unit keys of width 32 and rates
`b` in (0, 1) (no decay), `R` standard normal. No peer: the numbers are
what `docs/memories.md` quotes for the choice of the form.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402
from contlearn.memories.linear import unit_lower_inverse  # noqa: E402

WIDTH = 32  # head width: keys of 32, R of 2 x 32


def _eye(a: jax.Array) -> jax.Array:
  return jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)


def block_solve(a: jax.Array, r: jax.Array) -> jax.Array:
  """`(I + A)^-1 R` with the inverse by block inversion (contlearn's form)."""
  return unit_lower_inverse(a) @ r


def triangular_solve(a: jax.Array, r: jax.Array) -> jax.Array:
  """`(I + A)^-1 R` by forward substitution."""
  return jax.scipy.linalg.solve_triangular(_eye(a) + a, r, lower=True, unit_diagonal=True)


def series_solve(a: jax.Array, r: jax.Array) -> jax.Array:
  """`(I + A)^-1 R = sum_j (-A)^j R` (A nilpotent), the sum by doubling: `prod_j (I + (-A)^(2^j))`."""
  total, power, span = _eye(a) - a, -a, 1
  while 2 * span < a.shape[-1]:
    power = power @ power
    total = total + total @ power
    span *= 2
  return total @ r


FORMS = {"block": block_solve, "series": series_solve}


def systems(batch: int, c: int, alike: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """`A [batch, C, C]` (`b_i k_i . k_j` below the diagonal, unit keys) and `R [batch, C, 2 WIDTH]`, float64."""
  rng = np.random.default_rng(seed)
  k = rng.standard_normal((batch, 1 if alike else c, WIDTH))
  k = np.broadcast_to(k / np.linalg.norm(k, axis=-1, keepdims=True), (batch, c, WIDTH))
  b = np.ones((batch, c)) if alike else rng.uniform(0.0, 1.0, (batch, c))
  return np.tril(b[:, :, None] * (k @ k.transpose(0, 2, 1)), -1), rng.standard_normal((batch, c, 2 * WIDTH))


def largest_error(form, a: np.ndarray, r: np.ndarray) -> float:
  """The largest entry of `form(A, R)` in float32 minus the float64 solution."""
  exact = np.linalg.solve(np.eye(a.shape[-1]) + a, r)
  got = jax.jit(form)(jnp.asarray(a, jnp.float32), jnp.asarray(r, jnp.float32))
  return float(np.abs(np.asarray(got, np.float64) - exact).max())


def time_forms(forms: dict, a: jax.Array, r: jax.Array, repeats: int) -> dict[str, float]:
  """Median seconds of each form's forward (`"NAME forward"`) and of the forward and backward of
  `sum(X * S)` with respect to `a` and `r` (`"NAME grad"`), on `a [B, C, C]`, `r [B, C, W]`, timed in turn."""
  s = jax.random.normal(jax.random.PRNGKey(1), r.shape, r.dtype)
  calls = {}
  for name, form in forms.items():
    forward = jax.jit(form)
    grad = jax.jit(jax.grad(lambda x, y, f=form: jnp.sum(f(x, y) * s), argnums=(0, 1)))
    calls[f"{name} forward"] = lambda f=forward: jax.block_until_ready(f(a, r))
    calls[f"{name} grad"] = lambda f=grad: jax.block_until_ready(f(a, r))
  return common.interleaved(calls, repeats)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--chunks", default="16,64", help="chunk sizes C, comma-separated")
  parser.add_argument("--batch", type=int, default=512, help="systems inverted per call")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--with-solve", action="store_true", help="also the triangular solve (may not return)")
  args = parser.parse_args()
  forms = FORMS | ({"solve": triangular_solve} if args.with_solve else {})
  rows = []
  for c in [int(x) for x in args.chunks.split(",")]:
    a, r = (jnp.asarray(x, jnp.float32) for x in systems(args.batch, c, alike=False))
    seconds = time_forms(forms, a, r, args.repeats)
    for name, form in forms.items():
      rows.append(
        {
          "chunk": c,
          "form": name,
          "forward_ms": seconds[f"{name} forward"] * 1e3,
          "grad_ms": seconds[f"{name} grad"] * 1e3,
          "err_random": largest_error(form, *systems(8, c, alike=False, seed=2)),
          "err_alike": largest_error(form, *systems(8, c, alike=True, seed=2)),
        }
      )
  for row in rows:
    block = next(r for r in rows if r["chunk"] == row["chunk"] and r["form"] == "block")
    row["forward_over_block"] = row["forward_ms"] / block["forward_ms"]
    row["grad_over_block"] = row["grad_ms"] / block["grad_ms"]
  columns = ["chunk", "form", "forward_ms", "grad_ms", "forward_over_block", "grad_over_block"]
  common.print_table(rows, columns + ["err_random", "err_alike"])
  common.write_json("unit_lower_inverse", {"batch": args.batch, "rows": rows})
  return 0


if __name__ == "__main__":
  sys.exit(main())
