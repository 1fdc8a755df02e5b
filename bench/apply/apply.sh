#!/usr/bin/env bash
# The apply benchmark (issue 4 "Benchmark: Replication", issue 9 "apply"):
# a backlog of sysbench oltp_write_only transactions on a source primary,
# applied by
#   keyshift          a MoveTables workflow src -> dst (both unsharded; one
#                     stream), `workflow start` after `workflow stop`
#   native            a MariaDB replica of the same source (GTID replication,
#                     single-threaded SQL thread), `START SLAVE` after `STOP SLAVE`
#   native-parallel   a second MariaDB replica with slave_parallel_threads=4,
#                     slave_parallel_mode=optimistic
# each catching up exactly the same binlog range, ROUNDS rounds, rotating who
# goes first.
#
# Usage: bench/apply/apply.sh [BACKLOG] [ROUNDS]      (defaults 20000tx 5)
#        BACKLOG: seconds of sysbench (`30`), or a number of sysbench
#        transactions with a `tx` suffix (`5000tx`).
# Env:   KEYSHIFT_BIN=<path> (used as is; default target/release/keyshift,
#        built first unless SKIP_BUILD=1)
#        SKIP_INSTALL=1  KEEP=1  RESULTS=<file to append a summary to>
#        TABLES=4 TABLE_SIZE=100000 (sysbench prepare)  THREADS=4 (sysbench
#        threads building the backlog)  PARALLEL=4 (native-parallel threads)
#        PROFILE=1 (one extra, untimed keyshift catch-up under `perf record`;
#        report in the temp dir, top printed)
#
# Layout: one `keyshift up --detach` cluster from a temp cluster file on free
# ports: keyspace `src` (unsharded; sysbench tables) and `dst` (unsharded).
# The two native replicas are mariadbd servers this script starts itself in
# the temp dir (mariadb-install-db), with the SAME flags as a keyshift-managed
# tablet (ROW binlog, log_slave_updates, gtid_strict_mode, 64M buffer pool,
# 32M redo log) so both sides write into identical servers, seeded with
# `mariadb-dump --single-transaction --gtid --master-data=1 --databases src`
# and replicating with MASTER_USE_GTID=slave_pos as a user created for it.
#
# Timing (wall clock, per applier, from stopped to caught up at P, the
# source's @@gtid_binlog_pos after the backlog):
#   keyshift: `workflow start` .. every stream row of the workflow in the
#             target's `_keyshift.streams` has a position containing P
#             (polled every 10 ms by one SQL loop on the target).
#   native:   one client session: `START SLAVE; SELECT MASTER_GTID_WAIT(P)`.
# Rate = backlog transactions (GTID sequence numbers between the positions
# before and after the backlog) / seconds.
#
# Checks (every round; any failure exits non-zero): the backlog is not empty,
# every applier reaches the source's position, and then every table has the
# same row count and CHECKSUM TABLE on the source, the keyshift target and
# both replicas. On success the last line is "check apply: ok ...".
set -euo pipefail

BACKLOG=${1:-20000tx}
ROUNDS=${2:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
. "$ROOT/bench/lib.sh"
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-100000}
THREADS=${THREADS:-4}
PARALLEL=${PARALLEL:-4}
WF=apply
COMMAND="bench/apply/apply.sh $BACKLOG $ROUNDS"
extra_env=""
[ "$TABLES" = 4 ] || extra_env+="TABLES=$TABLES "
[ "$TABLE_SIZE" = 100000 ] || extra_env+="TABLE_SIZE=$TABLE_SIZE "
[ "$THREADS" = 4 ] || extra_env+="THREADS=$THREADS "
[ "$PARALLEL" = 4 ] || extra_env+="PARALLEL=$PARALLEL "
COMMAND="$extra_env$COMMAND"

case $BACKLOG in
  *tx) SB_LIMIT=(--events="${BACKLOG%tx}" --time=0) ;;
  *[!0-9]*|'') echo "apply.sh: BACKLOG is seconds (30) or transactions (5000tx)" >&2; exit 2 ;;
  *) SB_LIMIT=(--time="$BACKLOG") ;;
