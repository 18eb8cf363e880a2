#!/usr/bin/env bash
# Smoke test: one epoch of every model (experiments/quick.toml: 1,000 training beats per class,
# batches of 32, CPU), then a check that each one learnt: stratified 4-class macro-F1 >= 0.5,
# said per model. Exits non-zero when a run fails or a model stays below. Extra arguments go to
# trainer.py (e.g. --root DIR); MODELS="..." picks models as in run_all_models.sh.
#
#   bash quick_test.sh
set -uo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python}"
out="${QUICK_TEST_OUT:-$(mktemp -d -t liteecg_quick.XXXXXX)}"
bash run_all_models.sh --config experiments/quick.toml --root "${MITBIH_DIR:-./data/mitbih}" --out-dir "$out" "$@"
rc=$?
[[ $rc -eq 0 || $rc -eq 1 ]] || exit $rc  # a usage error (2) or Ctrl-C (130): nothing to check
"$PY" - "$out" "${MODELS:-}" <<'PYEOF' || rc=1
import json, sys
from pathlib import Path
from options import MODEL_NAMES
MIN_F1 = 0.5  # a model that learnt anything in one epoch is far above this; a collapsed one is below 0.1
out, models = Path(sys.argv[1]), sys.argv[2].split() or list(MODEL_NAMES)
reports = {}
for p in out.glob("eval_report_*.json"):
    r = json.loads(p.read_text())
    reports[r["model"]] = r
bad = 0
for m in models:
    r = reports.get(m)
    if r is None:
        print(f"quick_test: {m}: no report (the run failed; see {out}/train_{m}_seed*.log)")
        bad += 1
        continue
    f1, split = r["test"]["macro_f1"], f"{r['dataset']['split']}/{r['preprocessing']['classes']}"
    if split != "stratified/seed4":
        print(f"quick_test: {m}: macro-F1 {f1:.3f} on {split} (the {MIN_F1} threshold is for stratified/seed4)")
    elif f1 >= MIN_F1:
        print(f"quick_test: {m}: macro-F1 {f1:.3f} >= {MIN_F1}: learns in one epoch")
    else:
        print(f"quick_test: {m}: macro-F1 {f1:.3f} < {MIN_F1}: FAILED to learn in one epoch")
        bad += 1
print(f"quick_test: {len(models) - bad} of {len(models)} models passed ({out})")
sys.exit(1 if bad else 0)
PYEOF
exit $rc
