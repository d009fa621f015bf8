"""Named model variants for comparisons, chosen by name on the command line.

An experiment keeps a table `{label: {ModelConfig field: value}}` on top of
a base `ModelConfig`, a variant's mixer settings as its mixer's config:

    MODELS = {
      "transformer": {"mixer": SlidingWindowConfig(window=256), "mlp_ratio": 5},
      "titans": {"mixer": TitansConfig(expansion=2, chunk=16)},
    }

`select(table, names, base)` returns `{label: ModelConfig}` for the names
asked; a name is a label of the table, any registered mixer (at its
defaults, or at the base's settings when the base already holds that mixer,
so `--set base.mixer=ttt_mlp --set base.mixer.chunk=8 --set models=ttt_mlp`
runs a mixer setting no label of the table has) or `base`, the base exactly
as set. A label comes with its own settings: asking for a label whose mixer
the base holds at other settings (`--set base.mixer=titans --set
base.mixer.chunk=8 --set models=titans` where "titans" is a label) is
refused, since the base's settings would be ignored; `--set models=base`
runs them. A variant whose mixer is named by a string that is not registered
in this version is skipped with a printed note, so a table may name a
mixer before it exists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.mixer_configs import mixer_names

BASE = "base"  # the name that runs the base ModelConfig as set


def select(
  table: Mapping[str, Mapping[str, Any]],
  names: Sequence[str],
  base: ModelConfig,
  note: Callable[[str], None] = print,
) -> dict[str, ModelConfig]:
  """The ModelConfigs of `names` (labels of `table`, mixer names or `BASE`), known mixers only."""
  if BASE in table:
    raise ConfigError(f"a table label may not be {BASE!r}: the name runs the base as set")
  known = set(mixer_names())
  chosen = {}
  for name in names:
    if name == BASE:
      fields = {}
    elif name in table:
      fields = dict(table[name])
    elif name in known:
      fields = {} if base.mixer.name == name else {"mixer": name}
    else:
      raise ConfigError(
        f"unknown model {name!r}; choose from {', '.join(table)}, {BASE} (the base as set) or a mixer: "
        f"{', '.join(sorted(known))}"
      )
    if isinstance(fields.get("mixer"), str) and fields["mixer"] not in known:
      note(f"skipping {name}: mixer {fields['mixer']!r} is not in this version of contlearn")
      continue
    chosen[name] = dataclasses.replace(base, **fields)
    mixer = chosen[name].mixer
    if name in table and mixer.name == name == base.mixer.name and mixer != base.mixer:
      raise ConfigError(
        f"model {name!r} is a label of this experiment's table with its own settings ({mixer}); the base's "
        f"{name} settings ({base.mixer}) would be ignored: drop them (a label runs its table entry), or ask for "
        f"models={BASE} to run the base as set"
      )
  return chosen
