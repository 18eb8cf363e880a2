"""What every LiteECG script shares at its edge: the one-line user errors and the CLI wrapper.

    def main(argv=None) -> int:
        return run_cli("predict.py", lambda: body(build_parser().parse_args(argv)))

A user error is never a traceback: `run_cli` prints ``prog: error: <one line>`` on stderr and
returns 2 for a bad command line or bad data (`UsageError`, `DataError`), 1 for an output that
could not be written (`OutputError`) or a run that cannot go on (`RunError`: a process of a
distributed run failed), 130 for Ctrl-C, and 141 quietly when the reader of its output went away
(`| head`), as a Unix tool killed by SIGPIPE does. Imports no torch: summarize.py uses it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Callable


class UsageError(Exception):
    """A bad command line or a bad file given on it: one line, exit code 2."""


class DataError(Exception):
    """A user-facing data problem (missing files, bad records, ...): one line, exit code 2."""


class OutputError(Exception):
    """An output file could not be written (disk full, permission denied): one line, exit 1."""


class RunError(Exception):
    """A run that cannot go on for a reason outside its input (another process of a distributed
    run failed, or torchrun stopped this one): one line, exit code 1."""


class CliParser(argparse.ArgumentParser):
    """argparse whose errors are one UsageError line instead of usage + message + exit."""

    def error(self, message: str):
        raise UsageError(f"{message} (see --help)")


def try_write(folder: str | os.PathLike) -> None:
    """Create and remove a file in `folder`; raises OSError when this process cannot write there.
    Tried, not asked: os.access says yes to root even on a read-only folder."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".liteecg-write-test-"):
        pass


def log(msg: str) -> None:
    """Progress line, flushed: it must show through pipes (tee in run_all_models.sh)."""
    print(msg, flush=True)


def run_cli(prog: str, body: Callable[[], int], user_errors: bool = True) -> int:
    """Run a CLI body: every user error becomes one line on stderr and a non-zero exit.
    `user_errors=False`: a bad command line or bad data exits 2 without the line (the other
    processes of a distributed run on one machine: they read the same arguments and data as the
    one that says it)."""
    try:
        return body()
    except (UsageError, DataError) as e:
        if user_errors:
            print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except (OutputError, RunError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `| head` closed the pipe: not an error of the program's
        # stdout still holds unwritten text; point it at /dev/null so the flush at exit cannot
        # raise the same error again as an 'Exception ignored' message
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file descriptor (e.g. captured)
            pass
        return 141


def resolve_device(name: str, log: Callable[[str], None] = log):
    """torch.device: cuda when asked and present; otherwise cpu, saying so."""
    import torch
    if name == "cuda" and not torch.cuda.is_available():
        log("CUDA is not available on this machine: running on CPU")
        return torch.device("cpu")
    return torch.device(name)
