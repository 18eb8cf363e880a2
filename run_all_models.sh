#!/usr/bin/env bash
# Train every registered model with the same arguments, keep going when one fails, print a
# summary table, build the leaderboard (summarize.py), and exit non-zero if any model failed.
#
#   bash run_all_models.sh                                 # all seven, default (stratified) split
#   bash run_all_models.sh --split interpatient --cv 4 --epochs 15
#   bash run_all_models.sh --config experiments/random.toml  # an experiment file (flags win)
#
#   MODELS="liteecgnet ldcnn" bash run_all_models.sh ...  # a subset (default: every registered model)
#   SEEDS="1337 1 2" bash run_all_models.sh ...            # every model once per seed (default: one run,
#                                                          # with --seed if given, else trainer.py's default)
#   JOBS=2 bash run_all_models.sh ...                      # two models at a time (default: 1)
#
# SEEDS runs seed by seed (every model with the first seed, then with the next), and the
# leaderboard then has mean ± std over the seeds of each model beside the runs
# (leaderboard_seeds.md / .csv). Each run logs to train_<model>_seed<seed>.log.
#
# JOBS=N trains N models side by side, each with (cores / N) torch threads unless --threads is
# given: small models use a core better alone than shared (bench/jobs.py measures it). Each run's
# output then goes to its log only, and the latency and epoch times in its report are measured
# while the others train: quote bench/models.py for cost, not a JOBS>1 sweep.
#
# Extra arguments go to every trainer.py run. Without --out-dir, each sweep gets its own folder
# data/records/sweep_<timestamp>, so the summary covers exactly this sweep.
set -uo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python}"
args=("$@")
for a in "${args[@]}"; do
  case "$a" in
    -h|--help)  # this header is the help; trainer.py --help lists the flags
      sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      echo "Flags: python trainer.py --help (every flag but --model; the models come from MODELS)."
      exit 0 ;;
    --model|--model=*)
      echo "run_all_models.sh: the models come from MODELS=\"...\" (default: all seven), not --model" >&2; exit 2 ;;
  esac
done
# the flags are checked once, before any folder or run: a typo is one line, not one per model
"$PY" options.py check "${args[@]}" || exit 2
out=""
seed_arg=""
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ "${args[$i]}" == "--out-dir" ]] && out="${args[$((i + 1))]:-}"
  [[ "${args[$i]}" == --out-dir=* ]] && out="${args[$i]#--out-dir=}"
  [[ "${args[$i]}" == "--seed" ]] && seed_arg="${args[$((i + 1))]:-}"
  [[ "${args[$i]}" == --seed=* ]] && seed_arg="${args[$i]#--seed=}"
