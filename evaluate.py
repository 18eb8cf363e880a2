"""Evaluate a saved checkpoint on any split or record list; writes a report with the trainer's schema.

    python evaluate.py data/records/ecg_lightweight_liteecgnet_<stamp>.pt
    python evaluate.py CKPT --split interpatient
    python evaluate.py CKPT --train-recs 101 --val-recs 103 --test-recs 100 105

Same code path as ``trainer.py --eval-only CKPT``: preprocessing and model come from the
checkpoint; split flags default to the ones the model was trained with.
"""
from __future__ import annotations

import sys

import trainer


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            print(__doc__.strip())
            print("\nAll data and output flags of trainer.py apply (python trainer.py --help).")
            return 0
        print("evaluate.py: error: give the checkpoint first: python evaluate.py CKPT [trainer flags]",
              file=sys.stderr)
        return 2
    return trainer.main(["--eval-only", argv[0], *argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
