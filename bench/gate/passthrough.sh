#!/usr/bin/env bash
# Benchmark: sysbench directly against MariaDB vs through the passthrough gate,
# alternating, 4 threads. Prints TPS, p95 latency and gate/direct ratios.
# Two gates run side by side: "gate" reaches MariaDB over loopback TCP (as a
# gate on another host would), "gate-uds" over its Unix socket (a gate next
# to its tablets).
#   bench/gate/passthrough.sh [seconds-per-run] [rounds] [gate-workers]
# gate-workers: tokio worker threads, 0 = current-thread runtime.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
ROUNDS=${2:-1}
WORKERS=${3:-2}
THREADS=4
DB_PORT=${DB_PORT:-23316}
GATE_PORT=${GATE_PORT:-23317}
GATE_UDS_PORT=${GATE_UDS_PORT:-23318}

WORK=$(mktemp -d /tmp/ks-gate-bench.XXXXXX)
MYSQLD_PID=""
GATE_PID=""
GATE_UDS_PID=""
cleanup() {
  [ -n "$GATE_PID" ] && kill "$GATE_PID" 2>/dev/null || true
  [ -n "$GATE_UDS_PID" ] && kill "$GATE_UDS_PID" 2>/dev/null || true
  [ -n "$MYSQLD_PID" ] && kill "$MYSQLD_PID" 2>/dev/null || true
  [ -n "$MYSQLD_PID" ] && wait "$MYSQLD_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -p keyshift-gate --example passthrough >&2
GATE_BIN=target/release/examples/passthrough

mkdir -p "$WORK/tmp"
mariadb-install-db --no-defaults --datadir="$WORK/data" --tmpdir="$WORK/tmp" \
  --auth-root-authentication-method=normal >/dev/null 2>&1
/usr/sbin/mariadbd --no-defaults --user=root --datadir="$WORK/data" --port=$DB_PORT \
  --bind-address=127.0.0.1 --socket="$WORK/s.sock" --tmpdir="$WORK/tmp" --skip-name-resolve \
  --skip-log-bin --innodb-buffer-pool-size=256M --max-connections=500 >"$WORK/err.log" 2>&1 &
MYSQLD_PID=$!
for _ in $(seq 100); do [ -S "$WORK/s.sock" ] && break; sleep 0.1; done
mariadb --no-defaults --socket="$WORK/s.sock" -uroot -e \
  "CREATE USER 'u'@'127.0.0.1' IDENTIFIED BY 'p'; GRANT ALL ON *.* TO 'u'@'127.0.0.1';
   CREATE USER 'u'@'localhost' IDENTIFIED BY 'p'; GRANT ALL ON *.* TO 'u'@'localhost'; CREATE DATABASE sbtest"

SB_COMMON="--mysql-host=127.0.0.1 --mysql-user=u --mysql-password=p --mysql-db=sbtest --tables=4 --table-size=20000"
sysbench oltp_read_write $SB_COMMON --mysql-port=$DB_PORT --threads=4 prepare >/dev/null

"$GATE_BIN" --listen 127.0.0.1:$GATE_PORT --backend 127.0.0.1:$DB_PORT --user u --password p \
  --db sbtest --workers "$WORKERS" 2>"$WORK/gate.log" &
GATE_PID=$!
"$GATE_BIN" --listen 127.0.0.1:$GATE_UDS_PORT --backend "$WORK/s.sock" --user u --password p \
  --db sbtest --workers "$WORKERS" 2>"$WORK/gate-uds.log" &
GATE_UDS_PID=$!
for p in $GATE_PORT $GATE_UDS_PORT; do
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done

run() { # test port -> "tps p95"
  sysbench "$1" $SB_COMMON --mysql-port="$2" --threads=$THREADS --time="$SECS" \
    --db-ps-mode=auto --report-interval=0 --histogram=off run 2>&1 |
    awk '/transactions:/ {gsub(/\(/,"",$3); tps=$3} /95th percentile:/ {p95=$3} /ignored errors:/ {err=$3}
         END {print tps, p95, err}'
}

printf "%-18s %-8s %10s %9s %7s\n" test target tps p95_ms errors
declare -A SUM
for round in $(seq "$ROUNDS"); do
  for t in oltp_point_select oltp_read_write; do
    for target in direct gate gate-uds; do
      case $target in direct) port=$DB_PORT ;; gate) port=$GATE_PORT ;; gate-uds) port=$GATE_UDS_PORT ;; esac
      read -r tps p95 err < <(run $t $port)
      printf "%-18s %-8s %10s %9s %7s\n" "$t" "$target" "$tps" "$p95" "$err"
      SUM[$t.$target]=$(echo "${SUM[$t.$target]:-0} + $tps" | bc -l)
    done
  done
done
echo
for t in oltp_point_select oltp_read_write; do
  for g in gate gate-uds; do
    printf "%-18s %-8s/direct TPS ratio: %.3f\n" "$t" "$g" "$(echo "${SUM[$t.$g]} / ${SUM[$t.direct]}" | bc -l)"
  done
done
