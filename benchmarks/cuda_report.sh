#!/usr/bin/env bash
# The kit's GPU checks and throughput benchmarks (issue 10's GPU goals) in one command, in the
# order a short GPU session needs them:
#
#     bash benchmarks/cuda_report.sh [LOG_DIR [PART...]]   # default: runs/cuda_report, all parts
#
# PARTS: tests, sample, assisted, trl (their default limits let a machine lent in calls of at most
# 10 min run them in two calls: `tests sample assisted` (<= 9 min), then `trl`).
# 1. the engine tests on CUDA (static decode on fixed slots, CUDA graphs, continuous batching);
# 2. plain sampling vs generate() at batch 512 and 64 (benchmarks/engine.py; with the static path's
#    look-ahead launch against reading first, and at 512 with and without torch's NaN fill of new
#    tensors), and the decode
#    loop's own host cost at batch 512 on this box's CPU (benchmarks/host_overhead.py);
# 3. assisted vs plain rollouts, with nvidia-smi's memory in use sampled every second beside it
#    (the unexplained ~60 GB transient of README "On one H100");
# 4. one GRPO step vs TRL's GRPOTrainer (benchmarks/vs_trl.py; skipped without trl).
# Each part has its own time limit (seconds: ENGINE_S, BENCH_S, HOST_S, ASSIST_S, TRL_S) and its own
# log in LOG_DIR; a failing part does not stop the next. The summary at the end repeats each
# benchmark's last line (its ratio) and each part's exit status.
# PY picks the interpreter (default: .venv/bin/python if present, else python3).
set -u
LOG=${1:-runs/cuda_report}
shift $(( $# > 0 ? 1 : 0 ))
PARTS=" ${*:-tests sample assisted trl} "
want() { [[ "$PARTS" == *" $1 "* ]]; }
for p in $PARTS; do
  case $p in tests|sample|assisted|trl) ;; *) echo "unknown part '$p': choose from tests sample assisted trl" >&2; exit 2;; esac
done
mkdir -p "$LOG"
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this report is for a GPU box')" || exit 1
summary=()

part() {  # part NAME LIMIT_S COMMAND...: run with a time limit, log to LOG/NAME.log
  local name=$1 limit=$2; shift 2
  echo "== $name: $* (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$LOG/$name.log" 2>&1
  local rc=$?
  summary+=("$name rc=$rc $((SECONDS - t0)) s | $(tail -n 1 "$LOG/$name.log")")
  tail -n 3 "$LOG/$name.log"
}

$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$LOG/device.txt"
if want tests; then
  part engine_tests "${ENGINE_S:-180}" $PY -m pytest -q -p no:cacheprovider tests/test_engine.py
fi
if want sample; then
  part sample_b512 "${BENCH_S:-90}" $PY benchmarks/engine.py --batch-size 512 --device cuda --compare-read-first --compare-nan-fill
  part sample_b64 "${BENCH_S:-90}" $PY benchmarks/engine.py --batch-size 64 --device cuda --compare-read-first
  part host_b512 "${HOST_S:-30}" $PY benchmarks/host_overhead.py --batch-size 512
fi
if want assisted; then
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -l 1 > "$LOG/assisted_gpu_mem.csv" &
    SMI=$!
  fi
  part assisted "${ASSIST_S:-180}" $PY benchmarks/assisted_rollouts.py --per-tier 32 --g 4
  if [ -n "${SMI:-}" ]; then
    kill "$SMI"
    summary+=("assisted: nvidia-smi peak memory.used $(cut -d, -f2 "$LOG/assisted_gpu_mem.csv" | sort -n | tail -n 1)")
  fi
fi
if want trl; then
  if $PY -c "import trl" 2> /dev/null; then
    part vs_trl "${TRL_S:-480}" $PY benchmarks/vs_trl.py --steps 8 --device cuda
  else
    summary+=("vs_trl skipped: no trl (pip install -e '.[bench]')")
  fi
fi

echo "== summary (logs in $LOG)"
printf '%s\n' "${summary[@]}" | tee "$LOG/summary.txt"
