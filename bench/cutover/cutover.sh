#!/usr/bin/env bash
# The cutover benchmark (issue 6 "Benchmark", issue 9 "cutover"): the pause
# clients see while `switch-traffic` / `reverse-traffic` move sysbench's table
# between an unsharded keyspace and a 2-shard one, with sysbench running at a
# steady rate through the gate.
#
# Usage: bench/cutover/cutover.sh [ROUNDS] [RATE] [SECONDS]   (defaults 3 200 12)
# Env:   KEYSHIFT_BIN=<binary> (default: target/release/keyshift, built first
#        unless SKIP_BUILD=1)  KEEP=1  RESULTS=<file to append the summary to>
#
# Each round runs sysbench oltp_read_write (1 thread, --rate=RATE
# transactions/s, SECONDS long) three times through the gate:
#   baseline   no switch;
#   switch     `keyshift workflow switch-traffic` at SECONDS/2;
#   back       `keyshift workflow reverse-traffic` at SECONDS/2.
# The pause is what the switch adds to a transaction's latency: sysbench's
# max (and 99th percentile) latency in the switch runs against the baseline
# run of the same round. Errors are sysbench's "ignored errors" + failed
# runs (any error fails sysbench's run). Switch duration and held time are
# keyshift's own report (--format json). Targets: zero errors, longest pause
# under 1 s.
#
# Checks (any failure exits non-zero; the summary is printed first): every
# sysbench run ran transactions and had zero errors; every switch happened:
# its report is not a dry run and says switched_primaries (switch-traffic) or
# no longer switched (reverse-traffic), and the gate now reads the side that
# owns the table: a marker row written straight into that side's servers
# (customer's shards after switch-traffic, commerce after reverse-traffic),
# unlogged so no stream copies it, is found through the gate, and removed.
# On success the last line is "check cutover: ok ...".
set -euo pipefail

ROUNDS=${1:-3}
RATE=${2:-200}
SECONDS_PER_RUN=${3:-12}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib.sh
. "$ROOT/bench/lib.sh"
COMMAND="bench/cutover/cutover.sh $ROUNDS $RATE $SECONDS_PER_RUN"

say() { printf '%s\n' "$*" >&2; }
die() { say "cutover.sh: $*"; exit 1; }

for tool in sysbench mariadb python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-deps.sh --test)"
done
keyshift_bin "$ROOT"

WORK=$(mktemp -d /tmp/ks-cutover.XXXXXX)
CLUSTER=$WORK/keyshift.toml
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
name = "commerce"

[[keyspace]]
name = "customer"
shards = ["-80", "80-"]
EOF

