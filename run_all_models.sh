#!/usr/bin/env bash
# Train every registered model with the same arguments, keep going when one fails, print a
# summary table, build the leaderboard (summarize.py), and exit non-zero if any model failed.
#
#   bash run_all_models.sh                                 # all seven, default (stratified) split
#   bash run_all_models.sh --split interpatient --classes aami5 --epochs 20
#
#   MODELS="liteecgnet ldcnn" bash run_all_models.sh ...  # a subset (default: every registered model)
#   JOBS=2 bash run_all_models.sh ...                      # two models at a time (default: 1)
#
# JOBS=N trains N models side by side, each with (cores / N) torch threads unless --threads is
# given: small models use a core better alone than shared (on the 2-core CPU of docs/RESULTS.md
# two one-thread runs train 1.07-1.51x the beats/s of one two-thread run: bench/jobs.py). Each
# run's output then goes to its log only, and the latency and epoch times in its report are
# measured while the others train: quote bench/models.py for cost, not a JOBS>1 sweep.
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
jobs_n="${JOBS:-1}"
[[ "$jobs_n" =~ ^[1-9][0-9]*$ ]] || { echo "run_all_models.sh: JOBS must be a whole number >= 1, got '$jobs_n'" >&2; exit 2; }
if (( jobs_n > 1 )) && (( BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 403 )); then  # wait -n, declare -A
  echo "run_all_models.sh: JOBS > 1 needs bash 4.3 or newer (this is $BASH_VERSION); run with JOBS=1" >&2; exit 2
fi
all_models=$("$PY" -c "from models import MODEL_NAMES; print(' '.join(MODEL_NAMES))") || exit 2
models="${MODELS:-$all_models}"
for m in $models; do  # fail before training anything, not after an hour
  [[ " $all_models " == *" $m "* ]] || { echo "run_all_models.sh: unknown model '$m' in MODELS; choose from: $all_models" >&2; exit 2; }
done
if (( jobs_n > 1 )) && [[ " ${args[*]} " != *" --threads "* && " ${args[*]} " != *" --threads="* ]]; then
  per=$(( $(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1) / jobs_n ))
  args+=(--threads $(( per > 0 ? per : 1 )))
fi
mkdir -p "$out" || { echo "run_all_models.sh: cannot create $out" >&2; exit 2; }
failed=()
reports=()
interrupted=0
started=" "  # the models started so far, space-separated

note_done() {  # model exit-code seconds: record the outcome of one run
  local m=$1 rc=$2 secs=$3 log="$out/train_$1.log" rep
  if [[ $rc -eq 130 ]]; then  # Ctrl-C: the trainer still evaluated its best epoch, if it had one
    echo "!!! $m interrupted ($secs s); log: $log"
    interrupted=1
  elif [[ $rc -ne 0 ]]; then
    echo "!!! $m failed (exit $rc, $secs s); log: $log"
    failed+=("$m")
    return
  fi
  rep=$(grep -o 'wrote .*eval_report_[^ ]*\.json' "$log" | tail -1 | cut -d' ' -f2-)
  [[ -n "$rep" ]] && reports+=("$rep")
}

if (( jobs_n > 1 )); then
  # Job control puts each run in its own process group: Ctrl-C then reaches this script only
  # (without it, a script starts background jobs with SIGINT ignored), and the trap passes it on,
  # so every running trainer stops the way a single one does (best weights evaluated, report
  # written), and no new model starts.
  set -m
  declare -A pid_of=() t0_of=()  # model -> its process group; model -> $SECONDS at its start
  trap 'interrupted=1; for p in "${pid_of[@]}"; do kill -INT -- "-$p" 2>/dev/null; done' INT
  run_one() {  # the run's exit code goes to a file: the job's own status is lost to `wait -n`
    "$PY" trainer.py --model "$1" "${args[@]}" > "$out/train_$1.log" 2>&1
    echo $? > "$out/.rc_$1"
  }
  reap() {  # report the runs that have finished since the last call
    local m rc
    for m in "${!pid_of[@]}"; do
      [[ ! -f "$out/.rc_$m" ]] && kill -0 "${pid_of[$m]}" 2>/dev/null && continue  # still running
      rc=137  # gone without writing its exit code: killed by a signal
      [[ -f "$out/.rc_$m" ]] && rc=$(cat "$out/.rc_$m")
      [[ $rc -eq 0 ]] && grep -h '^test:' "$out/train_$m.log" | sed "s/^/=== $m done: /"
      note_done "$m" "$rc" $(( SECONDS - t0_of[$m] ))
      rm -f "$out/.rc_$m"
      unset "pid_of[$m]"
    done
  }
  for m in $models; do
    while (( ${#pid_of[@]} >= jobs_n )); do wait -n 2>/dev/null; reap; done
    (( interrupted )) && break
    rm -f "$out/.rc_$m"
    echo "=== $m started (log: $out/train_$m.log) ==="
    started+="$m "
    t0_of[$m]=$SECONDS
    run_one "$m" &
    pid_of[$m]=$!
  done
  while (( ${#pid_of[@]} > 0 )); do wait -n 2>/dev/null; reap; done
  trap - INT
else
  # Ctrl-C reaches the trainer too, which stops cleanly (best epoch evaluated, report written);
  # tee -i keeps logging until then, and the sweep stops instead of starting the next model.
  trap 'interrupted=1' INT
  for m in $models; do
    echo "=== $m ==="
    started+="$m "
    t0=$SECONDS
    "$PY" trainer.py --model "$m" "${args[@]}" 2>&1 | tee -i "$out/train_$m.log"
    rc=${PIPESTATUS[0]}
    note_done "$m" "$rc" $(( SECONDS - t0 ))
    (( interrupted )) && break  # set by the trap, or by note_done for the trainer's exit 130
  done
  trap - INT
fi
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
fi
if (( interrupted )); then
  rest=$(for m in $models; do [[ "$started" == *" $m "* ]] || printf '%s ' "$m"; done)
  echo "run_all_models.sh: interrupted; models not started: ${rest:-none}" >&2
  exit 130
fi
[[ ${#failed[@]} -eq 0 ]] || exit 1
