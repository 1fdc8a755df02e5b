#!/usr/bin/env bash
# One entry point for the benchmark suite (issue 9): bench/run.sh SCENARIO [ARGS...]
#   copy     bench/copy/copy.sh       [ROWS] [ROUNDS]         vs mydumper/myloader, mariadb-dump | mariadb
#   apply    bench/apply/apply.sh     [BACKLOG] [ROUNDS]      vs MariaDB replication (1 thread, parallel)
#   verify   bench/verify/verify.sh   [ROWS] [ROUNDS]         vs pt-table-checksum, naive ordered hash
#   gate     bench/gate/gate.sh                               sysbench through the gate vs direct
#   cutover  bench/cutover/cutover.sh [ROUNDS] [RATE] [SECS]  pause and errors during switch-traffic
#   all      every scenario at its default (full) size
# Each script sets up its own servers, runs keyshift and its peers alternately, prints medians,
# min–max and ratios, and appends its summary to BENCHMARKS.md when RESULTS=BENCHMARKS.md is set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scenario=${1:-}
shift || true
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
  *)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
