#!/usr/bin/env bash
# The VDiff benchmark (issue 5 "Benchmark"): ROWS sysbench rows moved by a
# keyshift MoveTables workflow from an unsharded keyspace into 2 shards, then
# verified, alternately, by
#   keyshift      `workflow verify-data --wait` (checksummed key ranges, rows
#                 only where ranges differ; reports row-level differences)
#   keyshift-rows `workflow verify-data --wait --row-level` (every row shipped
#                 and compared in keyshift)
#   pt-table-checksum  on the source and both target shards at once
#   naive         `SELECT * ORDER BY id | md5sum` on the source, and the two
#                 target shards' ordered SELECTs merged with `sort -m` | md5sum
# ROUNDS rounds each, rotating who goes first.
#
# Usage: bench/verify/verify.sh [ROWS] [ROUNDS]      (defaults 1000000 3)
# Env:   KEYSHIFT_BIN=<binary> (default: target/release/keyshift, built first
#        unless SKIP_BUILD=1)  SKIP_INSTALL=1  KEEP=1  RESULTS=<file to append a
#        summary to>
#
# Checks (every run; any failure exits non-zero): each keyshift report is
# completed with no mismatch and compared ROWS rows, all matching;
# pt-table-checksum reported no errors and checksummed ROWS rows on the source
# and ROWS over the two shards; the naive hashes of both sides are equal.
# On success the last line is "check verify: ok ...".
set -euo pipefail

ROWS=${1:-1000000}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
. "$ROOT/bench/lib.sh"
COMMAND="bench/verify/verify.sh $ROWS $ROUNDS"

say() { printf '%s\n' "$*" >&2; }
die() { say "verify.sh: $*"; exit 1; }

