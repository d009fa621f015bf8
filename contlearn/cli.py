"""The command line: run, describe and list experiments.

    contlearn run [NAME] [--set KEY=VALUE ...] [--tokens N] [--out DIR] [--resume] [--only NAMES] [--no-progress]
                  [--compile-cache DIR|off]
    contlearn run NAME --help     the experiment's command, runtime and every config field (after any --set)
    contlearn list                the experiments
    contlearn --version

Every experiment follows one protocol (see `contlearn.catalog`): `--set`
applies to whatever its `get_config()` returns (to each model of a dict of
configs; a mixer's field `model.mixer.FIELD` to each model whose mixer has
it), `--only` picks models, and the experiment's `run` (or the stream
driver) runs the result.

Every user-facing problem ends the program with one line that names it and
an exit status (`contlearn.errors`): 2 for what was asked (an unknown
experiment or key, a bad value, tokens outside the vocabulary, an empty or
unreadable stream, a checkpoint of another run, a folder another process
writes), 3 for a run that diverged (a non-finite loss or state), 4 for
outputs that cannot be written (a full disk, a read-only or non-folder
`--out`), 130 for SIGTERM or Ctrl-C. The first signal ends the run at the
next chunk boundary with a checkpoint; a second stops at once. Either way the
last line says which checkpoint `--resume` will continue from.

Several processes (`--coordinator HOST:PORT --num-processes N --process-id I`,
or `--distributed` on a cluster JAX detects; `contlearn.processes`) join
before anything else runs. The signal handlers are installed after that, so
they, not JAX's preemption notifier, receive SIGTERM; a signal to any process
stops every process at the same chunk boundary, because the processes agree
on every stop before each chunk. A process that dies ends the others after
`--heartbeat-timeout` seconds with a non-zero status; `--resume` continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib.metadata
import os
import pathlib
import signal
import sys
import threading
from types import ModuleType
from typing import Any, NoReturn

from contlearn import catalog, compile_cache, processes, provenance
from contlearn.errors import INTERRUPTED_EXIT_CODE, ConfigError, ContlearnError, OutputError
from contlearn.lock import OutputLock


def stop_event() -> threading.Event:
  """The event a run polls between chunks; the first SIGTERM or Ctrl-C sets it."""
  from contlearn.loop import STOP  # the one place that names the run loop's stop event

  return STOP


def version() -> str:
  """The installed distribution's version, else the package's `__version__`."""
  try:
    return importlib.metadata.version("contlearn")
  except importlib.metadata.PackageNotFoundError:
    import contlearn

    return getattr(contlearn, "__version__", "unknown")


#### Arguments ####


class _Parser(argparse.ArgumentParser):
  """An argument parser whose errors are one line and exit status 2, like every other user error."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f"contlearn: error: {message} (see {self.prog} --help)\n")


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
  """The top-level parser and its `run` sub-parser (whose help describes an experiment)."""
  parser = _Parser(
    prog="contlearn",
    description=__doc__.splitlines()[0],
    epilog="`contlearn run NAME --help` shows an experiment's command, runtime and config fields.",
  )
  parser.add_argument("--version", action="version", version=f"contlearn {version()}")
  commands = parser.add_subparsers(dest="command", required=True, metavar="{run,list}")
  run = commands.add_parser(
    "run",
    help=f"run an experiment (default: {catalog.DEFAULT})",
    add_help=False,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  run.add_argument(
    "experiment",
    nargs="?",
    default=None,
    metavar="NAME",
    help=f"an experiment of `contlearn list` or a .py path (default: {catalog.DEFAULT})",
  )
  run.add_argument("-h", "--help", action="store_true", help="describe the experiment and its config fields; exit")
  run.add_argument(
    "--set",
    dest="overrides",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="override a config field, e.g. --set model.d_model=256 (repeatable)",
  )
  run.add_argument(
    "--tokens",
    type=int,
    default=None,
    metavar="N",
    help="stream experiments: stop each model after N tokens (sets train.tokens)",
  )
  run.add_argument("--out", default=None, help="output folder (default: runs/NAME)")
  run.add_argument("--resume", action="store_true", help="continue from the latest checkpoints in --out")
  run.add_argument(
    "--only",
    default=None,
    metavar="NAMES",
    help="run only these models (comma-separated) of an experiment with several",
  )
  run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  run.add_argument(
    "--compile-cache",
    default=None,
    metavar="DIR|off",
    help=f"compiled programs kept for the next run (default: ${compile_cache.ENV}, else ~/.cache/contlearn/jax)",
  )
  several = run.add_argument_group(
    "several processes",
    "every process runs the same command with its own --process-id (or the CONTLEARN_* environment variables); "
    "process 0 writes the logs, every process writes its checkpoint shards into the same --out",
  )
  several.add_argument(
    "--coordinator", default=None, metavar="HOST:PORT", help=f"process 0's address (env {processes.ENV['coordinator']})"
  )
  several.add_argument(
    "--num-processes", type=int, default=None, metavar="N", help=f"processes (env {processes.ENV['num_processes']})"
  )
  several.add_argument(
    "--process-id", type=int, default=None, metavar="I", help=f"this process (env {processes.ENV['process_id']})"
  )
  several.add_argument(
    "--distributed",
    action="store_true",
    help="let JAX detect the cluster (a TPU pod slice, SLURM, Open MPI)",
  )
  several.add_argument(
    "--heartbeat-timeout",
    type=int,
    default=60,
    metavar="S",
    help="the others end this many seconds after a process stops answering (default 60)",
  )
  several.add_argument(
    "--init-timeout", type=int, default=300, metavar="S", help="seconds to wait for every process (default 300)"
  )
  commands.add_parser("list", help="list the experiments")
  return parser, run


#### Preparing the configuration ####


def _select_models(cfg: Any, only: str, name: str) -> Any:
  """`--only a,b`: those models of a dict of configs, or the config's `models` field set to them."""
  wanted = [m.strip() for m in only.split(",") if m.strip()]
  if isinstance(cfg, dict):
    choices = list(cfg)
  elif dataclasses.is_dataclass(cfg) and isinstance(getattr(cfg, "models", None), tuple):
    choices = list(cfg.models)
  else:
    raise ConfigError(f"--only {only}: {name} has no models to choose from")
  unknown = [m for m in wanted if m not in choices]
  if unknown or not wanted:
    hint = catalog.did_you_mean(unknown[0], choices) if unknown else ""
    raise ConfigError(f"--only {only}: {hint}{name} has the models {', '.join(choices)}")
  if isinstance(cfg, dict):
    return {m: cfg[m] for m in wanted}
  return dataclasses.replace(cfg, models=tuple(wanted))


def _apply_tokens(cfg: Any, tokens: int, name: str) -> Any:
  """`--tokens N`: sets `train.tokens` of each stream config."""
  if tokens < 1:
    raise ConfigError(f"--tokens {tokens}: must be a positive number of tokens")
  if not catalog.is_stream_config(cfg):
    raise ConfigError(
      f"--tokens is for stream experiments; set the length of {name} with --set KEY=VALUE "
      f"(its keys: contlearn run {name} --help)"
    )
  with_tokens = lambda c: dataclasses.replace(c, train=dataclasses.replace(c.train, tokens=tokens))  # noqa: E731
  return {k: with_tokens(c) for k, c in cfg.items()} if isinstance(cfg, dict) else with_tokens(cfg)


def configure(
  module: ModuleType, name: str, *, overrides: list[str], tokens: int | None = None, only: str | None = None
) -> Any:
  """The experiment's `get_config()` with `--only`, `--set` and `--tokens` applied, in that order."""
  from contlearn.overrides import apply_overrides, apply_overrides_to_models

  cfg = module.get_config()
  if not (catalog.is_stream_config(cfg) or (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type))):
    raise ConfigError(
      f"experiment {name}: get_config() returned a {type(cfg).__name__}; expected a frozen "
      "dataclass, a contlearn.config.Config or a dict of them"
    )
  if only is not None:
    cfg = _select_models(cfg, only, name)
  if isinstance(cfg, dict):
    cfg = apply_overrides_to_models(cfg, overrides)
  else:
    cfg = apply_overrides(cfg, overrides)
  if tokens is not None:
    cfg = _apply_tokens(cfg, tokens, name)
  return cfg


