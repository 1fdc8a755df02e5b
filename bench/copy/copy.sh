#!/usr/bin/env bash
# The copy benchmark (issue 4 "Benchmark", issue 9 "copy"): ROWS sysbench rows
# of one table moved from an unsharded keyspace into a 2-shard keyspace by a
# keyshift MoveTables workflow (--stop-after-copy), against
#   mydumper --threads 2 | myloader --threads 2   (also with --enable-binlog)
#   and   mariadb-dump | mariadb
# moving the same table in the same run, alternating who goes first.
#
# Usage: bench/copy/copy.sh [ROWS] [ROUNDS]      (defaults 1000000 3)
# Env:   KEYSHIFT_BIN=<binary> (default: target/release/keyshift, built first
#        unless SKIP_BUILD=1)  SKIP_INSTALL=1  KEEP=1  NODE_LOG=<file>  RESULTS=<file to append a
#        summary to>
#
# Checks (every round; any failure exits non-zero): the keyshift target's two
# shards together, and each peer's copy, hold exactly the source's rows: the
# same row count and the same sum of CRC32 over every column of every row.
# On success the last line is "check copy: ok ...".
#
# Layout (one `keyshift up --detach` cluster, managed tablets = real mariadbd):
#   src              unsharded, loaded once with `sysbench ... prepare` (the
#                    source the peers read).
#   srcN, dstN       one pair per keyshift round. keyshift has no workflow
#                    cancel/delete yet, and a stopped workflow still "holds"
#                    its table against any new workflow sharing a keyspace,
#                    so every round gets a fresh source keyspace (a copy of
#                    src made untimed with mariadb-dump) and a fresh 2-shard
#                    target (-80, 80-) with a hash vindex on sbtest1.id.
#   peers            load ALL rows into ONE server (the dst1 -80 tablet,
#                    databases peer_mydumper / peer_dump), because they cannot
#                    split rows by vindex hash. That is a favour to them: they
#                    write into one server instead of fanning out to two.
#
# Before each timed copy the script waits until every mariadbd is idle (the
# previous copy's page flushing and purge would otherwise be charged to the
# next contender).
#
# Timings are wall clock: keyshift = `workflow create` until
# `workflow show --wait-for stopped` returns (copy finished, secondary keys
# re-added); mydumper = dump + load; mariadb-dump = the pipe. Peak RSS of the
# keyshift node: VmHWM of its pid, reset (clear_refs 5) before each copy.
set -euo pipefail

ROWS=${1:-1000000}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
. "$ROOT/bench/lib.sh"
THREADS=2
COMMAND="bench/copy/copy.sh $ROWS $ROUNDS"

say() { printf '%s\n' "$*" >&2; }
die() { say "copy.sh: $*"; exit 1; }

