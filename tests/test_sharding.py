"""The mesh and its rules: FSDP by shape, tensor parallelism by name, followers, memory by lane, init in place."""

import json

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P
from tiny import tiny_config, with_fields

from contlearn import engine
from contlearn.config import MeshConfig
from contlearn.driver import train
from contlearn.errors import ConfigError
from contlearn.learner import build_learner
from contlearn.overrides import apply_overrides
from contlearn.sharding import make_mesh, param_spec, path_name, state_sharding
from contlearn.state import new_state
from contlearn.stream import DocumentLanes, split_bytes


def _specs(tree):
  return {path_name(p): s.spec for p, s in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize(
  ("cfg", "sizes"),
  [(MeshConfig(), (8, 1, 1)), (MeshConfig(fsdp=2), (4, 2, 1)), (MeshConfig(data=2, fsdp=-1, tensor=2), (2, 2, 2))],
)
def test_mesh_sizes_resolve_the_devices_left(cfg, sizes):
  mesh = make_mesh(cfg)
  assert tuple(mesh.shape.values()) == sizes and mesh.axis_names == ("data", "fsdp", "tensor")


def test_bad_mesh_settings_are_one_line():
  with pytest.raises(ConfigError, match=r"mesh data=-1 x fsdp=3 x tensor=1 does not fit the 8 devices"):
    make_mesh(MeshConfig(fsdp=3))
  with pytest.raises(ConfigError, match=r"--set mesh.fsdp=0: must be an integer >= 1, or -1"):
    apply_overrides(tiny_config(), ["mesh.fsdp=0"])
  with pytest.raises(ConfigError, match=r"at most one size may be -1"):
    MeshConfig(data=-1, fsdp=-1)
  with pytest.raises(ConfigError, match=r"data.batch=6 must be a multiple of the 4 parts \(data=2 x fsdp=2\)"):
    train(with_fields(tiny_config(), data=dict(batch=6), mesh=dict(data=2, fsdp=2, tensor=2)), "/nonexistent")


def test_fsdp_splits_the_largest_dimension_it_divides():
  mesh = make_mesh(MeshConfig(data=2, fsdp=4))
  assert param_spec("embed", (256, 32), mesh) == ("fsdp", None)
  assert param_spec("blocks/0/ff/0/w1", (32, 64), mesh) == (None, "fsdp")
  assert param_spec("w", (6, 102), mesh) == (None, None)  # 612 elements, no dimension divisible by 4
  assert param_spec("blocks/0/mixer/norm", (32,), mesh) == (None,)  # below FSDP_MIN_ELEMENTS
  assert param_spec("blocks/mixer/wqkv", (3, 32, 96), mesh) == (None, None, "fsdp")  # stacked layers


def test_tensor_rules_split_attention_and_mlp_by_name():
  mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
  assert param_spec("blocks/0/mixer/wqkv", (32, 96), mesh) == ("fsdp", "tensor")
  assert param_spec("blocks/0/mixer/wo", (32, 32), mesh) == ("tensor", "fsdp")
  assert param_spec("blocks/0/ff/1/w2", (64, 32), mesh) == ("tensor", "fsdp")
  assert param_spec("blocks/mixer/wqkv", (2, 32, 96), mesh) == (None, "fsdp", "tensor")  # counted from the end
  assert param_spec("head", (32, 256), mesh) == (None, "fsdp")  # no rule: fsdp only


def test_optimizer_and_memory_leaves_follow_their_parameter_or_lane():
  cfg = tiny_config("swa", cms_periods=(1, 2))
  learner = build_learner(cfg)
  state = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
  specs = state_sharding(state, make_mesh(MeshConfig(data=2, fsdp=2, tensor=2)))
  params, opt = _specs(specs.params), _specs(specs.opt_state)
  w1 = "blocks/0/ff/0/w1"
  assert params[w1] == P("fsdp", "tensor")
  followers = {name: spec for name, spec in opt.items() if name.endswith("/" + w1)}
  assert followers and all(spec == params[w1] for spec in followers.values())
  assert all(spec == P() for name, spec in opt.items() if name.endswith("count"))
  assert set(_specs(specs.memory).values()) == {P(("data", "fsdp"))}
  assert specs.step.spec == P() and specs.key.spec == P()


def test_lanes_split_over_data_and_the_rules_apply_within_a_lane():
  learner = build_learner(tiny_config("linear_attention"))
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  state = jax.eval_shape(jax.vmap(learner.init), keys)
  specs = state_sharding(state, make_mesh(MeshConfig(data=2, fsdp=4)), lanes=True)
  assert _specs(specs.params)["embed"] == P("data", "fsdp", None)
  assert set(_specs(specs.memory).values()) == {P("data", "fsdp")}


def test_init_under_jit_places_each_leaf_with_its_sharding_and_the_same_values():
  cfg = tiny_config("swa")
  learner = build_learner(cfg)
  mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
  state = engine.init(learner, jax.random.PRNGKey(3), mesh=mesh)
  expected = state_sharding(state, mesh)
  for leaf, sharding in zip(jax.tree.leaves(state), jax.tree.leaves(expected), strict=True):
    assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
  w1 = state.params["blocks"][0]["ff"]["w1"]
  assert {s.data.shape for s in w1.addressable_shards} == {(32 // 4, 64 // 2)}  # each device holds 1/8
  plain = jax.jit(learner.init)(jax.random.PRNGKey(3))  # the same program on one device
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(plain), strict=True):
    if not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_fsdp_and_tensor_parallel_runs_equal_the_data_parallel_run(tmp_path):
  cfg = with_fields(tiny_config("swa", cms_periods=(1, 2)), train=dict(tokens=1500))
  plain = train(cfg, tmp_path / "data", progress=False)
  sharded = train(with_fields(cfg, mesh=dict(data=1, fsdp=4, tensor=2)), tmp_path / "fsdp", progress=False)
  losses = [[json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").open()] for d in ("data", "fsdp")]
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
  assert sharded["mesh"] == {"data": 1, "fsdp": 4, "tensor": 2} and plain["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}


def test_optax_state_of_a_user_rule_follows_the_parameters():
  params = {"dense": {"kernel": np.zeros((64, 32), np.float32)}, "bias": np.zeros((32,), np.float32)}
  opt_state = optax.adamw(1e-3).init(params)
  state = new_state(params, opt_state, jax.random.PRNGKey(0))
  specs = state_sharding(state, make_mesh(MeshConfig(data=2, fsdp=4)))
  opt = _specs(specs.opt_state)
  assert opt["0/mu/dense/kernel"] == P("fsdp", None) == _specs(specs.params)["dense/kernel"]
  assert opt["0/nu/bias"] == P(None)


@pytest.mark.slow
def test_seeds_as_lanes_on_an_fsdp_mesh_equal_lanes_on_one_device():
  cfg = tiny_config("linear_attention")
  learner = build_learner(cfg)
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  stream = DocumentLanes(
    split_bytes(b"the quick brown fox jumps over the lazy dog. " * 40, 8), steps=4, batch=8, seq=16
  )
  chunk, _ = stream.next(stream.start())
  losses = []
  for mesh in (None, make_mesh(MeshConfig(data=2, fsdp=4))):
    state = engine.init(learner, keys, mesh=mesh, lanes=True)
    if mesh is not None:
      assert state.params["embed"].sharding.spec == P("data", "fsdp", None)
    state, metrics = engine.compile(learner, state, mesh=mesh, lanes=True)(
      state, engine.place_xs(chunk, mesh, lanes=True)
    )
    losses.append(np.asarray(metrics.nll))
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