#### Commands ####


def _run(args: argparse.Namespace, run_parser: argparse.ArgumentParser) -> int:
  from contlearn import driver

  experiment = args.experiment or catalog.DEFAULT
  name = catalog.name_of(experiment)
  module = catalog.load(experiment)
  if args.help:  # the configuration as --only and --set leave it
    cfg = configure(module, name, overrides=args.overrides, only=args.only)
    run_parser.description = catalog.describe(name, module, cfg)
    print(run_parser.format_help())
    return 0
  cfg = configure(module, name, overrides=args.overrides, tokens=args.tokens, only=args.only)
  runner = getattr(module, "run", None)
  if runner is None:
    if not catalog.is_stream_config(cfg):
      raise ConfigError(
        f"experiment {name} returns a {type(cfg).__name__} from get_config() but defines no "
        "run(cfg, out, *, resume, progress)"
      )
    runner = driver.run_experiment
    cfg = cfg if isinstance(cfg, dict) else {name: cfg}
  out = pathlib.Path(args.out or f"runs/{name}")
  with OutputLock(out):
    provenance.record(out, name, args.argv)
    try:
      result = runner(cfg, out, resume=args.resume, progress=not args.no_progress)
    except BaseException as e:
      _record_end_of_failed_run(out, e)
      raise
    interrupted = stop_event().is_set()  # a signal came as the run ended
    provenance.record_end(out, INTERRUPTED_EXIT_CODE if interrupted else 0)
  if interrupted:
    interrupt = KeyboardInterrupt()
    interrupt.resume_note = f"the run had ended; its outputs in {out} are complete"
    raise interrupt
  if not processes.is_writer():
    return 0
  report = getattr(module, "report", driver.summary_table if catalog.is_stream_config(cfg) else None)
  if report is not None:
    print(report(result))
  print(f"outputs in {out}/")
  return 0