# --- tools -------------------------------------------------------------------
if [ -z "${SKIP_INSTALL:-}" ]; then
  missing=()
  command -v pt-table-checksum >/dev/null || missing+=(percona-toolkit)
  command -v sysbench >/dev/null || missing+=(sysbench)
  command -v mariadb >/dev/null || missing+=(mariadb-client)
  if [ ${#missing[@]} -gt 0 ]; then
    say "== apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
  fi
fi
for tool in pt-table-checksum sysbench mariadb md5sum python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

keyshift_bin "$ROOT"

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$1" "$2"; }

# --- cluster -----------------------------------------------------------------
WORK=$(mktemp -d /tmp/ks-verify.XXXXXX)
CLUSTER=$WORK/keyshift.toml
DATA=$WORK/data
KS() { "$BIN" --cluster "$CLUSTER" "$@"; }

cleanup() {
  local rc=$?
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
shards = ["-80", "80-"]
EOF

say "== keyshift up --detach ($WORK, 3 managed mariadbd)"
KS up --detach >&2
NODE_PID=$(ready_field "$DATA" pid)

tablets_json=$(KS tablet list --format json)
socket_of() { # keyspace shard -> unix socket of its managed tablet
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

SRC_SOCK=$(socket_of src 0)
A_SOCK=$(socket_of dst -80)
B_SOCK=$(socket_of dst 80-)

say "== loading $ROWS rows into src.sbtest1 (sysbench prepare over the socket)"
sysbench oltp_read_write --tables=1 --table-size="$ROWS" --mysql-socket="$SRC_SOCK" \
  --mysql-user=root --mysql-db=src prepare >/dev/null

KS vschema apply dst --json '{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
  "tables": {"sbtest1": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}' >&2
say "== moving it (untimed): workflow bench src -> dst"
KS workflow create --name bench --source-keyspace src --target-keyspace dst \
  --tables sbtest1 --copy-batch-rows 10000 >/dev/null
KS workflow show bench --wait-for running --caught-up --timeout 3600s >/dev/null 2>&1 ||
  { KS workflow show bench >&2 || true; die "workflow bench did not reach running"; }

# --- the contenders ----------------------------------------------------------
run_keyshift() { # extra args -> seconds; checks the report
  local t0 t1 out
  echo 5 >"/proc/$NODE_PID/clear_refs" 2>/dev/null || say "   (could not reset VmHWM; peak is since start)"
  t0=$(now)
  out=$(KS workflow verify-data bench --wait --format json --timeout 3600s "$@") ||
    die "verify-data $* failed: $out"
  t1=$(now)
  printf '%s' "$out" | python3 -c '
import json, sys
r = json.load(sys.stdin); t = r["tables"][0]
assert r["state"] == "completed" and not r["has_mismatch"], r
assert t["rows_compared"] == int(sys.argv[1]) == t["matching"], t' "$ROWS" ||
    die "keyshift report is not clean: $out"
  elapsed "$t0" "$t1"
}

pt_one() { # socket db -> errors and rows it checksummed
  # --replicate-database: its statement-based REPLACEs into percona.checksums
  # then run with `USE percona`, which the workflow's stream ignores (with
  # `USE src` the stream stops: statement-based events in its database).
  pt-table-checksum --no-check-binlog-format --recursion-method=none \
    --no-check-replication-filters --replicate-database percona \
    --databases "$2" --tables sbtest1 \
    --replicate percona.checksums "h=localhost,S=$1,u=root" 2>&1 |
    awk '$NF ~ /sbtest1$/ { print $2 " " $4 }'
}

run_pt() {
  local t0 t1 s a b
  t0=$(now)
  pt_one "$SRC_SOCK" src >"$WORK/pt.src" &
  pt_one "$A_SOCK" dst >"$WORK/pt.a" &
  pt_one "$B_SOCK" dst >"$WORK/pt.b" &
  wait
  t1=$(now)
  read -r es s <"$WORK/pt.src"; read -r ea a <"$WORK/pt.a"; read -r eb b <"$WORK/pt.b"
  [ "$es$ea$eb" = "000" ] || die "pt-table-checksum reported errors ($es $ea $eb)"
  [ "$s" = "$ROWS" ] && [ $((a + b)) = "$ROWS" ] || die "pt-table-checksum rows: src $s, dst $a + $b"
  elapsed "$t0" "$t1"
}

naive_sel() { sql "$1" -N -B "$2" -e 'SELECT * FROM sbtest1 ORDER BY id'; }

run_naive() {
  local t0 t1 x y
  t0=$(now)
  naive_sel "$SRC_SOCK" src | md5sum >"$WORK/naive.src" &
  sort -m -n -t "$(printf '\t')" -k1,1 <(naive_sel "$A_SOCK" dst) <(naive_sel "$B_SOCK" dst) |
    md5sum >"$WORK/naive.dst" &
  wait
  t1=$(now)
  x=$(cat "$WORK/naive.src"); y=$(cat "$WORK/naive.dst")
  [ "$x" = "$y" ] || die "naive hashes differ: $x vs $y"
  elapsed "$t0" "$t1"
}

declare -A T
HWM=""
order=(keyshift keyshift-rows pt naive)
for r in $(seq 1 "$ROUNDS"); do
  k=$(( (r - 1) % ${#order[@]} ))
  this=("${order[@]:$k}" "${order[@]:0:$k}")
  for side in "${this[@]}"; do
    case $side in
      keyshift) s=$(run_keyshift); hwm=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$NODE_PID/status"); HWM="$HWM $hwm"
                say "   round $r keyshift: ${s}s (node peak RSS ${hwm} MB)";;
      keyshift-rows) s=$(run_keyshift --row-level); hwm=$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$NODE_PID/status"); HWM="$HWM $hwm"
                say "   round $r keyshift --row-level: ${s}s (node peak RSS ${hwm} MB)";;
      pt) s=$(run_pt); say "   round $r pt-table-checksum: ${s}s";;
      naive) s=$(run_naive); say "   round $r naive ordered SELECT | md5sum: ${s}s";;
    esac
    T[$side]="${T[$side]:-} $s"
  done
done

# --- summary -----------------------------------------------------------------
summary=$(python3 - "$ROWS" "${T[keyshift]}" "${T[keyshift-rows]}" "${T[pt]}" "${T[naive]}" "$HWM" <<'EOF'
import statistics, sys
rows = int(sys.argv[1])
names = ["keyshift verify-data", "keyshift verify-data --row-level", "pt-table-checksum (3 servers at once)", "naive ordered SELECT \\| md5sum"]
runs = [[float(x) for x in a.split()] for a in sys.argv[2:6]]
hwm = sys.argv[6].split()
med = [statistics.median(r) for r in runs]
print("| tool | rounds (s) | median (s) | min–max (s) | rows/s (median) |")
print("|---|---|---|---|---|")
for n, r, m in zip(names, runs, med):
    print(f"| {n} | {' '.join(f'{x:.2f}' for x in r)} | {m:.2f} | {min(r):.2f}–{max(r):.2f} | {rows/m:,.0f} |")
print()
for i in (2, 3):
    print(f"- keyshift vs {names[i]}: {med[i]/med[0]:.2f}× (peer median / keyshift median; > 1 = keyshift faster)")
    print(f"- keyshift --row-level vs {names[i]}: {med[i]/med[1]:.2f}×")
print(f"- keyshift node peak RSS per run (VmHWM, MB; checksum and row-level runs in round order): {' '.join(hwm)}")
EOF
)
printf '\n%s\n' "$summary"
if [ -n "${RESULTS:-}" ]; then
  { printf '\n## %s — `%s`\n\n' "$(date -u +%FT%TZ)" "$COMMAND"; printf '%s\n' "$summary"; } >>"$RESULTS"
fi
echo "check verify: ok — $ROUNDS round(s) of $ROWS rows; keyshift verify-data (checksum and --row-level) reported no differences, pt-table-checksum ran without errors over every row, the naive hashes are equal"
