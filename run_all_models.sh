#!/usr/bin/env bash
# Train every registered model with the same arguments, keep going when one fails, print a
# summary table, build the leaderboard (summarize.py), and exit non-zero if any model failed.
#
#   bash run_all_models.sh                                 # all seven, default (stratified) split
#   bash run_all_models.sh --split interpatient --classes aami5 --epochs 20
#
#   MODELS="liteecgnet ldcnn" bash run_all_models.sh ...  # a subset (default: every registered model)
#
# Extra arguments go to every trainer.py run. Without --out-dir, each sweep gets its own folder
# data/records/sweep_<timestamp>, so the summary covers exactly this sweep.
set -uo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python}"
args=("$@")
out=""
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ "${args[$i]}" == "--out-dir" ]] && out="${args[$((i + 1))]:-}"
  [[ "${args[$i]}" == --out-dir=* ]] && out="${args[$i]#--out-dir=}"
done
if [[ -z "$out" ]]; then
  out="data/records/sweep_$(date +%Y%m%d_%H%M%S)"
  args+=(--out-dir "$out")
fi
all_models=$("$PY" -c "from models import MODEL_NAMES; print(' '.join(MODEL_NAMES))") || exit 2
models="${MODELS:-$all_models}"
for m in $models; do  # fail before training anything, not after an hour
  [[ " $all_models " == *" $m "* ]] || { echo "run_all_models.sh: unknown model '$m' in MODELS; choose from: $all_models" >&2; exit 2; }
done
mkdir -p "$out" || { echo "run_all_models.sh: cannot create $out" >&2; exit 2; }
failed=()
reports=()
for m in $models; do
  echo "=== $m ==="
  log="$out/train_$m.log"
  start=$SECONDS
  "$PY" trainer.py --model "$m" "${args[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 ]]; then
    echo "!!! $m failed (exit $rc, $((SECONDS - start)) s); log: $log"
    failed+=("$m")
    continue
  fi
  rep=$(grep -o 'wrote .*eval_report_[^ ]*\.json' "$log" | tail -1 | cut -d' ' -f2-)
  [[ -n "$rep" ]] && reports+=("$rep")
done
echo
echo "=== summary ($out) ==="
"$PY" - "${reports[@]}" <<'PYEOF'
import json, sys
print(f"| {'model':<11} | macro-F1 | accuracy | params | MACs | latency ms | seconds |")
print("|---|---:|---:|---:|---:|---:|---:|")
for path in sys.argv[1:]:
    r = json.load(open(path))
    t, m = r["test"], r["model_metrics"]
    print(f"| {r['model']:<11} | {t['macro_f1']:.4f} | {t['accuracy']:.4f} | {m['params_total']:,} | "
          f"{m['macs'] / 1e6:.2f} M | {m['latency_median_ms']:.3f} | {r['timing']['total_seconds']:.0f} |")
PYEOF
if [[ ${#reports[@]} -gt 0 ]]; then
  "$PY" summarize.py "$out" --out "$out" > /dev/null || echo "summarize.py failed (see above)"
  echo "leaderboard: $out/leaderboard.md"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
