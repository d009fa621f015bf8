"""The Pallas kernels of the memories' chunk chains against the token-by-token reference.

`memories.pallas_linear` (the linear memories' WY form) and
`memories.pallas_scan` (the chunk-start-gradient form of TTT and Titans, and
Hope's main memory), in float64, so that kernel and reference agree to
rounding. On a CPU the kernels run in Pallas's interpreter; the accelerator
check runs this file on a GPU, where they are compiled with Triton, which
wants chunk and head widths that are powers of two and at least 16 (the
chunks of 1 and 5 tokens run on a CPU only). tests/test_pallas_lowering.py
lowers them for a GPU on any machine.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import memories
from contlearn.config import Config, ModelConfig
from contlearn.errors import ConfigError
from contlearn.memories import self_modifying as sm
from contlearn.memories.rules import self_modifying
from contlearn.mixer_configs import mixer_config
from contlearn.models import byte_lm
from contlearn.overrides import apply_overrides
from tests.memories.helpers import inputs, self_modifying_inputs

# linear (pallas_linear): a dot-loss memory with fixed decay, the delta rule with a data-dependent gate;
# chunk-start gradients (pallas_scan): TTT-MLP (a 2-layer memory, inner LayerNorm), Titans (momentum, decay)
NAMES = ("linear_attention", "gated_deltanet", "ttt_mlp", "titans")
T, D = 40, 16
cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="Triton wants chunks of 2^n >= 16 tokens")
pallas_form = functools.partial(memories.chunked, kernel="pallas")


def _run(form, rule, chunk, a):
  return form(rule, a["outer"], a["state"], a["q"], a["k"], a["v"], a["rates"], a["mask"], chunk)


def _close(x, y, tol):
  for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(  # make test: chunks of 16 (a GPU's; ragged at T = 40); every chunk in make test-all
  "chunk",
  [
    pytest.param(1, marks=[cpu_only, pytest.mark.slow]),
    pytest.param(5, marks=[cpu_only, pytest.mark.slow]),
    16,
    pytest.param(32, marks=pytest.mark.slow),
  ],
)
def test_kernel_equals_the_reference(name, chunk):
  """T = 40: a ragged last chunk for 16 and 32 (padding inside, and 3 masked tokens at the end)."""
  rule = memories.RULES[name]
  with jax.enable_x64(True):
    a = inputs(rule, jax.random.PRNGKey(chunk), t=T, dk=D, dv=D)
    y, state = _run(pallas_form, rule, chunk, a)
    assert y.dtype == jnp.float64 and y.shape == (T, D)
    _close(_run(memories.reference, rule, chunk, a), (y, state), 1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_kernel_under_vmap_gives_each_head_its_own_result(name):
  """The mixers vmap the form over lanes and heads, which become the kernel's grid."""
  rule = memories.RULES[name]
  with jax.enable_x64(True):
    heads = [inputs(rule, jax.random.PRNGKey(i), t=T, dk=D, dv=D) for i in range(3)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *heads)
    got = jax.vmap(lambda a: _run(pallas_form, rule, 16, a))(stacked)
    for i, a in enumerate(heads):
      _close(_run(memories.reference, rule, 16, a), jax.tree.map(lambda x: x[i], got), 1e-10)


@pytest.mark.parametrize(  # make test: one memory of each kernel; every memory in make test-all
  "name", [n if n in ("gated_deltanet", "titans") else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]
)
def test_gradients_equal_the_reference(name):
  """The kernel's custom_vjp (the pullback of `linear.scan_chunks` or `dual.scan_chunks`) against the reference's."""
  rule = memories.RULES[name]
  with jax.enable_x64(True):
    a = inputs(rule, jax.random.PRNGKey(7), t=T, dk=D, dv=D)
    diff = ("outer", "state", "q", "k", "v", "rates")

    def loss(form, p):
      y, s = _run(form, rule, 16, {**a, **p})
      return jnp.sum(jnp.sin(y)) + sum(jnp.sum(jnp.cos(x)) for x in jax.tree.leaves(s))

    p = {n: a[n] for n in diff}
    want = jax.grad(lambda p: loss(memories.reference, p))(p)
    _close(want, jax.grad(lambda p: loss(pallas_form, p))(p), 1e-9)


