#!/usr/bin/env bash
# Rebuild weights/: liteecgnet trained on DS1 with the inter-patient preset (experiments/interpatient_cv.toml:
# epochs chosen by 4 patient-grouped folds inside DS1, seed 1337), its report (DS2 tested once) and its int8
# ONNX file. About 10 minutes on 2 cores; the shipped files were made with --threads 1 --device cpu.
#
#   MITBIH_DIR=/path/to/mitdb bash weights/build.sh [trainer flags, e.g. --threads 1 --device cpu]
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d -t liteecg_weights.XXXXXX)
python trainer.py --config experiments/interpatient_cv.toml --model liteecgnet --seed 1337 \
  --root "${MITBIH_DIR:-./data/mitbih}" --out-dir "$tmp" "$@"
ckpt=$(ls "$tmp"/ecg_lightweight_liteecgnet_*.pt | grep -v '\.last\.pt$')
cp "$ckpt" weights/liteecgnet_ds1.pt
cp "$tmp"/eval_report_liteecgnet_*.json weights/liteecgnet_ds1.report.json
python export.py weights/liteecgnet_ds1.pt --int8 --out weights/liteecgnet_ds1.int8.onnx --root "${MITBIH_DIR:-./data/mitbih}"
rm -r "$tmp"
ls -l weights/
