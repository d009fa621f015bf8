"""Every Pallas kernel lowers to Triton for a Hopper GPU, on a machine without one.

`pallas_support.on_platform` chooses the compiled kernel when a program is
lowered for CUDA, so `jax.export` for the "cuda" platform runs the kernels'
whole Triton lowering here: an operation Triton has no rule for (a
custom_vjp call, a slice, a matrix-vector product, before
`pallas_support.lowerable` rewrites them) fails here, not first on a GPU.
What only a GPU can check (Triton compiling that IR, the values) is in
tests/test_pallas_kernels.py, which the accelerator check runs there.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from contlearn import memories
from contlearn.config import ModelConfig
from contlearn.memories import pallas_support
from contlearn.memories import self_modifying as sm
from contlearn.memories.rules import self_modifying
from contlearn.mixer_configs import mixer_config
from contlearn.models import byte_lm
from contlearn.products import weight_product
from tests.memories.helpers import inputs, self_modifying_inputs

TRITON = "__gpu$xla.gpu.triton"
# jax >= 0.11 reads the GPU it lowers Triton for from the abstract mesh; older versions assume compute capability 9.0
HOPPER = jax.sharding.AbstractMesh(
  (1,),
  ("x",),
  axis_types=(jax.sharding.AxisType.Auto,),
  abstract_device=jax.sharding.AbstractDevice(device_kind="NVIDIA H100", num_cores=132, platform="gpu"),
)


def _triton_calls(f, *args) -> int:
  """How many Triton kernels the program `f(*args)` holds when exported for CUDA."""
  with jax.sharding.use_abstract_mesh(HOPPER):
    exported = export.export(
      jax.jit(f), platforms=["cuda"], disabled_checks=[export.DisabledSafetyCheck.custom_call(TRITON)]
    )(*args)
  return exported.mlir_module().count(TRITON)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", ["linear_attention", "gated_deltanet", "ttt_mlp", "titans"])
def test_each_memory_kernel_lowers_with_its_gradient(name, dtype):
  """Forward, and value with gradient (the backward is XLA's: a gradient alone needs no kernel): one kernel in
  each program, none interpreted."""
  rule = memories.RULES[name]
  with jax.enable_x64(dtype == jnp.float64):
    a = inputs(rule, jax.random.PRNGKey(0), t=40, dk=16, dv=16, dtype=dtype)

    def loss(q):
      y, _ = memories.chunked(rule, a["outer"], a["state"], q, a["k"], a["v"], a["rates"], a["mask"], 16, "pallas")
      return jnp.sum(y)

    assert _triton_calls(loss, a["q"]) == 1
    assert _triton_calls(jax.value_and_grad(loss), a["q"]) == 1


@pytest.mark.parametrize(
  "dtype, layer_norm",
  [(jnp.float32, False), pytest.param(jnp.float64, False, marks=pytest.mark.slow), (jnp.float64, True)],
)
def test_hopes_main_memory_kernel_lowers(dtype, layer_norm):
  """The settings tests/test_pallas_kernels.py checks on a GPU (heads of 16, 40 tokens in blocks of 16): a
  kernel in the scan over the two full blocks, one for the ragged last block. float64 dots are the strictest
  about their sizes (a side of 16 or more; float64 without a LayerNorm in `make test-all`)."""
  rule = self_modifying(expansion=2, layer_norm=layer_norm, normalized=not layer_norm)
  spec = sm.SelfModifying(rule, 16, 16, lr_scale=0.2 if layer_norm else 0.8, kernel="pallas")
  with jax.enable_x64(True):  # the inputs are drawn in float64, then cast
    params, state, x, mask = jax.tree.map(np.asarray, self_modifying_inputs(spec, 9, t=40, dh=16))
  with jax.enable_x64(dtype == jnp.float64):
    cast = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)
    loss = lambda p: jnp.sum(sm.chunked(spec, p, cast(state), cast(x), mask)[0])
    assert _triton_calls(jax.value_and_grad(loss), cast(params)) == 2


@pytest.mark.parametrize(  # Hope's memory in make test-all; its kernel lowers in make test (the test above)
  "mixer", ["gated_deltanet", "titans", pytest.param("self_modifying_titans", marks=pytest.mark.slow)]
)
def test_a_bfloat16_byte_lm_step_lowers(mixer):
  """The accelerator check's models (`model.mixer.kernel=pallas`), bfloat16 outside the memories: a step's loss
  and gradient, one kernel per layer."""
  settings = mixer_config(mixer, chunk=16, kernel="pallas")
  model = byte_lm(ModelConfig(mixer=settings, d_model=32, n_layers=2, n_heads=2, compute_dtype="bfloat16"))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 33), 0, 256)

  def nll(params):
    logits, _ = model.apply(params, model.init_memory(2), tokens[:, :-1], jnp.ones((2, 32), bool))
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], axis=-1))

  assert _triton_calls(jax.value_and_grad(nll), model.init_params(jax.random.PRNGKey(0))) == 2


def test_lowerable_keeps_the_values_and_drops_what_triton_cannot_lower():
  """custom_vjp calls, slices (strided, on two axes), matrix-vector, outer and batched products (a batch of
  three, of one), against the function itself; what is left of the products is Triton's kind (two matrices,
  each side 16 or longer)."""
  k = jax.random.split(jax.random.PRNGKey(3), 4)
  x, w = jax.random.normal(k[0], (20, 16)), jax.random.normal(k[1], (16, 16))
  v, thin = jax.random.normal(k[2], (16,)), jax.random.normal(k[3], (2, 16))
  stack = jnp.stack([w, 2 * w, -w])

  def f(x, w, v):
    y = weight_product(x, w)
    batched = [jnp.matmul(x[None], stack), jnp.einsum("ij,sjk->ski", x, stack), weight_product(x, w[None])]
    small = [thin @ w, jnp.outer(v, v[:4]), x[:, :1] @ thin[:1], jnp.einsum("ij,kl->ijkl", thin, w), jnp.vdot(w, w)]
    return y[1:5:2, 1:], y[-1] @ w, w @ v, v @ v, jax.lax.slice(y, (0, 0), (6, 5)), *batched, *small

  eqns = jax.make_jaxpr(pallas_support.lowerable(f))(x, w, v).eqns
  assert not {e.primitive.name for e in eqns} & {"slice", "custom_vjp_call", "custom_vjp_call_jaxpr"}
  products = [e for e in eqns if e.primitive.name == "dot_general"]
  assert products and all(
    pallas_support.triton_dot(*(a.aval for a in e.invars), e.params["dimension_numbers"]) for e in products
  )
  for got, want in zip(pallas_support.lowerable(f)(x, w, v), f(x, w, v), strict=True):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_lowerable_products_accumulate_as_the_originals():
  """bfloat16 operands, K = 256, against the products themselves: with a float32 result (`preferred_element_type`)
  a wide product (left as it is), a thin one, one batched over a leading axis and one over inner axes; with a
  bfloat16 result a thin one, whose sums stay in float32 as a dot's do. Accumulating in bfloat16 is off by
  about 0.1 at these sizes (the float32 results), or in the last place of 42 of the 96 bfloat16 ones."""
  k = jax.random.split(jax.random.PRNGKey(4), 3)
  x, w = jax.random.normal(k[0], (32, 256), jnp.bfloat16), jax.random.normal(k[1], (256, 32), jnp.bfloat16)
  v = jax.random.normal(k[2], (3, 256), jnp.bfloat16)
  f32 = dict(preferred_element_type=jnp.float32)

  def f(x, w, v):
    xs, ws = jnp.stack([x, -x]), jnp.stack([w, 2 * w])
    return (
      jnp.matmul(x, w, **f32),
      jnp.matmul(v, w, **f32),
      jnp.einsum("bij,bjk->bik", xs, ws, **f32),
      jnp.einsum("ibj,jbk->bik", jnp.moveaxis(xs, 0, 1), jnp.moveaxis(ws, 0, 1), **f32),
      jnp.matmul(v, w),
    )

  *wide, narrow = pallas_support.lowerable(f)(x, w, v)
  *wide_want, narrow_want = f(x, w, v)
  for got, want in zip(wide, wide_want, strict=True):
    assert got.dtype == want.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  # bfloat16 results: the same but for a rare rounding of the last place (summed in bfloat16, 42 of the 96 move)
  assert narrow.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(narrow), np.float32(narrow_want), rtol=2**-7)
  assert np.mean(np.float32(narrow) != np.float32(narrow_want)) < 0.1