def _list() -> int:
  found = catalog.available()
  if not found:
    print("no experiments found")
    return 0
  width = max(len(n) for n in found)
  for name in found:
    try:
      line = catalog.summary_line(catalog.load(name))
    except ContlearnError as e:
      line = f"(cannot load: {e})"
    print(f"{name:<{width}}  {line}")
  return 0


def exit_status(error: BaseException) -> int:
  """The status `main` exits with for `error`: a ContlearnError's own, 4 for an output it could not write
  (an OSError), 130 for a signal; 1 for anything else (Python's status for an uncaught error)."""
  if isinstance(error, ContlearnError):
    return error.exit_code
  if isinstance(error, OSError):
    return OutputError.exit_code
  return INTERRUPTED_EXIT_CODE if isinstance(error, KeyboardInterrupt) else 1


def _record_end_of_failed_run(out: pathlib.Path, error: BaseException) -> None:
  """Adds to run.json the status the run is about to exit with. If run.json cannot be written (a full disk),
  the run's last line names the first error, not this one."""
  try:
    provenance.record_end(out, exit_status(error))
  except (OSError, ValueError, KeyError, IndexError):
    pass


def _stop_at_chunk_boundary(signum: int, frame: object) -> None:
  """SIGTERM or Ctrl-C: finish the chunk, checkpoint, exit. A second signal stops at once."""
  del signum, frame
  stop = stop_event()
  if stop.is_set():
    raise KeyboardInterrupt
  stop.set()


def _interrupted_line(e: KeyboardInterrupt) -> str:
  """What an interrupt leaves: which checkpoint `--resume` continues from."""
  where = getattr(e, "resume_note", None)
  return f"contlearn: interrupted; {where}" if where else "contlearn: interrupted before any run had started"


def _cluster(args: argparse.Namespace) -> processes.Cluster:
  """The processes of the run, from the flags and the environment."""
  return processes.cluster_from(
    args.coordinator,
    args.num_processes,
    args.process_id,
    detect=args.distributed,
    heartbeat_timeout=args.heartbeat_timeout,
    init_timeout=args.init_timeout,
  )


def main(argv: list[str] | None = None) -> int:
  """Runs the command line `argv` (default: `sys.argv[1:]`); returns the exit status."""
  parser, run_parser = _parser()
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parser.parse_args(argv)
  args.argv = argv
  if args.command == "run":  # before any other JAX call, and before the signal handlers (module docstring)
    try:
      processes.initialize(_cluster(args))
    except ContlearnError as e:
      print(f"contlearn: error: {e}", file=sys.stderr)
      return e.exit_code
    compile_cache.enable(compile_cache.folder(args.compile_cache))
  stop_event().clear()
  handled = (signal.SIGTERM, signal.SIGINT)
  on_main_thread = threading.current_thread() is threading.main_thread()
  previous = {s: signal.signal(s, _stop_at_chunk_boundary) for s in handled} if on_main_thread else {}
  try:
    return _run(args, run_parser) if args.command == "run" else _list()
  except ContlearnError as e:
    print(f"contlearn: error: {e}", file=sys.stderr)
    return exit_status(e)
  except OSError as e:  # an output the run could not write (a data file it could not read is a DataError)
    reason = "no space left on device" if e.errno == errno.ENOSPC else e.strerror or str(e)
    print(f"contlearn: error: cannot write {e.filename or 'an output'}: {reason}", file=sys.stderr)
    return exit_status(e)
  except KeyboardInterrupt as e:
    print(_interrupted_line(e), file=sys.stderr)
    return exit_status(e)
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def entry() -> None:
  """The console command: `main`, then exit. After an interrupt or an output
  that could not be written (a full disk) the process ends without the
  interpreter's teardown, which can crash on, or print the late errors of, the
  checkpoint library's and the prefetcher's threads still winding down (a
  failed save's unfinished writes); the run's hooks have closed their files."""
  code = main()
  if code in (INTERRUPTED_EXIT_CODE, OutputError.exit_code):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
  sys.exit(code)


if __name__ == "__main__":
  entry()
