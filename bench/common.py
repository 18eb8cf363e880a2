"""What the benchmark scripts share: the repository on sys.path, the --root flag, the machine line.

Imported first by every bench/*.py (run as ``python bench/NAME.py``, so this folder is on sys.path).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli import run_cli  # noqa: E402
from config import DATA_DEFAULTS  # noqa: E402
from report import cpu_name  # noqa: E402


def run_script(main: Callable[[], int]) -> None:
    """A bench script's entry point: cli.run_cli's one-line user errors and a quiet exit when
    its output is piped into `head`."""
    sys.exit(run_cli("bench/" + Path(sys.argv[0]).name, main))


def parser(doc: str, root: bool = True) -> argparse.ArgumentParser:
    """argparse described by the script's docstring, with --root when the script reads records."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    if root:
        default = os.environ.get("MITBIH_DIR", DATA_DEFAULTS["root"])
        ap.add_argument("--root", default=default,
                        help=f"MIT-BIH folder (default: $MITBIH_DIR or {DATA_DEFAULTS['root']})")
    return ap


def machine(cores: int | None = None, extra: str = "") -> str:
    """One line that says where a figure was measured: CPU, cores, torch, Python (the date goes to
    bench/results.jsonl, not into the pages)."""
    import torch
    return (f"machine: {cpu_name()}, {cores or os.cpu_count()} logical cores; torch {torch.__version__}"
            f"{extra}; Python {platform.python_version()}")


def print_table_head(head: str, columns: list[str], text_columns: int = 1) -> None:
    """The machine line, then a Markdown table header: the first `text_columns` columns (and a
    last column named "...measured") left-aligned, the numbers right-aligned."""
    print(head + "\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" if i < text_columns or c.endswith("measured") else "---:"
                         for i, c in enumerate(columns)) + "|")


def records_missing(root: str, prog: str, records: Sequence[str] = ("100",)) -> bool:
    """True (after one line on stderr) when `root` lacks any of `records` (by default: it holds no
    MIT-BIH records)."""
    missing = [r for r in records
               if not all((Path(root) / f"{r}.{ext}").exists() for ext in ("hea", "dat", "atr"))]
    if not missing:
        return False
    what = ("no MIT-BIH records" if len(missing) == len(records)
            else f"records {' '.join(missing)} missing")
    print(f"{prog}: error: {what} in {root} (set MITBIH_DIR)", file=sys.stderr)
    return True