say "== keyshift up --detach ($WORK)"
KS up --detach >&2
# The gate's bound port (it listens on port 0: no race with other servers).
GATE_PORT=$(ready_field "$WORK/data" gate)
GATE_PORT=${GATE_PORT##*:}
tablets_json=$(KS tablet list --format json)
socket_of() { # keyspace shard -> unix socket of its managed tablet
  local alias sock
  alias=$(printf '%s' "$tablets_json" | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["keyspace"] == sys.argv[1] and t["shard"] == sys.argv[2]:
        print(t["alias"]); break' "$1" "$2")
  [ -n "$alias" ] || die "no tablet for $1/$2"
  sock=$(tablet_socket "$WORK/data/tablets/$alias") || die "no socket for tablet $alias of $1/$2"
  printf '%s' "$sock"
}
COMMERCE_SOCK=$(socket_of commerce 0)
CUSTOMER_SOCKS=("$(socket_of customer -80)" "$(socket_of customer 80-)")

SB=(sysbench oltp_read_write --tables=1 --table-size=10000 --mysql-host=127.0.0.1
  --mysql-port="$GATE_PORT" --mysql-user=app --mysql-password=app-pw --mysql-db=commerce)
say "== sysbench prepare through the gate"
"${SB[@]}" prepare >/dev/null
KS vschema apply customer --json '{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
  "tables": {"sbtest1": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}' >&2
KS workflow create --name cut --source-keyspace commerce --target-keyspace customer --tables sbtest1 >&2
KS workflow show cut --wait-for running --caught-up --timeout 600s >/dev/null

# One sysbench run; with an action, runs it at the half. Prints
# "max_ms p99_ms errors transactions [duration_ms held_ms state dry_run]".
run() {
  local action=${1:-} out sbpid report=""
  out=$WORK/sb.out
  "${SB[@]}" --threads=1 --rate="$RATE" --time="$SECONDS_PER_RUN" --percentile=99 \
    --report-interval=0 --db-ps-mode=auto run >"$out" 2>&1 &
  sbpid=$!
  if [ -n "$action" ]; then
    sleep $((SECONDS_PER_RUN / 2))
    report=$(KS workflow "$action" cut --format json) || { kill $sbpid; die "$action failed"; }
  fi
  local ok=0
  wait $sbpid || ok=$?
  python3 - "$out" "$ok" "$report" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
def num(label):
    m = re.search(r"^\s*" + re.escape(label) + r"\s+([0-9.]+)", text, re.M)
    return float(m.group(1)) if m else float("nan")
failed = 0 if sys.argv[2] == "0" and "FATAL" not in text else 1
errors = num("ignored errors:") + failed
extra = ""
if sys.argv[3]:
    r = json.loads(sys.argv[3])
    extra = f" {r['duration_ms']} {r.get('held_ms') or 0} {r['state']} {str(r['dry_run']).lower()}"
print(f"{num('max:')} {num('99th percentile:')} {int(errors)} {int(num('transactions:'))}{extra}")
PY
}

# Did the switch happen? A marker row (id far above sysbench's) written
# straight into the servers of the side that owns the table now, with
# sql_log_bin=0 so that no stream copies it to the other side, must be what
# the gate reads. (Into both customer shards: the gate asks the one that owns
# the id.) Removed again the same way.
MARKER=900000000
check_routed() { # action
  local want socks n s
  MARKER=$((MARKER + 1))
  if [ "$1" = switch-traffic ]; then want=customer; socks=("${CUSTOMER_SOCKS[@]}")
  else want=commerce; socks=("$COMMERCE_SOCK"); fi
  for s in "${socks[@]}"; do
    mariadb --no-defaults -uroot -S "$s" "$want" -e "SET sql_log_bin = 0;
      INSERT INTO sbtest1 (id, k, c, pad) VALUES ($MARKER, 0, 'cutover-marker', 'x')"
  done
  n=$(mariadb --no-defaults -N -h127.0.0.1 -P"$GATE_PORT" -uapp -papp-pw commerce \
    -e "SELECT COUNT(*) FROM sbtest1 WHERE id = $MARKER") || die "$1: reading through the gate failed"
  for s in "${socks[@]}"; do
    mariadb --no-defaults -uroot -S "$s" "$want" -e "SET sql_log_bin = 0; DELETE FROM sbtest1 WHERE id = $MARKER"
  done
  [ "$n" = 1 ] || die "$1: the gate does not read $want (a row only $want has: found $n times): traffic was not switched"
  say "   $1: the gate reads $want"
}

declare -a BASE_MAX BASE_P99 SW_PAUSE SW_P99 SW_DUR SW_HELD ERRS
TXS=0
for r in $(seq 1 "$ROUNDS"); do
  for action in switch-traffic reverse-traffic; do
    say "== round $r: baseline"
    read -r bmax bp99 berr btx <<<"$(run)"
    say "   baseline: max ${bmax} ms, p99 ${bp99} ms, errors $berr, $btx transactions"
    say "== round $r: $action"
    read -r smax sp99 serr stx dur held state dry <<<"$(run "$action")"
    say "   $action: max ${smax} ms, p99 ${sp99} ms, errors $serr, $stx transactions; switch ${dur} ms, held ${held} ms, now $state"
    [ "$btx" -gt 0 ] && [ "$stx" -gt 0 ] || die "round $r $action: a sysbench run ran no transactions ($btx, $stx)"
    TXS=$((TXS + btx + stx))
    [ "$dry" = false ] || die "round $r $action: the report is a dry run"
    if [ "$action" = switch-traffic ]; then
      [ "$state" = switched_primaries ] || die "round $r: switch-traffic left the workflow $state, not switched_primaries"
    else
      [ "$state" != switched_primaries ] || die "round $r: reverse-traffic left the workflow switched_primaries"
    fi
    check_routed "$action"
    BASE_MAX+=("$bmax"); BASE_P99+=("$bp99")
    SW_PAUSE+=("$(python3 -c "print(max(0.0, $smax - $bmax))")")
    SW_P99+=("$(python3 -c "print($sp99 - $bp99)")")
    SW_DUR+=("$dur"); SW_HELD+=("$held"); ERRS+=("$((berr + serr))")
    # The next switch needs the streams that feed the other side caught up.
    if [ "$action" = switch-traffic ]; then
      KS workflow show cut_reverse --wait-for running --caught-up --timeout 120s >/dev/null
    else
      KS workflow show cut --wait-for running --caught-up --timeout 120s >/dev/null
    fi
  done
done

summary=$(python3 - "${SW_PAUSE[*]}" "${SW_P99[*]}" "${SW_DUR[*]}" "${SW_HELD[*]}" "${ERRS[*]}" "${BASE_MAX[*]}" <<'PY'
import statistics, sys
cols = [list(map(float, a.split())) for a in sys.argv[1:]]
names = ["added max latency (pause) ms", "added p99 latency ms", "switch duration ms",
         "statements held ms", "errors (sysbench)", "baseline max latency ms"]
print("| measure | median | min – max |")
print("|---|---|---|")
for n, c in zip(names, cols):
    print(f"| {n} | {statistics.median(c):.1f} | {min(c):.1f} – {max(c):.1f} |")
pause = max(cols[0])
errs = sum(cols[4])
print()
print(f"longest pause {pause:.1f} ms (target < 1000 ms): {'met' if pause < 1000 else 'MISSED'}; "
      f"errors {errs:.0f} (target 0): {'met' if errs == 0 else 'MISSED'}")
PY
)
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(mariadbd --version 2>/dev/null | head -1 | awk '{print $3}')"
report="### cutover — $(date -u +%Y-%m-%d) — \`$COMMAND\`

Machine: $machine. sysbench oltp_read_write, 1 thread, $RATE tx/s, ${SECONDS_PER_RUN} s per run; each of the $((ROUNDS * 2)) switches (alternately switch-traffic and reverse-traffic) against a baseline run just before it.

$summary
"
printf '%s\n' "$report"
if [ -n "${RESULTS:-}" ]; then printf '%s\n' "$report" >>"$RESULTS"; fi

total_errors=0
for e in "${ERRS[@]}"; do total_errors=$((total_errors + e)); done
[ "$total_errors" = 0 ] || die "sysbench saw $total_errors errors during the switches (target: zero)"
echo "check cutover: ok — $((ROUNDS * 2)) switches (switch-traffic and reverse-traffic) under sysbench load, $TXS transactions, zero errors; after each switch the gate read the new side"
