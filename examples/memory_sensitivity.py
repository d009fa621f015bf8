"""How far a change of a self-modifying memory's initial memories reaches along the sequence, at initialisation.

For each model of nl_niah with a self-modifying mixer (`MODELS`: hope,
hope_plain), each initialisation seed's byte LM is drawn as the
experiment's lanes draw it (`engine.seed_keys`, then the learner's
`init`). Its first layer's first head then reads the needle task's
training haystack (the bytes through the model's embedding, the mixer's
input norm, [input projection] and causal convolution:
`hope.head_inputs`) token by token (`self_modifying.reference`), and a
forward-mode derivative gives, at every token t, `|dy_t|`: how much the
head's read y_t [Dh] moves when all its initial memories M_0 (the
weights of every memory at once, the offsets that `decay_to_init`
learns) move along one random direction of unit norm, as the outer loop
differentiates (with `self_values_grad=false` that derivative leaves
out the path through the self-generated targets, so it is the outer
loop's view of the reads, not their whole change). Flat in t, a change
of M_0 reaches the reads at the same size all along; growing
geometrically, every write amplifies it, and the outer gradient that
reaches M_0 back through the writes grows with the length of the
sequence. Prints, per model and seed, `|dy_t|` at tokens 16, 64, 128,
192, 256 and `--tokens`, and its growth per token: the slope of
log |dy_t| over the second half of the tokens (0: flat; 0.03: about
20-fold every 100 tokens).

    python examples/memory_sensitivity.py
    python examples/memory_sensitivity.py --models hope_plain --set hope_plain.self_values=true
    python examples/memory_sensitivity.py --models hope_plain --set hope_plain.self_values=true \\
        --set hope_plain.lr_scale=32

`--set LABEL.FIELD=VALUE` sets a field of that model's mixer. Which
route a change takes: `--move mem` (names among the mixer's memories,
k, v, eta, alpha, [momentum], mem) moves only those memories' initial
weights, and `--hold k,v,rates` makes the derivative see those generated
quantities as constants at every token (`self_modifying.reference`'s
`held`), so that, for example, `--move mem` alone follows the main
memory's own recursion and `--move k,v,eta,alpha --hold k,v,rates`
gives zero. Prints one line per model and seed, then the JSON of every
value.

    python examples/memory_sensitivity.py --models hope_plain --set hope_plain.self_values=true \\
        --move mem
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from contlearn import catalog, engine
from contlearn.errors import ConfigError
from contlearn.learner import sequence_learner
from contlearn.memories import MemState
from contlearn.memories import self_modifying as sm
from contlearn.models import byte_lm
from contlearn.models.hope import SelfModifyingTitansConfig, head_inputs
from contlearn.models.hope import spec as hope_spec

NIAH = catalog.load(str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "nl_niah.py"))
SHOWN = (16, 64, 128, 192, 256)  # tokens printed besides the last


def first_head_inputs(params, mcfg, tokens: np.ndarray) -> jax.Array:
  """What the first layer's first head reads of `tokens` [T] (`hope.head_inputs` of their embedding, the
  convolution from an empty cache), [T, Dh]."""
  mixer = params["blocks"][0]["mixer"]
  x = params["embed"][jnp.asarray(tokens)][None]
  cache = jnp.zeros((1, mixer["conv"].shape[0] - 1, x.shape[-1]), x.dtype)
  return head_inputs(mcfg.mixer, mcfg, mixer, cache, x)[2][0, 0]


def unit_direction(tree, key: jax.Array, keep: np.ndarray | None = None):
  """A random direction in the space of `tree`'s leaves (normal entries; zero along the leaves' leading axis
  where `keep` [N] is false), scaled to unit global norm."""
  leaves, treedef = jax.tree.flatten(tree)
  u = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(jax.random.split(key, len(leaves)), leaves)]
  if keep is not None:
    u = [a * jnp.asarray(keep, a.dtype).reshape((-1,) + (1,) * (a.ndim - 1)) for a in u]
  norm = jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in u))
  return jax.tree.unflatten(treedef, [a / norm for a in u])


def initial_memory_direction(spec: sm.SelfModifying, w0, key: jax.Array, moved: tuple[str, ...] | None = None):
  """A random unit direction of the initial memories `w0` (`{"w": [...], "b": [...]}`, leading [N] in the
  order of `spec.names`): over the weights of the memories named in `moved` (default: all), and their biases
  where the memories have them (zero on biases they do not use and on the other memories)."""
  moved = spec.names if moved is None else moved
  if not moved or not set(moved) <= set(spec.names):
    raise ConfigError(f"moved memories {','.join(moved)}: choose among {','.join(spec.names)}")
  keep = np.array([name in moved for name in spec.names])
  tree = w0 if spec.rule.model.bias else {"w": w0["w"]}
  return {**jax.tree.map(jnp.zeros_like, w0), **unit_direction(tree, key, keep)}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _read_tangents(spec: sm.SelfModifying, held: tuple[str, ...], head_params, x: jax.Array, direction):
  zeros = jax.tree.map(jnp.zeros_like, head_params["w0"])  # the written part and the momenta start at zero
  mask = jnp.ones(x.shape[:1], bool)
  reads = lambda w0: sm.reference(spec, {**head_params, "w0": w0}, MemState(zeros, zeros), x, mask, held)[0]
  return jax.jvp(reads, (head_params["w0"],), (direction,))[1]


def read_sensitivity(spec: sm.SelfModifying, head_params, x: jax.Array, direction, held=()) -> np.ndarray:
  """`|dy_t|` [T]: the norm of the derivative of one head's reads of `x [T, Dh]` along `direction`, a tangent
  of its initial memories `head_params["w0"]`, as the outer loop differentiates (with `self_values_grad` off,
  without the path through the self-generated targets), with the generated quantities named in `held`
  (`self_modifying.HELD`) seen as constants."""
  return np.asarray(jnp.linalg.norm(_read_tangents(spec, tuple(held), head_params, x, direction), axis=-1))


def growth_per_token(dy: np.ndarray) -> float:
  """The slope of log |dy_t| over the second half of the tokens (a least-squares line; float64)."""
  half = len(dy) // 2
  logs = np.log(np.maximum(np.asarray(dy[half:], np.float64), 1e-300))
  return float(np.polyfit(np.arange(half, len(dy)), logs, 1)[0])


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  NIAH.add_model_options(parser, "hope,hope_plain")
  parser.add_argument("--tokens", type=int, default=1024, help="haystack bytes read (> 256)")
  parser.add_argument("--move", default="", help="memories whose initial weights the direction moves (default: all)")
  parser.add_argument("--hold", default="", help=f"generated quantities seen as constants: of {','.join(sm.HELD)}")
  args = parser.parse_args(argv)
  if args.tokens <= SHOWN[-1]:
    raise ConfigError(f"--tokens={args.tokens} must be above {SHOWN[-1]}")
  moved = tuple(args.move.split(",")) if args.move else None
  held = tuple(args.hold.split(",")) if args.hold else ()
  if not set(held) <= set(sm.HELD):
    raise ConfigError(f"--hold={args.hold}: choose among {','.join(sm.HELD)}")
  cfg = NIAH.resolved(NIAH.get_config())
  models, seeds = NIAH.chosen_models(args, cfg.base, window=cfg.length)
  hay, _ = NIAH.haystacks()
  tokens = np.frombuffer(hay[: args.tokens], np.uint8)
  shown = (*SHOWN, args.tokens)
  result = {}
  for label, mcfg in models.items():
    if not isinstance(mcfg.mixer, SelfModifyingTitansConfig):
      raise ConfigError(f"{label}: mixer {mcfg.mixer.name!r} has no self-modifying memories")
    spec = hope_spec(mcfg.mixer, mcfg)
    learner = sequence_learner(byte_lm(mcfg), optax.identity(), cfg.batch, carry_memory=False)
    rows = []
    for seed, key in zip(seeds, engine.seed_keys(seeds)):
      params = learner.init(key).params
      head = jax.tree.map(lambda a: a[0], params["blocks"][0]["mixer"]["sm"])
      if "w0" not in head:
        raise ConfigError(f"{label}: the initial memories are outer parameters only with model.mixer.decay_to_init")
      direction = initial_memory_direction(spec, head["w0"], jax.random.fold_in(key, 1), moved)
      dy = read_sensitivity(spec, head, first_head_inputs(params, mcfg, tokens), direction, held)
      at = {t: float(dy[t - 1]) for t in shown}
      rows.append({"seed": seed, "dy_at": at, "growth_per_token": growth_per_token(dy)})
      values = ", ".join(f"{t}: {v:.3g}" for t, v in at.items())
      print(f"{label} seed {seed}: |dy_t| at t = {values}; growth {rows[-1]['growth_per_token']:.4f} a token")
    result[label] = rows
  options = {"seeds": seeds, "tokens": args.tokens, "settings": args.set, "moved": moved, "held": held}
  print(json.dumps({**options, "models": result}))
  return result


if __name__ == "__main__":
  main()