done
if [[ -n "${SEEDS:-}" ]]; then
  [[ -z "$seed_arg" ]] || { echo "run_all_models.sh: give the seeds either in SEEDS or as --seed, not both" >&2; exit 2; }
  seeds=" "
  for s in $SEEDS; do
    [[ "$s" =~ ^[0-9]{1,9}$ ]] || { echo "run_all_models.sh: SEEDS must be whole numbers (0 to 999999999) separated by spaces, got '$s'" >&2; exit 2; }
    s=$((10#$s))  # 007 -> 7: the seed trainer.py reads, and the log's name
    [[ "$seeds" != *" $s "* ]] || { echo "run_all_models.sh: seed $s is twice in SEEDS" >&2; exit 2; }
    seeds+="$s "
  done
else  # one run per model, with the seed trainer.py would use (named in the log files)
  seeds="${seed_arg:-$("$PY" -c "from config import TRAIN_DEFAULTS; print(TRAIN_DEFAULTS['seed'])")}" || exit 2
fi
n_seeds=$(wc -w <<< "$seeds")
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
runs=()  # <model>_seed<seed>, seed by seed
for s in $seeds; do
  for m in $models; do runs+=("${m}_seed$s"); done
done
failed=()
reports=()
interrupted=0
refused=0
started=" "  # the runs started so far, space-separated

label() {  # run -> how messages name it: the model, and its seed when there are several
  if (( n_seeds > 1 )); then echo "${1%_seed*} (seed ${1##*_seed})"; else echo "${1%_seed*}"; fi
}
train_one() {  # run: train it (SEEDS: with --seed added)
  local m="${1%_seed*}" s="${1##*_seed}" seed=()
  [[ -n "${SEEDS:-}" ]] && seed=(--seed "$s")
  "$PY" trainer.py --model "$m" "${args[@]}" ${seed[@]+"${seed[@]}"}
}

note_done() {  # run exit-code seconds: record the outcome of one run
  local name rc=$2 secs=$3 log="$out/train_$1.log" rep
  name=$(label "$1")
  if [[ $rc -eq 130 ]]; then  # Ctrl-C: the trainer still evaluated its best epoch, if it had one
    echo "!!! $name interrupted ($secs s); log: $log"
    interrupted=1
  elif [[ $rc -ne 0 ]]; then
    echo "!!! $name failed (exit $rc, $secs s); log: $log"
    failed+=("$name")
    if [[ $rc -eq 2 && ${#failed[@]} -eq 1 && ${#reports[@]} -eq 0 ]]; then
      refused=1  # the first run refused its input (missing records, a bad file): so would every other
    fi
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
  declare -A pid_of=() t0_of=()  # run -> its process group; run -> $SECONDS at its start
  trap 'interrupted=1; for p in "${pid_of[@]}"; do kill -INT -- "-$p" 2>/dev/null; done' INT
  run_one() {  # the run's exit code goes to a file: the job's own status is lost to `wait -n`
    train_one "$1" > "$out/train_$1.log" 2>&1
    echo $? > "$out/.rc_$1"
  }
  reap() {  # report the runs that have finished since the last call
    local r rc
    for r in "${!pid_of[@]}"; do
      [[ ! -f "$out/.rc_$r" ]] && kill -0 "${pid_of[$r]}" 2>/dev/null && continue  # still running
      rc=137  # gone without writing its exit code: killed by a signal
      [[ -f "$out/.rc_$r" ]] && rc=$(cat "$out/.rc_$r")
      [[ $rc -eq 0 ]] && grep -h '^test (' "$out/train_$r.log" | sed "s/^/=== $(label "$r") done: /"
      note_done "$r" "$rc" $(( SECONDS - t0_of[$r] ))
      rm -f "$out/.rc_$r"
      unset "pid_of[$r]"
    done
  }
  for r in "${runs[@]}"; do
    while (( ${#pid_of[@]} >= jobs_n )); do wait -n 2>/dev/null; reap; done
    (( interrupted || refused )) && break
    rm -f "$out/.rc_$r"
    echo "=== $(label "$r") started (log: $out/train_$r.log) ==="
    started+="$r "
    t0_of[$r]=$SECONDS
    run_one "$r" &
    pid_of[$r]=$!
  done
  while (( ${#pid_of[@]} > 0 )); do wait -n 2>/dev/null; reap; done
  trap - INT
else
  # Ctrl-C reaches the trainer too, which stops cleanly (best epoch evaluated, report written);
  # tee -i keeps logging until then, and the sweep stops instead of starting the next model.
  trap 'interrupted=1' INT
  for r in "${runs[@]}"; do
    echo "=== $(label "$r") ==="
    started+="$r "
    t0=$SECONDS
    train_one "$r" 2>&1 | tee -i "$out/train_$r.log"
    rc=${PIPESTATUS[0]}
    note_done "$r" "$rc" $(( SECONDS - t0 ))
    (( interrupted || refused )) && break  # set by the trap, or by note_done (exit 130, or 2 on the first run)
  done
  trap - INT
fi
echo
echo "=== summary ($out) ==="
"$PY" - "${reports[@]}" <<'PYEOF'
import json, sys
print(f"| {'model':<11} | seed | macro-F1 | accuracy | params | MACs | latency ms | seconds |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for path in sys.argv[1:]:
    r = json.load(open(path))
    t, m = r["test"], r["model_metrics"]
    print(f"| {r['model']:<11} | {r['args']['seed']} | {t['macro_f1']:.4f} | {t['accuracy']:.4f} | {m['params_total']:,} | "
          f"{m['macs'] / 1e6:.2f} M | {m['latency_median_ms']:.3f} | {r['timing']['total_seconds']:.0f} |")
PYEOF
if [[ ${#reports[@]} -gt 0 ]]; then
  "$PY" summarize.py "$out" --out "$out" > /dev/null || echo "summarize.py failed (see above)"
  echo "leaderboard: $out/leaderboard.md"
  (( n_seeds > 1 )) && echo "mean ± std over seeds: $out/leaderboard_seeds.md"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAILED: ${failed[*]}" >&2
fi
if (( refused )); then
  echo "run_all_models.sh: the first run was refused (exit 2: a bad input; its log says why), so the others were not started" >&2
  exit 2
fi
if (( interrupted )); then
  rest=$(for r in "${runs[@]}"; do [[ "$started" == *" $r "* ]] || printf '%s, ' "$(label "$r")"; done)
  rest="${rest%, }"
  echo "run_all_models.sh: interrupted; $( (( n_seeds > 1 )) && echo runs || echo models) not started: ${rest:-none}" >&2
  exit 130
fi
[[ ${#failed[@]} -eq 0 ]] || exit 1