@pytest.mark.slow  # about 30 s of CPU in the interpreter; the kernel's Titans memory runs in make test
@pytest.mark.parametrize("gradients", [False, True])
@pytest.mark.parametrize("read_residual, layer_norm", [(True, False), (False, False), (False, True)])
def test_self_modifying_main_memory_with_the_kernel_equals_the_reference(gradients, read_residual, layer_norm):
  """Self-modifying Titans (Hope's mixer) with its main memory's chunks chained by the kernel: outputs and
  final state (and the gradients of its outer parameters and state) against the token scan, in float64
  (on a CPU T = 19, a ragged last block of chunk_proj 8, chunk_mem 4, heads of 4; on a GPU, for Triton, T =
  40, chunks of 16, heads of 16; the last 3 tokens masked). With a LayerNorm, steps not normalised and the
  inner rate 0.2 (tests/memories/test_self_modifying.py says why)."""
  (chunk_mem, chunk_proj, t, dh) = (4, 8, 19, 4) if jax.default_backend() == "cpu" else (16, 16, 40, 16)
  with jax.enable_x64(True):
    spec = sm.SelfModifying(
      self_modifying(expansion=2, layer_norm=layer_norm, normalized=not layer_norm),
      chunk_mem,
      chunk_proj,
      lr_scale=0.2 if layer_norm else 0.8,
      kernel="pallas",
      read_residual=read_residual,
    )
    params, state, x, mask = self_modifying_inputs(spec, 9, t=t, dh=dh)

    def loss(form, p):
      y, s = form(spec, p["params"], p["state"], x, mask)
      return jnp.sum(jnp.sin(y)) + sum(jnp.sum(jnp.cos(a)) for a in jax.tree.leaves(s)), (y, s)

    p = {"params": params, "state": state}
    if not gradients:
      _close(loss(sm.reference, p)[1], loss(sm.chunked, p)[1], 1e-9)
      return
    (_, want), g_want = jax.value_and_grad(lambda p: loss(sm.reference, p), has_aux=True)(p)
    (_, got), g_got = jax.value_and_grad(lambda p: loss(sm.chunked, p), has_aux=True)(p)
    _close(want, got, 1e-9)
    _close(g_want, g_got, 1e-9)


@pytest.mark.slow  # the kernel's own forms run in make test; the model-level check in make test-all
@pytest.mark.parametrize("mixer", ["gated_deltanet", "titans", "self_modifying_titans"])
def test_a_byte_lm_step_with_the_kernel_equals_the_default(mixer):
  """The loss, its gradient and the carried memory of a byte LM (float32, matmuls at full precision on any device).

  One lane ends in padding; two chunks of 16 tokens, the second ragged.
  """
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 25), 0, 256)
  mask = jnp.ones((2, 24), bool).at[0, 21:].set(False)
  got = {}
  for kernel in ("xla", "pallas"):
    settings = mixer_config(mixer, chunk=16, kernel=kernel)
    model = byte_lm(ModelConfig(mixer=settings, d_model=32, n_layers=1, n_heads=2, mlp_ratio=2))  # heads of 16

    def nll(params):
      logits, memory = model.apply(params, model.init_memory(2), tokens[:, :-1], mask)
      picked = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], axis=-1)[..., 0]
      return -jnp.sum(jnp.where(mask, picked, 0.0)), memory

    params = model.init_params(jax.random.PRNGKey(0))
    with jax.default_matmul_precision("highest"):
      got[kernel] = jax.jit(jax.value_and_grad(nll, has_aux=True))(params)
  (loss, _), _ = got["xla"]
  assert np.isfinite(float(loss)) and float(loss) > 0
  _close(got["xla"], got["pallas"], 1e-5)


def test_the_kernel_setting_is_checked():
  assert apply_overrides(Config(), ["model.mixer=deltanet", "model.mixer.kernel=pallas"]).model.mixer.kernel == "pallas"
  with pytest.raises(ConfigError, match=r"^--set model.mixer.kernel=cuda: must be one of xla, pallas$"):
    apply_overrides(Config(), ["model.mixer=gated_deltanet", "model.mixer.kernel=cuda"])
  assert apply_overrides(Config(), ["model.mixer=titans", "model.mixer.kernel=pallas"]).model.mixer.kernel == "pallas"
  with pytest.raises(ConfigError, match="has no field kernel"):
    apply_overrides(Config(), ["model.mixer=swa", "model.mixer.kernel=pallas"])
