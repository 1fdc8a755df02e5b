#!/usr/bin/env bash
# One entry point for the benchmark suite (issue 9): bench/run.sh SCENARIO [ARGS...]
#   copy     bench/copy/copy.sh       [ROWS] [ROUNDS]         vs mydumper/myloader, mariadb-dump | mariadb
#   apply    bench/apply/apply.sh     [BACKLOG] [ROUNDS]      vs MariaDB replication (1 thread, parallel)
#   verify   bench/verify/verify.sh   [ROWS] [ROUNDS]         vs pt-table-checksum, naive ordered hash
#   gate     bench/gate/gate.sh                               sysbench through the gate vs direct
#   cutover  bench/cutover/cutover.sh [ROUNDS] [RATE] [SECS]  pause and errors during switch-traffic
#   all      every scenario at its default (full) size
#   small    every scenario at a small size, checked for correctness (the test suite runs this)
# Each script sets up its own servers, runs keyshift and its peers alternately, prints medians,
# min–max and ratios, and appends its summary to the file RESULTS names (gate: bench/gate/RESULTS.md
# unless RESULTS= is set).
# KEYSHIFT_BIN=<binary> runs that keyshift (default: target/release/keyshift, built first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scenario=${1:-}
shift || true

# bench/run.sh small [SCENARIO...]: each scenario at a small size (thousands of rows, one
# round, seconds of sysbench), its correctness checks on (a copy holds the source's rows,
# appliers converge, VDiff is clean, zero errors through the gate and during the switches,
# the switch happened). Nothing is timed or judged on speed; no results file is written.
# Exit status: 0 all passed, 1 a scenario failed, 77 a tool is missing (nothing ran).
# Env: SMALL_JOBS=2 (scenarios run at once; each has its own servers, ports and temp dir).
small() {
  local all=(gate apply cutover copy verify) want=("$@")
  ((${#want[@]})) || want=("${all[@]}")
  local s
  for s in "${want[@]}"; do
    [[ " ${all[*]} " == *" $s "* ]] || { echo "bench/run.sh small: unknown scenario $s" >&2; exit 2; }
  done

  local missing=() tool
  for tool in mariadb mariadb-dump mariadb-install-db sysbench mydumper myloader pt-table-checksum \
    python3 md5sum; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadbd)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  if ((${#missing[@]})); then
    echo "bench small: SKIPPED, missing: ${missing[*]} (scripts/install-deps.sh --test installs them)"
    exit 77
  fi

  die() { echo "bench/run.sh: $*" >&2; exit 1; }
  # shellcheck source=lib.sh
  . "$here/lib.sh"
  keyshift_bin "$(dirname "$here")" # builds the release binary unless KEYSHIFT_BIN is set
  export KEYSHIFT_BIN=$BIN SKIP_BUILD=1 SKIP_INSTALL=1 RESULTS=
  echo "bench small: keyshift $KEYSHIFT_BIN; scenarios ${want[*]}"

  local logs jobs=${SMALL_JOBS:-2} t0
  logs=$(mktemp -d /tmp/ks-bench-small.XXXXXX)
  declare -A pid
  # shellcheck disable=SC2317  # run by the trap
  stop() {
    local p
    # each scenario script (a child of its run_one subshell) cleans up on TERM
    for p in "${pid[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$logs"
    exit 130
  }
  trap stop INT TERM
  t0=$(date +%s.%N)

  run_one() { # scenario: its script at the small size, output to $logs/$1.log, then $logs/$1.done
    local t rc=0
    t=$(date +%s.%N)
    case $1 in
      copy) "$here/copy/copy.sh" 2000 1 ;;
      apply) TABLES=2 TABLE_SIZE=1000 THREADS=2 PARALLEL=2 "$here/apply/apply.sh" 300tx 1 ;;
      verify) "$here/verify/verify.sh" 2000 1 ;;
      # One sysbench thread: no deadlocks, so any "ignored error" is the gate's.
      gate) TIME=2 ROUNDS=1 THREADS=1 TABLES=1 TABLE_SIZE=1000 MAX_GATE_ERRORS=0 "$here/gate/gate.sh" ;;
      cutover) "$here/cutover/cutover.sh" 1 50 4 ;;
    esac >"$logs/$1.log" 2>&1 </dev/null || rc=$?
    echo "$rc $(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$t" "$(date +%s.%N)")" \
      >"$logs/$1.done"
  }

  local failed=() passed=() running=0 next=0 d rc secs
  report() { # print what finished since the last call
    for s in "${want[@]}"; do
      [ -n "${pid[$s]:-}" ] && [ -f "$logs/$s.done" ] || continue
      read -r rc secs <"$logs/$s.done"
      sed "s/^/[$s] /" "$logs/$s.log"
      if [ "$rc" = 0 ] && grep -q "^check $s: ok" "$logs/$s.log"; then
        echo "== small $s: passed in ${secs}s"
        passed+=("$s")
      else
        echo "== small $s: FAILED (exit $rc) after ${secs}s"
        failed+=("$s")
      fi
      unset "pid[$s]"
      running=$((running - 1))
    done
  }
  while ((next < ${#want[@]})) || ((running > 0)); do
    if ((next < ${#want[@]})) && ((running < jobs)); then
      s=${want[$next]}
      run_one "$s" &
      pid[$s]=$!
      next=$((next + 1))
      running=$((running + 1))
      continue
    fi
    wait -n 2>/dev/null || true
    report
  done
  d=$(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
  rm -rf "$logs"
  trap - INT TERM
  if ((${#failed[@]})); then
    echo "bench small: FAILED: ${failed[*]} (passed: ${passed[*]:-none}) in ${d}s"
    exit 1
  fi
  echo "bench small: all ${#passed[@]} scenarios passed (${passed[*]}) in ${d}s"
}

case "$scenario" in
  copy) exec "$here/copy/copy.sh" "$@" ;;
  apply) exec "$here/apply/apply.sh" "$@" ;;
  verify) exec "$here/verify/verify.sh" "$@" ;;
  gate) exec "$here/gate/gate.sh" "$@" ;;
  cutover) exec "$here/cutover/cutover.sh" "$@" ;;
  all)
    for s in copy apply verify gate cutover; do
      "$0" "$s"
    done
    ;;
  small) small "$@" ;;
  *)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac
