"""`contlearn run [EXPERIMENT] [--set key=value ...] [--tokens N] [--out DIR] [--resume]`
and `contlearn list`.

Stream experiments (a `Config` per model) are driven here; experiments with
their own driver (continual-learning benchmarks, MQAR) take their options
after `--`: `contlearn run cl_baselines -- --full`.

Every user-facing problem (unknown experiment or key, a bad value, tokens
outside the vocabulary, an empty stream, a missing or corrupt checkpoint)
ends the program with exit status 2 and one line that names it.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import sys
import threading

from contlearn.errors import ContlearnError


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="contlearn", description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True)
  run = commands.add_parser("run", help="run an experiment (default: byte_lm)")
  run.add_argument("experiment", nargs="?", default=None, help="name in experiments/ or a .py path")
  run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set model.d_model=256 (repeatable)")
  run.add_argument("--tokens", type=int, default=None, help="stop each model after N stream tokens")
  run.add_argument("--out", default=None, help="output folder (default: runs/<experiment>)")
  run.add_argument("--resume", action="store_true", help="continue from the latest checkpoints in --out")
  run.add_argument("--only", default=None, metavar="NAMES",
                   help="run only these models of a multi-model experiment (comma-separated)")
  run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  commands.add_parser("list", help="list the experiments")
  return parser


def _run(args) -> int:
  from contlearn import driver, experiments
  from contlearn.config import apply_overrides

  module = experiments.load(args.experiment or experiments.DEFAULT)
  name = pathlib.Path(args.experiment or experiments.DEFAULT).stem
  configs = module.get_config()
  if not experiments.is_stream_experiment(configs):
    return _run_script(module, name, args)
  if args.passthrough:
    raise ContlearnError(f"{name} takes no options after --; use --set key=value")
  if not isinstance(configs, dict):
    configs = {name: configs}
  if args.only is not None:
    wanted = [m for m in args.only.split(",") if m]
    unknown = [m for m in wanted if m not in configs]
    if unknown or not wanted:
      raise ContlearnError(f"--only {args.only}: {name} has the models {', '.join(configs)}")
    configs = {m: configs[m] for m in wanted}
  configs = {k: apply_overrides(c, args.overrides) for k, c in configs.items()}
  if args.tokens is not None and args.tokens < 1:
    raise ContlearnError(f"--tokens {args.tokens}: must be a positive number of tokens")
  out = args.out or f"runs/{name}"
  runner = getattr(module, "run", driver.run_experiment)
  summaries = runner(configs, out, resume=args.resume, tokens=args.tokens, progress=not args.no_progress)
  report = getattr(module, "report", driver.summary_table)
  print(report(summaries))
  print(f"outputs in {out}/")
  return 0


def _run_script(module, name: str, args) -> int:
  """An experiment with its own driver (`main()`), given the options after `--`."""
  stream_only = [flag for flag, used in (("--set", args.overrides), ("--tokens", args.tokens is not None),
                                         ("--out", args.out), ("--resume", args.resume),
                                         ("--only", args.only is not None)) if used]
  if stream_only:
    raise ContlearnError(
        f"{name} has its own options ({' '.join(stream_only)} are for stream experiments); "
        f"pass them after --, e.g. contlearn run {name} -- --help"
    )
  if not hasattr(module, "main"):
    raise ContlearnError(f"experiment {name} defines neither a stream Config nor main()")
  saved = sys.argv
  sys.argv = [f"contlearn run {name} --", *args.passthrough]
  if threading.current_thread() is threading.main_thread():  # no chunk boundary to wait for: stop now
    for sig in (signal.SIGTERM, signal.SIGINT):
      signal.signal(sig, _stop_now)
  try:
    module.main()
  except KeyboardInterrupt:
    print(f"contlearn: interrupted; {name} keeps only the outputs it had written (its own options say if it resumes)",
          file=sys.stderr)
    return 130
  finally:
    sys.argv = saved
  return 0


def _list() -> int:
  from contlearn import experiments

  found = experiments.available()
  if not found:
    print(f"no experiments in {experiments.experiments_dir()}")
    return 0
  width = max(len(n) for n in found)
  for name in found:
    try:
      line = experiments.summary_line(experiments.load(name))
    except ContlearnError as e:
      line = f"(cannot load: {e})"
    print(f"{name:<{width}}  {line}")
  return 0


def _stop_now(signum, frame):
  del signum, frame
  raise KeyboardInterrupt


def _stop_at_chunk_boundary(signum, frame):
  """SIGTERM or Ctrl-C: finish the chunk, checkpoint, exit. A second Ctrl-C stops at once."""
  from contlearn import loop

  del frame
  if loop.STOP.is_set() and signum == signal.SIGINT:
    raise KeyboardInterrupt
  loop.STOP.set()


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  own, passthrough = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
  args = _parser().parse_args(own)
  args.passthrough = passthrough
  from contlearn import loop

  loop.STOP.clear()
  handled = (signal.SIGTERM, signal.SIGINT)
  on_main_thread = threading.current_thread() is threading.main_thread()
  previous = {s: signal.signal(s, _stop_at_chunk_boundary) for s in handled} if on_main_thread else {}
  try:
    return _run(args) if args.command == "run" else _list()
  except ContlearnError as e:
    print(f"contlearn: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("contlearn: interrupted; the latest state was checkpointed (--resume continues)", file=sys.stderr)
    return 130
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


if __name__ == "__main__":
  sys.exit(main())