esac

say() { printf '%s\n' "$*" >&2; }
die() { say "apply.sh: $*"; exit 1; }

# --- tools -------------------------------------------------------------------
if [ -z "${SKIP_INSTALL:-}" ]; then
  missing=()
  command -v sysbench >/dev/null || missing+=(sysbench)
  command -v mariadb >/dev/null && command -v mariadb-dump >/dev/null || missing+=(mariadb-client)
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
  if [ ${#missing[@]} -gt 0 ]; then
    say "== apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
  fi
fi
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
for tool in sysbench mariadb mariadb-dump mariadb-install-db python3 "$MARIADBD"; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

keyshift_bin "$ROOT"

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$1" "$2"; }
# CPU seconds (user+system) a process has used so far
cpu_of() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null || echo 0; }
fsub() { python3 -c "import sys; print(f'{float(sys.argv[1])-float(sys.argv[2]):.2f}')" "$1" "$2"; }

# --- cluster -----------------------------------------------------------------
WORK=$(mktemp -d /tmp/ks-apply.XXXXXX)
CLUSTER=$WORK/keyshift.toml
DATA=$WORK/data
# Run a private copy: the binary under test may be rebuilt while the
# benchmark runs (and perf needs the file it profiles to still exist).
cp "$BIN" "$WORK/keyshift"
say "== keyshift binary: $BIN ($(stat -c '%y' "$BIN" | cut -d. -f1), copied to $WORK/keyshift)"
KS() { "$WORK/keyshift" --cluster "$CLUSTER" "$@"; }
NATIVES=(native native-parallel)
declare -A NPID NSOCK

cleanup() {
  local rc=$?
  local n
  for n in "${NATIVES[@]}"; do
    if [ -n "${NPID[$n]:-}" ] && kill -0 "${NPID[$n]}" 2>/dev/null; then
      kill "${NPID[$n]}" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "${NPID[$n]}" 2>/dev/null || break; sleep 0.1; done
      kill -9 "${NPID[$n]}" 2>/dev/null || true
    fi
  done
  KS down >/dev/null 2>&1 || true
  if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else say "kept $WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$CLUSTER" <<EOF
data_dir = "data"
topo = "file"
cell = "bench"

[gate]
listen = "127.0.0.1:0"

[[gate.user]]
name = "app"
password = "app-pw"

[api]
listen = "127.0.0.1:0"

[[keyspace]]
name = "src"

[[keyspace]]
name = "dst"
EOF

say "== keyshift up --detach ($WORK)"
KS up --detach >&2
NODE_PID=$(ready_field "$DATA" pid)

tablets_json=$(KS tablet list --format json)
tablet_field() { # keyspace shard field
  printf '%s' "$tablets_json" | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["keyspace"] == sys.argv[1] and t["shard"] == sys.argv[2]:
        print(t.get(sys.argv[3], "")); break' "$1" "$2" "$3"
}
socket_of() {
  local alias dir sock
  alias=$(tablet_field "$1" "$2" alias)
  [ -n "$alias" ] || die "no tablet for $1/$2"
  dir=$DATA/tablets/$alias
  sock=$(tablet_socket "$dir") || die "no socket for tablet $alias of $1/$2"
  printf '%s' "$sock"
}
sql() { mariadb --no-defaults -uroot -S "$1" "${@:2}"; }
# pid of the mariadbd listening on a unix socket (ours: under $WORK or the
# tablet's socket)
pid_of_socket() { sql "$1" -N -e 'SELECT @@pid_file' | xargs cat 2>/dev/null; }

SRC_SOCK=$(socket_of src 0)
DST_SOCK=$(socket_of dst 0)
SRC_PORT=$(sql "$SRC_SOCK" -N -e 'SELECT @@port')
SRC_PID=$(pid_of_socket "$SRC_SOCK")
DST_PID=$(pid_of_socket "$DST_SOCK")
[ -n "$SRC_PID" ] && [ -n "$DST_PID" ] || die "cannot find the tablets' mariadbd pids"

say "== sysbench prepare: $TABLES tables x $TABLE_SIZE rows into src (over the socket)"
SB=(sysbench --tables="$TABLES" --table-size="$TABLE_SIZE" --mysql-socket="$SRC_SOCK"
    --mysql-user=root --mysql-db=src)
"${SB[@]}" oltp_write_only prepare >/dev/null
TABLE_LIST=$(seq -s, -f 'sbtest%g' 1 "$TABLES")

# --- native replicas ---------------------------------------------------------
REPL_PW=repl-$RANDOM$RANDOM
sql "$SRC_SOCK" -e "CREATE USER 'ks_bench_repl'@'127.0.0.1' IDENTIFIED BY '$REPL_PW';
  GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'ks_bench_repl'@'127.0.0.1'"

start_native() { # name server_id extra-args...
  local n=$1 id=$2 dir=$WORK/$1
  shift 2
  mkdir -p "$dir/data" "$dir/tmp"
  local user=(); [ "$(id -u)" = 0 ] && user=(--user=root)
  mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
    --skip-test-db "${user[@]}" --innodb-buffer-pool-size=64M --innodb-log-file-size=32M \
    >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; die "mariadb-install-db for $n failed"; }
  NSOCK[$n]=$dir/mysqld.sock
  # The flags of a keyshift-managed tablet (crates/tablet/src/mysqld.rs),
  # plus --skip-slave-start and a filter to the benchmark's database; no TCP
  # port (--skip-networking: clients use the socket, and the replica's own
  # connection to the source is outgoing), so nothing to race for.
  "$MARIADBD" --no-defaults --datadir="$dir/data" --skip-networking \
    --socket="${NSOCK[$n]}" --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" \
    --tmpdir="$dir/tmp" --server-id="$id" --log-bin=binlog --relay-log=relay-bin \
    --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --gtid-strict-mode=ON --gtid-domain-id=0 --log-slave-updates --skip-name-resolve \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=32M \
    --innodb-buffer-pool-dump-at-shutdown=OFF --innodb-buffer-pool-load-at-startup=OFF \
    --performance-schema=OFF --skip-slave-start --replicate-do-db=src "${user[@]}" "$@" \
    >/dev/null 2>&1 &
  NPID[$n]=$!
  for _ in $(seq 1 300); do
    sql "${NSOCK[$n]}" -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "${NPID[$n]}" 2>/dev/null || { tail -20 "$dir/error.log" >&2; die "$n mariadbd died"; }
    sleep 0.1
  done
  sql "${NSOCK[$n]}" -e 'RESET MASTER'
  # Seed: one consistent snapshot of src with its GTID position
  # (gtid_slave_pos), loaded without binlogging it.
  mariadb-dump --no-defaults -uroot -S "$SRC_SOCK" --single-transaction --gtid --master-data=1 \
    --databases src | sql "${NSOCK[$n]}" --init-command='SET sql_log_bin=0'
  sql "${NSOCK[$n]}" -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$SRC_PORT,
    MASTER_USER='ks_bench_repl', MASTER_PASSWORD='$REPL_PW', MASTER_USE_GTID=slave_pos,
    MASTER_CONNECT_RETRY=1; START SLAVE"
}

say "== native replicas: mariadbd x2 seeded from src (mariadb-dump --gtid --master-data)"
start_native native 9001
start_native native-parallel 9002 --slave-parallel-threads="$PARALLEL" --slave-parallel-mode=optimistic

# --- keyshift workflow -------------------------------------------------------
say "== keyshift workflow create $WF: src -> dst ($TABLE_LIST), until running and caught up"
KS workflow create --name "$WF" --source-keyspace src --target-keyspace dst --tables "$TABLE_LIST" >/dev/null
KS workflow show "$WF" --wait-for running --caught-up --timeout 1800s >/dev/null 2>&1 ||
  { KS workflow show "$WF" >&2 || true; die "workflow $WF did not reach running/caught up"; }

src_pos() { sql "$SRC_SOCK" -N -e 'SELECT @@gtid_binlog_pos'; }

# SQL condition: the string column `col` (a GTID position; keyshift stores
# it with its flavor, `MariaDB/0-100-20`) contains $1.
contains_sql() {
  local col=$1 pos=$2 e d s n conds=()
  IFS=, read -ra parts <<<"$pos"
  for e in "${parts[@]}"; do
    IFS=- read -r d s n <<<"$e"
    conds+=("CAST(SUBSTRING_INDEX(REGEXP_SUBSTR($col, '(^|[,/])$d-[0-9]+-[0-9]+'), '-', -1) AS UNSIGNED) >= $n")
  done
  local IFS=' '
  printf '%s' "${conds[0]}"
  for e in "${conds[@]:1}"; do printf ' AND %s' "$e"; done
}

# Blocks until every stream of the workflow committed a position containing
# $1 (10 ms polling in one session on the target); fails after $2 seconds.
wait_keyshift() {
  local cond; cond=$(contains_sql position "$1")
  sql "$DST_SOCK" -N <<EOF
SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
DELIMITER //
BEGIN NOT ATOMIC
  DECLARE deadline DATETIME(6) DEFAULT NOW(6) + INTERVAL $2 SECOND;
  WHILE NOT ((SELECT COUNT(*) FROM _keyshift.streams WHERE workflow = '$WF') > 0
         AND (SELECT COUNT(*) FROM _keyshift.streams WHERE workflow = '$WF' AND NOT ($cond)) = 0) DO
    IF NOW(6) > deadline THEN
      SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'keyshift did not catch up in time';
    END IF;
    DO SLEEP(0.01);
  END WHILE;
END//
DELIMITER ;
EOF
}

ks_positions() { sql "$DST_SOCK" -N -e "SELECT GROUP_CONCAT(position SEPARATOR ' | ') FROM _keyshift.streams WHERE workflow = '$WF'"; }

# Wait until all appliers are at the source's current position (untimed).
sync_all() {
  local p n; p=$(src_pos)
  wait_keyshift "$p" 180 || die "keyshift not caught up to $p"
  for n in "${NATIVES[@]}"; do
    [ "$(sql "${NSOCK[$n]}" -N -e "SELECT MASTER_GTID_WAIT('$p', 180)")" = 0 ] || die "$n not caught up to $p"
  done
}

stop_all() {
  local n
  KS workflow stop "$WF" >/dev/null
  for n in "${NATIVES[@]}"; do sql "${NSOCK[$n]}" -e 'STOP SLAVE'; done
}

seq_of() { # GTID position -> sum of sequence numbers (one domain here)
  printf '%s' "$1" | tr ',' '\n' | awk -F- '{s += $3} END {print s + 0}'
}

build_backlog() { # -> sets P0 P1 NTX
  P0=$(src_pos)
  "${SB[@]}" --threads="$THREADS" "${SB_LIMIT[@]}" --report-interval=0 oltp_write_only run \
    >"$WORK/sysbench.out" 2>&1 || { cat "$WORK/sysbench.out" >&2; die "sysbench run failed"; }
  P1=$(src_pos)
  NTX=$(( $(seq_of "$P1") - $(seq_of "$P0") ))
  [ "$NTX" -gt 0 ] || die "the backlog is empty ($P0 -> $P1)"
  local tps; tps=$(awk '/transactions:/ {print $3}' "$WORK/sysbench.out" | tr -d '(')
  say "   backlog: $NTX transactions ($P0 -> $P1; sysbench ${tps} tps on the source)"
}

# Each run_* prints "seconds applier-cpu-seconds source-cpu-seconds" (CPU =
# utime+stime from /proc; applier: for keyshift the node process + the target
# mariadbd, printed as "node+target"; for native the replica mariadbd. The
# source mariadbd serves the binlog dump to either.)
run_keyshift() {
  local t0 t1 n0 n1 d0 d1 s0 s1
  n0=$(cpu_of "$NODE_PID"); d0=$(cpu_of "$DST_PID"); s0=$(cpu_of "$SRC_PID")
  t0=$(now)
  KS workflow start "$WF" >/dev/null
  wait_keyshift "$P1" 3600 || die "keyshift did not reach $P1 (at $(ks_positions))"
  t1=$(now)
  n1=$(cpu_of "$NODE_PID"); d1=$(cpu_of "$DST_PID"); s1=$(cpu_of "$SRC_PID")
  echo "$(elapsed "$t0" "$t1") $(fsub "$n1" "$n0")+$(fsub "$d1" "$d0") $(fsub "$s1" "$s0")"
}

run_native() { # name
  local n=$1 t0 t1 c0 c1 s0 s1 r
  c0=$(cpu_of "${NPID[$n]}"); s0=$(cpu_of "$SRC_PID")
  t0=$(now)
  r=$(sql "${NSOCK[$n]}" -N -e "START SLAVE; SELECT MASTER_GTID_WAIT('$P1', 3600)")
  t1=$(now)
  c1=$(cpu_of "${NPID[$n]}"); s1=$(cpu_of "$SRC_PID")
  [ "$r" = 0 ] || { sql "${NSOCK[$n]}" -e 'SHOW SLAVE STATUS\G' >&2; die "$n did not reach $P1"; }
  echo "$(elapsed "$t0" "$t1") $(fsub "$c1" "$c0") $(fsub "$s1" "$s0")"
}

# Row counts and CHECKSUM TABLE of every table: source = dst = each replica.
verify_round() {
  local t ref got s
  for t in $(seq -f 'sbtest%g' 1 "$TABLES"); do
    ref=$(sql "$SRC_SOCK" -N src -e "SELECT COUNT(*) FROM $t; CHECKSUM TABLE $t" | awk '{print $NF}' | paste -sd' ')
    for s in "dst:$DST_SOCK:dst" "native:${NSOCK[native]}:src" "native-parallel:${NSOCK[native-parallel]}:src"; do
      IFS=: read -r name sock db <<<"$s"
      got=$(sql "$sock" -N "$db" -e "SELECT COUNT(*) FROM $t; CHECKSUM TABLE $t" | awk '{print $NF}' | paste -sd' ')
      [ "$got" = "$ref" ] || die "verify: $name $db.$t has (rows checksum) '$got', source has '$ref'"
    done
  done
  say "   verified: $TABLES tables, row counts and CHECKSUM TABLE equal on source, keyshift target, both replicas"
}

say "== syncing every applier to the source"
sync_all

declare -A T C SC
NTXS=""
order=(keyshift native native-parallel)
for r in $(seq 1 "$ROUNDS"); do
  say "== round $r/$ROUNDS: stop all appliers, build the backlog"
  stop_all
  build_backlog
  NTXS="$NTXS $NTX"
  k=$(( (r - 1) % 3 ))
  this=("${order[@]:$k}" "${order[@]:0:$k}")
  for side in "${this[@]}"; do
    case $side in
      keyshift) out=$(run_keyshift) ;;
      native|native-parallel) out=$(run_native "$side") ;;
    esac
    read -r s c sc <<<"$out"
    rate=$(python3 -c "print(f'{$NTX/max($s,0.001):,.0f}')")
    say "   round $r $side: ${s}s, $rate tx/s (cpu s: applier ${c}, source ${sc})"
    T[$side]="${T[$side]:-} $s"
    C[$side]="${C[$side]:-} $c"
    SC[$side]="${SC[$side]:-} $sc"
  done
  verify_round
