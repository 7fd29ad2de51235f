"""The ``ra-model`` command line: parses arguments, calls the library, writes files, returns an exit code.

Each module in this package adds its own sub-commands through a ``register(sub)`` function; modules are
found automatically, so a new command group is a new file here. Only this package touches ``argv`` and
output paths.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from ra_model.errors import RAModelError, SimulationFailedError

log = logging.getLogger("ra_model.cli")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``ra-model`` with every command module's sub-commands."""
    parser = argparse.ArgumentParser(prog="ra-model", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    for name in ["core", *(n for n in names if n != "core")]:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    for command in sub.choices.values():  # -v also after the command (`ra-model phenotypes -v`)
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ra-model``; return the exit code.

    0 ok; 1 the simulation failed or memory ran out; 2 bad input (names, values, files, paths); 3 an
    internal error (a bug: one line, the traceback with ``-v``); 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        return int(args.func(args))
    except argparse.ArgumentTypeError as exc:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"ra-model: error: {exc}\n")
        return 2
    except RAModelError as exc:
        sys.stderr.write(f"ra-model: error: {exc}\n")
        return 1 if isinstance(exc, SimulationFailedError) else 2
    except OSError as exc:  # an output path that is a file, read-only, on a full disk, ...
        where = f" {exc.filename}" if exc.filename else ""
        sys.stderr.write(
            f"ra-model: error: cannot read or write{where}: {exc.strerror or exc}; "
            "check the path (--out must be a folder you can write to) and the free disk space\n"
        )
        return 2
    except MemoryError:
        sys.stderr.write("ra-model: error: out of memory; run fewer days, a coarser output step or fewer samples\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("ra-model: interrupted; finished sweep chunks are kept, rerun with the same --out\n")
        return 130
    except Exception as exc:  # a bug: say so in one line, keep the traceback for -v
        log.info("internal error", exc_info=True)
        sys.stderr.write(
            f"ra-model: internal error: {type(exc).__name__}: {exc}; this is a bug in ra_model, please report it "
            "(rerun with -v to see the traceback)\n"
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
