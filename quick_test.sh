#!/usr/bin/env bash
# Smoke test: one short epoch of every model (training capped at 200 beats per class), on CPU.
# A few minutes on a 2-core laptop. Extra arguments go to trainer.py (e.g. --root DIR).
#
#   bash quick_test.sh
set -uo pipefail
cd "$(dirname "$0")"
out="${QUICK_TEST_OUT:-$(mktemp -d -t liteecg_quick.XXXXXX)}"
exec bash run_all_models.sh --root "${MITBIH_DIR:-./data/mitbih}" --epochs 1 --class-limit 200 --device cpu --cache --bootstrap 100 \
  --quiet --out-dir "$out" "$@"