done

# --- optional profile ----------------------------------------------------------
if [ -n "${PROFILE:-}" ]; then
  if command -v perf >/dev/null; then
    say "== profile: one more (untimed) keyshift catch-up under perf record"
    stop_all
    build_backlog
    # DWARF call graphs: release builds have no frame pointers.
    perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$NODE_PID,$DST_PID,$SRC_PID" \
      -o "$WORK/perf.data" >"$WORK/perf.log" 2>&1 &
    PERF_PID=$!
    sleep 1
    out=$(run_keyshift)
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    say "   profiled catch-up: $out (s, cpu s node+target, source) for $NTX transactions (slowed by perf)"
    prep() { perf report -i "$WORK/perf.data" --stdio -g none --percent-limit 0.5 "$@" 2>/dev/null | grep -v '^#' | grep '%' || true; }
    {
      echo "### CPU samples by process and thread (node, target mariadbd, source mariadbd)"
      prep --no-children --sort pid,comm | head -20
      echo
      echo "### keyshift node: inclusive (children) time of keyshift/mysql_async functions, top 45"
      prep --children --pid "$NODE_PID" --sort sym | grep -v '(inlined)' |
        grep -E 'keyshift_|mysql_async|mysql_common' | cut -c1-220 | head -45
      echo
      echo "### keyshift node: self time by function, top 30"
      prep --no-children --pid "$NODE_PID" --sort dso,sym | head -30
      echo
      echo "### target mariadbd: self time by function, top 25"
      prep --no-children --pid "$DST_PID" --sort dso,sym | head -25
    } >"$WORK/perf.txt"
    say "   profile: $WORK/perf.txt (KEEP=1 to keep)"
    cat "$WORK/perf.txt" >&2
    for n in "${NATIVES[@]}"; do run_native "$n" >/dev/null; done
  else
    say "== PROFILE=1 but perf is not installed; skipped"
  fi