# --- tools -------------------------------------------------------------------
if [ -z "${SKIP_INSTALL:-}" ]; then
  missing=()
  command -v mydumper >/dev/null && command -v myloader >/dev/null || missing+=(mydumper)
  command -v sysbench >/dev/null || missing+=(sysbench)
  command -v mariadb >/dev/null && command -v mariadb-dump >/dev/null || missing+=(mariadb-client)
  if [ ${#missing[@]} -gt 0 ]; then
    say "== apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
  fi
fi
for tool in mydumper myloader sysbench mariadb mariadb-dump python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

keyshift_bin "$ROOT"

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$1" "$2"; }

# --- cluster -----------------------------------------------------------------
WORK=$(mktemp -d /tmp/ks-copy.XXXXXX)
CLUSTER=$WORK/keyshift.toml
DATA=$WORK/data
KS() { "$BIN" --cluster "$CLUSTER" "$@"; }

cleanup() {
  local rc=$?
  KS down >/dev/null 2>&1 || true
  # NODE_LOG=<file>: keep the node's log (run with KEYSHIFT_LOG=info,keyshift_vrepl=debug
  # for per-batch read and write times).
  if [ -n "${NODE_LOG:-}" ]; then cp "$WORK/data/keyshift.log" "$NODE_LOG" 2>/dev/null || true; fi
  if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else say "kept $WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
  cat <<EOF
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
EOF
  for r in $(seq 1 "$ROUNDS"); do
    printf '\n[[keyspace]]\nname = "src%s"\n\n[[keyspace]]\nname = "dst%s"\nshards = ["-80", "80-"]\n' "$r" "$r"
  done
} >"$CLUSTER"

say "== keyshift up --detach ($WORK, $((1 + 3 * ROUNDS)) managed mariadbd)"
KS up --detach >&2
NODE_PID=$(ready_field "$DATA" pid)

tablets_json=$(KS tablet list --format json)
# keyspace shard -> unix socket of its managed tablet (root needs no password there)
socket_of() {
  local alias dir sock
  alias=$(printf '%s' "$tablets_json" | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["keyspace"] == sys.argv[1] and t["shard"] == sys.argv[2]:
        print(t["alias"]); break' "$1" "$2")
  [ -n "$alias" ] || die "no tablet for $1/$2"
  dir=$DATA/tablets/$alias
  sock=$(tablet_socket "$dir") || die "no socket for tablet $alias of $1/$2"
  printf '%s' "$sock"
}
sql() { mariadb --no-defaults -uroot -S "$1" "${@:2}"; }
# CPU accounting: where a copy's CPU goes, and how busy it kept the machine.
pid_of_sock() { # socket -> pid of the mariadbd serving it
  local p
  for p in $(pgrep -x mariadbd); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--socket=$1 " && { echo "$p"; return; }
  done
  die "no mariadbd serves $1"
}
cpu_s() { # pid -> utime+stime in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}
cpu_line() { # wall "label=before:after"... -> one summary line on stderr
  python3 - "$@" <<'PY'
import os, sys
wall = float(sys.argv[1])
parts, total = [], 0.0
for a in sys.argv[2:]:
    label, span = a.split("=")
    b, e = (float(x) for x in span.split(":"))
    parts.append(f"{label} {e - b:.2f}")
    total += e - b
n = os.cpu_count()
print(f"   cpu s: {', '.join(parts)}; total {total:.2f} over {wall:.2f} s wall "
      f"= {100 * total / (wall * n):.0f}% of {n} cores", file=sys.stderr)
PY
}

SRC_SOCK=$(socket_of src 0)
PEER_SOCK=$(socket_of dst1 -80)

say "== loading $ROWS rows into src.sbtest1 (sysbench prepare over the socket)"
sysbench oltp_read_write --tables=1 --table-size="$ROWS" --mysql-socket="$SRC_SOCK" \
  --mysql-user=root --mysql-db=src prepare >/dev/null
# The source's "rows crc32-sum": what every copy must hold.
REF=$(table_sum "$SRC_SOCK" src sbtest1)
[ "${REF%% *}" = "$ROWS" ] || die "src.sbtest1 holds ${REF%% *} rows after prepare, not $ROWS"

vschema='{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
  "tables": {"sbtest1": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}'
for r in $(seq 1 "$ROUNDS"); do
  say "== src$r: untimed copy of src.sbtest1; dst$r: VSchema"
  mariadb-dump --no-defaults -uroot -S "$SRC_SOCK" --single-transaction src sbtest1 |
    sql "$(socket_of "src$r" 0)" "src$r"
  got=$(table_sum "$(socket_of "src$r" 0)" "src$r" sbtest1)
  [ "$got" = "$REF" ] || die "src$r.sbtest1 (rows crc-sum) '$got' differs from src's '$REF'"
  KS vschema apply "dst$r" --json "$vschema" >&2
done

# --- the three contenders ----------------------------------------------------
sum_dst() { # round -> "rows crc-sum" over both shards
  local a b
  a=$(table_sum "$(socket_of "dst$1" -80)" "dst$1" sbtest1)
  b=$(table_sum "$(socket_of "dst$1" 80-)" "dst$1" sbtest1)
  say "   dst$1 shards: -80 ${a%% *} rows, 80- ${b%% *} rows"
  [ "${a%% *}" != 0 ] && [ "${b%% *}" != 0 ] || die "dst$1: a shard got no rows (-80: $a, 80-: $b)"
  add_sums "$a" "$b"
}

run_keyshift() { # round -> seconds; sets LAST_HWM_MB
  local r=$1 t0 t1 ps pl pr c0 c1 c2 c3
  echo 5 >"/proc/$NODE_PID/clear_refs" 2>/dev/null || say "   (could not reset VmHWM; peak is since start)"
  ps=$(pid_of_sock "$(socket_of "src$r" 0)")
  pl=$(pid_of_sock "$(socket_of "dst$r" -80)")
  pr=$(pid_of_sock "$(socket_of "dst$r" 80-)")
  c0=$(cpu_s "$NODE_PID"); c1=$(cpu_s "$ps"); c2=$(cpu_s "$pl"); c3=$(cpu_s "$pr")
  t0=$(now)
  KS workflow create --name "copy$r" --source-keyspace "src$r" --target-keyspace "dst$r" \
    --tables sbtest1 --stop-after-copy >/dev/null
  KS workflow show "copy$r" --wait-for stopped --timeout 3600s >/dev/null 2>&1 ||
    { KS workflow show "copy$r" >&2 || true; die "workflow copy$r did not reach stopped"; }
  t1=$(now)
  cpu_line "$(elapsed "$t0" "$t1")" "node=$c0:$(cpu_s "$NODE_PID")" "source=$c1:$(cpu_s "$ps")" \
    "-80=$c2:$(cpu_s "$pl")" "80-=$c3:$(cpu_s "$pr")"
  LAST_HWM_MB=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$NODE_PID/status")
  # Where the time went, from the workflow's own phase stamps and events.
  KS workflow show "copy$r" --format json | python3 -c '
import json, sys
w = json.load(sys.stdin)
t0 = w["created_ms"]
at = lambda ms: "%.2fs" % ((ms - t0) / 1000)
parts = ["%s at %s" % (p["state"], at(p["at_ms"])) for p in w["phases"]]
parts += ["%s at %s" % (e["message"], at(e["at_ms"]))
          for e in w["events"] if "deferred secondary" in e["message"]]
print("   phases (from create): " + ", ".join(parts), file=sys.stderr)' || true
  local n; n=$(sum_dst "$r")
  [ "$n" = "$REF" ] || die "keyshift round $r: dst$r holds (rows crc-sum) '$n', the source '$REF'"
  elapsed "$t0" "$t1"
}

run_mydumper() { # [extra myloader flags...] -> seconds
  local dir=$WORK/mydumper t0 t1 n attempt
  local ps pp c1 c2 ct=$WORK/client-cpu
  ps=$(pid_of_sock "$SRC_SOCK"); pp=$(pid_of_sock "$PEER_SOCK")
  # myloader 0.10 (Debian 12) loads chunks in parallel and now and then
  # dies of an InnoDB deadlock between its own threads, leaving the table
  # short. Such an attempt is reported and the copy run again (timed from
  # scratch); three failures in a row end the benchmark.
  for attempt in 1 2 3; do
    rm -rf "$dir"
    sql "$PEER_SOCK" -e 'DROP DATABASE IF EXISTS peer_mydumper; CREATE DATABASE peer_mydumper'
    c1=$(cpu_s "$ps"); c2=$(cpu_s "$pp"); : >"$ct"
    t0=$(now)
    # src holds only sbtest1; no --tables-list (mydumper 0.10 with --database
    # and --tables-list src.sbtest1 dumped the schema but no table).
    /usr/bin/time -a -o "$ct" -f "%U %S" mydumper --threads "$THREADS" --socket "$SRC_SOCK" \
      --user root --database src --rows 50000 --outputdir "$dir" >&2
    /usr/bin/time -a -o "$ct" -f "%U %S" myloader --threads "$THREADS" --socket "$PEER_SOCK" \
      --user root --directory "$dir" --source-db src --database peer_mydumper --overwrite-tables \
      "$@" >&2 || true
    t1=$(now)
    n=$(table_sum "$PEER_SOCK" peer_mydumper sbtest1)
    if [ "$n" = "$REF" ]; then
      cpu_line "$(elapsed "$t0" "$t1")" "mydumper+myloader=0:$(awk '{s += $1 + $2} END {print s}' "$ct")" \
        "source=$c1:$(cpu_s "$ps")" "target=$c2:$(cpu_s "$pp")"
      elapsed "$t0" "$t1"
      return
    fi
    say "   mydumper/myloader attempt $attempt failed: (rows crc-sum) '$n', the source '$REF'; running it again"
  done
  die "mydumper/myloader failed three times in a row"
}

run_dump() {
  local t0 t1 n
  sql "$PEER_SOCK" -e 'DROP DATABASE IF EXISTS peer_dump; CREATE DATABASE peer_dump'
  local ps pp c1 c2 ct=$WORK/client-cpu
  ps=$(pid_of_sock "$SRC_SOCK"); pp=$(pid_of_sock "$PEER_SOCK")
  c1=$(cpu_s "$ps"); c2=$(cpu_s "$pp"); : >"$ct"
  t0=$(now)
  /usr/bin/time -a -o "$ct" -f "%U %S" mariadb-dump --no-defaults -uroot -S "$SRC_SOCK" \
    --single-transaction src sbtest1 |
    /usr/bin/time -a -o "$ct" -f "%U %S" mariadb --no-defaults -uroot -S "$PEER_SOCK" peer_dump
  t1=$(now)
  cpu_line "$(elapsed "$t0" "$t1")" "dump+client=0:$(awk '{s += $1 + $2} END {print s}' "$ct")" \
    "source=$c1:$(cpu_s "$ps")" "target=$c2:$(cpu_s "$pp")"
  n=$(table_sum "$PEER_SOCK" peer_dump sbtest1)
  [ "$n" = "$REF" ] || die "mariadb-dump: (rows crc-sum) '$n', the source '$REF'"
  elapsed "$t0" "$t1"
}

# Waits until this benchmark's servers are idle: a copy leaves InnoDB
# flushing dirty pages and purging for seconds afterwards (after the untimed
# setup copies, ten servers at ~10% of a core each), which would otherwise be
# charged to the next contender. Only the mariadbd under $WORK count (others
# on the machine, e.g. a test suite's, are none of our business). At most 60
# s; says so if they never settle.
quiesce() {
  local i busy
  for i in $(seq 1 60); do
    busy=$(python3 - "$WORK" <<'PY'
import os, sys, time
hz = os.sysconf("SC_CLK_TCK")
ours = []
for p in os.listdir("/proc"):
    try:
        if p.isdigit() and open(f"/proc/{p}/comm").read().strip() == "mariadbd" \
                and sys.argv[1].encode() in open(f"/proc/{p}/cmdline", "rb").read():
            ours.append(p)
    except OSError:
        pass
def total():
    s = 0
    for p in ours:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            s += int(f[11]) + int(f[12])
        except OSError:
            pass
    return s
a = total(); time.sleep(1); b = total()
print(int(100 * (b - a) / hz))
PY
)
    [ "$busy" -lt 5 ] && return 0
  done
  say "   (the servers stayed busy: ${busy}% of a core)"
}

declare -A T
HWM=""
# mydumper-binlog: myloader --enable-binlog. By default myloader turns the
# binary log off for its sessions (SET SQL_LOG_BIN=0), so a replica of the
# target never sees the rows; keyshift's copy, like mariadb-dump | mariadb,
# is binlogged (the target shard's replicas and backups need it). Both
# myloader modes are timed; the default one is the issue's comparison.
order=(keyshift mydumper mariadb-dump mydumper-binlog)
for r in $(seq 1 "$ROUNDS"); do
  # rotate the order each round so drift does not favour one side
  k=$(( (r - 1) % ${#order[@]} ))
  this=("${order[@]:$k}" "${order[@]:0:$k}")
  for side in "${this[@]}"; do
    quiesce
    case $side in
      keyshift) s=$(run_keyshift "$r"); hwm=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$NODE_PID/status"); HWM="$HWM $hwm"
                say "   round $r keyshift: ${s}s (node peak RSS ${hwm} MB)";;
      mydumper) s=$(run_mydumper); say "   round $r mydumper/myloader: ${s}s";;
      mydumper-binlog) s=$(run_mydumper --enable-binlog); say "   round $r mydumper/myloader --enable-binlog: ${s}s";;
      mariadb-dump) s=$(run_dump); say "   round $r mariadb-dump|mariadb: ${s}s";;
    esac
    T[$side]="${T[$side]:-} $s"
  done
done

# --- summary -----------------------------------------------------------------
summary=$(python3 - "$ROWS" "${T[keyshift]}" "${T[mydumper]}" "${T[mariadb-dump]}" "${T[mydumper-binlog]}" "$HWM" <<'EOF'
import statistics, sys
rows = int(sys.argv[1])
names = ["keyshift", "mydumper/myloader", "mariadb-dump \\| mariadb", "mydumper/myloader --enable-binlog"]
runs = [[float(x) for x in a.split()] for a in sys.argv[2:6]]
hwm = sys.argv[6].split()
med = [statistics.median(r) for r in runs]
print("| tool | rounds (s) | median (s) | min–max (s) | rows/s (median) |")
print("|---|---|---|---|---|")
for n, r, m in zip(names, runs, med):
    print(f"| {n} | {' '.join(f'{x:.2f}' for x in r)} | {m:.2f} | {min(r):.2f}–{max(r):.2f} | {rows/m:,.0f} |")
print()
for n, m in zip(names[1:], med[1:]):
    print(f"- keyshift speed vs {n}: {m/med[0]:.2f}× (peer median / keyshift median; > 1 = keyshift faster)")
print(f"- keyshift node peak RSS per copy (VmHWM, MB): {' '.join(hwm)}")
EOF
)
printf '\n%s\n' "$summary"
if [ -n "${RESULTS:-}" ]; then
  { printf '\n## %s — `%s`\n\n' "$(date -u +%FT%TZ)" "$COMMAND"; printf '%s\n' "$summary"; } >>"$RESULTS"
fi
echo "check copy: ok — $ROUNDS round(s) of $ROWS rows; keyshift (2 shards), mydumper/myloader (with and without --enable-binlog) and mariadb-dump | mariadb each hold the source's rows (count and CRC32 sum equal)"