fi

# --- summary -------------------------------------------------------------------
summary=$(python3 - "$NTXS" "${T[keyshift]}" "${T[native]}" "${T[native-parallel]}" \
  "${C[keyshift]}" "${C[native]}" "${C[native-parallel]}" "$PARALLEL" \
  "${SC[keyshift]}" "${SC[native]}" "${SC[native-parallel]}" <<'EOF'
import statistics, sys
ntx = [int(x) for x in sys.argv[1].split()]
names = ["keyshift", "native (1 SQL thread)", f"native-parallel ({sys.argv[8]} threads, optimistic)"]
secs = [[float(x) for x in a.split()] for a in sys.argv[2:5]]
# applier CPU: "node+target" for keyshift, one number for the replicas
cpus = [[[float(p) for p in x.split("+")] for x in a.split()] for a in sys.argv[5:8]]
srcs = [[float(x) for x in a.split()] for a in sys.argv[9:12]]
rates = [[n / max(s, 1e-3) for n, s in zip(ntx, r)] for r in secs]
med = [statistics.median(r) for r in rates]
def per_k(vals):
    return statistics.median([1000 * v / n for v, n in zip(vals, ntx)])
print(f"backlog per round (transactions): {' '.join(str(n) for n in ntx)}")
print()
print("| applier | rounds (s) | rounds (tx/s) | median tx/s | min–max tx/s |")
print("|---|---|---|---|---|")
for n, s, r, m in zip(names, secs, rates, med):
    print(f"| {n} | {' '.join(f'{x:.2f}' for x in s)} | {' '.join(f'{x:,.0f}' for x in r)} "
          f"| {m:,.0f} | {min(r):,.0f}–{max(r):,.0f} |")
print()
print(f"- keyshift / native: **{med[0]/med[1]:.2f}×** (median rates; target ≥ 1.0)")
print(f"- keyshift / native-parallel: **{med[0]/med[2]:.2f}×**")
print()
print("CPU seconds per 1000 transactions (median over rounds; utime+stime from /proc):")
print()
print("| applier | applier processes | source mariadbd (binlog dump) |")
print("|---|---|---|")
k = cpus[0]
print(f"| keyshift | {per_k([sum(x) for x in k]):.3f} (node {per_k([x[0] for x in k]):.3f} + target mariadbd {per_k([x[1] for x in k]):.3f}) | {per_k(srcs[0]):.3f} |")
for n, c, sc in zip(names[1:], cpus[1:], srcs[1:]):
    print(f"| {n} | {per_k([x[0] for x in c]):.3f} (replica mariadbd) | {per_k(sc):.3f} |")
EOF
)
printf '\n%s\n' "$summary"
if [ -n "${RESULTS:-}" ]; then
  { printf '\n## %s — `%s`\n\n' "$(date -u +%FT%TZ)" "$COMMAND"; printf '%s\n' "$summary"; } >>"$RESULTS"
fi
echo "check apply: ok — $ROUNDS round(s), backlogs of$NTXS transactions; keyshift, native and native-parallel reached the source's position and hold the same rows (count and CHECKSUM TABLE of $TABLES tables)"
