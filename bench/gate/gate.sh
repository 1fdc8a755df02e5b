#!/usr/bin/env bash
# The gate's benchmark (issue 3): sysbench through the keyshift gate and
# directly against MariaDB, alternating, printing TPS, p95 latency and the
# gate/direct ratio. Not a test: it measures, it does not judge (it prints
# whether the unsharded oltp_read_write ratio meets the 0.85 target).
#
# It starts a real cluster with `keyshift up --detach` from a generated
# cluster file in a temp dir (managed tablets: real mariadbd with binlogs, as
# users run them), then:
#   unsharded: keyspace sbplain (one tablet). direct = sysbench against that
#              tablet's server; gate = the same tables through the gate.
#   sharded:   keyspace sbshard, shards -80 and 80- (hash vindex on id).
#              gate = sysbench through the gate; direct = sysbench against the
#              -80 tablet's server, database sbfull, which holds ALL the rows
#              in one server (there is no "direct" for a sharded keyspace; this
#              is what the same data costs unsharded on the same kind of server).
# Both sides use prepared statements (--db-ps-mode=auto) and the same
# transport, never a mix:
#   tcp:    both over TCP to 127.0.0.1 (direct: the tablet's port; gate: its
#           port);
#   socket: both over unix sockets (direct: the tablet's mysqld socket, as
#           root's sysbench user sb@localhost; gate: the gate's socket,
#           `[gate] socket`, default <data_dir>/gate.sock).
# Each transport gets its own gate/direct ratio.
#
# The peer (unsharded only): HAProxy in TCP mode ("l4"), a production proxy
# that forwards bytes without reading them, between the same client and the
# same server, in the same rounds. It costs what any extra process hop costs
# on this machine, without any of the gate's work, so gate/l4 says how much
# of the gap is the gate's own and l4/direct how much is the hop's.
# (HAProxy gets the same transport as the other sides: a TCP frontend to the
# tablet's port, or a unix-socket frontend to the tablet's socket.)
#
# Usage: bench/gate/gate.sh            (from anywhere; builds target/release)
# Env:   TIME=20 ROUNDS=3 THREADS=4 TABLES=4 TABLE_SIZE=10000
#        WORKLOADS="oltp_point_select oltp_read_write"  SKIP_BUILD=1  KEEP=1
#        TRANSPORT=tcp|socket|both (default both; rounds interleave them)
#        L4=0 (leave out the HAProxy peer; default: on when haproxy is installed)
#        RESULTS=bench/gate/RESULTS.md (where the summary is written; "" = don't)
#        KEYSHIFT_BIN=<binary> (used as is, no build)
#        MAX_GATE_ERRORS=N (fail when sysbench through the gate saw more than N
#        "ignored errors"; default: no limit, they are reported. sysbench only
#        ignores deadlocks and lock wait timeouts, which several threads on
#        few rows also hit directly; with THREADS=1 there are none, and
#        `bench/run.sh small` runs so, with MAX_GATE_ERRORS=0.)
#
# Checks (any failure exits non-zero, after the summary is printed): the rows
# loaded through the gate are all there; every sysbench run succeeded (any
# error sysbench does not ignore fails it) with transactions > 0; at most
# MAX_GATE_ERRORS ignored errors through the gate. On success the last line is
# "check gate: ok ...".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TIME=${TIME:-20}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-4}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-10000}
WORKLOADS=${WORKLOADS:-"oltp_point_select oltp_read_write"}
TRANSPORT=${TRANSPORT:-both}
case $TRANSPORT in
  tcp) TRANSPORTS="tcp" ;;
  socket) TRANSPORTS="socket" ;;
  both) TRANSPORTS="tcp socket" ;;
  *) printf 'gate.sh: TRANSPORT must be tcp, socket or both, not %s\n' "$TRANSPORT" >&2; exit 2 ;;
esac
RESULTS=${RESULTS-$ROOT/bench/gate/RESULTS.md}
MAX_GATE_ERRORS=${MAX_GATE_ERRORS:-}
# shellcheck source=../lib.sh
. "$ROOT/bench/lib.sh"
COMMAND="bench/gate/gate.sh${*:+ $*}"
ENV_LINE="TIME=$TIME ROUNDS=$ROUNDS THREADS=$THREADS TABLES=$TABLES TABLE_SIZE=$TABLE_SIZE TRANSPORT=$TRANSPORT WORKLOADS=\"$WORKLOADS\""

say() { printf '%s\n' "$*" >&2; }
die() { say "gate.sh: $*"; exit 1; }

for tool in sysbench mariadb mariadb-dump python3; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

keyshift_bin "$ROOT"

L4=${L4:-1}
# (Debian puts it in /usr/sbin, which is not on a user's PATH.)
HAPROXY=$(command -v haproxy || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; } || true)
if [ "$L4" = 1 ] && [ -z "$HAPROXY" ]; then
  say "gate.sh: haproxy is not installed (scripts/install-deps.sh --test): the l4 peer is left out"
  L4=0
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d /tmp/ks-bench.XXXXXX)
CLUSTER=$WORK/keyshift.toml
DB_USER=sb
DB_PASS=sb-pw
GATE_USER=app
GATE_PASS=app-pw

cleanup() {
  if [ -s "$WORK/haproxy.pid" ]; then kill "$(cat "$WORK/haproxy.pid")" 2>/dev/null || true; fi
  "$BIN" --cluster "$CLUSTER" down >/dev/null 2>&1 || true
  if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else say "kept $WORK"; fi
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
name = "$GATE_USER"
password = "$GATE_PASS"

[api]
listen = "127.0.0.1:0"

[[keyspace]]
name = "sbplain"

[[keyspace]]
name = "sbshard"
shards = ["-80", "80-"]
EOF

say "== keyshift up --detach ($WORK)"
"$BIN" --cluster "$CLUSTER" up --detach >&2
# The gate's bound port (it listens on port 0: no race with other servers).
GATE_PORT=$(ready_field "$WORK/data" gate)
GATE_PORT=${GATE_PORT##*:}
# Its unix socket (the cluster file keeps the default, <data_dir>/gate.sock).
GATE_SOCK=""
if [[ " $TRANSPORTS " == *" socket "* ]]; then
  GATE_SOCK=$(ready_field "$WORK/data" gate_socket) || die "keyshift.ready has no gate_socket"
  [ -S "$GATE_SOCK" ] || die "the gate has no unix socket (keyshift.ready gate_socket: $GATE_SOCK)"
fi

# keyspace shard -> the tablet's unix socket (root there needs no password).
tablets_json=$("$BIN" --cluster "$CLUSTER" tablet list --format json)
socket_of() {
  local alias
  alias=$(printf '%s' "$tablets_json" | python3 -c '
import json, sys
ks, shard = sys.argv[1], sys.argv[2]
for t in json.load(sys.stdin):
    if t["keyspace"] == ks and t["shard"] == shard:
        print(t["alias"]); break' "$1" "$2")
  [ -n "$alias" ] || die "no tablet for $1/$2"
  local sock
  # (Long datadir paths put the socket under /tmp: tablet_socket finds it.)
  sock=$(tablet_socket "$WORK/data/tablets/$alias") || die "no socket for tablet $alias of $1/$2"
  printf '%s' "$sock"
}
port_of() {
  printf '%s' "$tablets_json" | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["keyspace"] == sys.argv[1] and t["shard"] == sys.argv[2]:
        print(t["port"]); break' "$1" "$2"
}

PLAIN_SOCK=$(socket_of sbplain 0)
PLAIN_PORT=$(port_of sbplain 0)
S1_SOCK=$(socket_of sbshard -80)
S1_PORT=$(port_of sbshard -80)
S2_SOCK=$(socket_of sbshard 80-)

root_sql() { mariadb --no-defaults -uroot -S "$1" "${@:2}"; }
# sb@127.0.0.1 for TCP, sb@localhost for the servers' unix sockets.
for sock in "$PLAIN_SOCK" "$S1_SOCK" "$S2_SOCK"; do
  root_sql "$sock" -e "CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
                       GRANT ALL ON *.* TO '$DB_USER'@'127.0.0.1';
                       CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
                       GRANT ALL ON *.* TO '$DB_USER'@'localhost';"
done
root_sql "$S1_SOCK" -e "CREATE DATABASE IF NOT EXISTS sbfull"

sb_common=(--tables="$TABLES" --table-size="$TABLE_SIZE")

# The l4 peer: HAProxy, TCP mode, one thread per CPU, in front of the sbplain tablet.
L4_PORT="" L4_SOCK=""
if [ "$L4" = 1 ]; then
  L4_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  L4_SOCK=$WORK/l4.sock
  cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread $(nproc)
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend tcp_in
    bind 127.0.0.1:$L4_PORT
    default_backend tcp_tablet
backend tcp_tablet
    server tablet 127.0.0.1:$PLAIN_PORT
frontend socket_in
    bind unix@$L4_SOCK
    default_backend socket_tablet
backend socket_tablet
    server tablet unix@$PLAIN_SOCK
EOF
  "$HAPROXY" -f "$WORK/haproxy.cfg" -D -p "$WORK/haproxy.pid" || die "haproxy did not start (config: $WORK/haproxy.cfg)"
  say "== l4 peer: $("$HAPROXY" -v | head -1 | cut -d' ' -f1-3) on 127.0.0.1:$L4_PORT and $L4_SOCK"
fi

say "== loading $TABLES x $TABLE_SIZE rows into sbplain (sysbench prepare, direct)"
sysbench oltp_read_write "${sb_common[@]}" --mysql-host=127.0.0.1 --mysql-port="$PLAIN_PORT" \
  --mysql-user="$DB_USER" --mysql-password="$DB_PASS" --mysql-db=sbplain prepare >/dev/null

tables=""
for i in $(seq 1 "$TABLES"); do tables="$tables sbtest$i"; done

say "== the same rows into sbfull on the -80 server (the sharded case's 'direct')"
# shellcheck disable=SC2086
mariadb-dump --no-defaults -uroot -S "$PLAIN_SOCK" --single-transaction sbplain $tables |
  root_sql "$S1_SOCK" sbfull

say "== sbshard: tables on each shard, VSchema, rows through the gate"
# shellcheck disable=SC2086
ddl=$(mariadb-dump --no-defaults -uroot -S "$PLAIN_SOCK" --no-data --compact sbplain $tables |
  sed -e 's/ AUTO_INCREMENT=[0-9]*//')
for sock in "$S1_SOCK" "$S2_SOCK"; do
  printf '%s\n' "$ddl" | root_sql "$sock" sbshard
done
vschema=$(python3 -c '
import json, sys
n = int(sys.argv[1])
print(json.dumps({"sharded": True, "vindexes": {"hash": {"type": "hash"}},
  "tables": {f"sbtest{i}": {"column_vindexes": [{"column": "id", "name": "hash"}]} for i in range(1, n + 1)}}))' "$TABLES")
"$BIN" --cluster "$CLUSTER" vschema apply sbshard --json "$vschema" >&2
sleep 1
# shellcheck disable=SC2086
mariadb-dump --no-defaults -uroot -S "$PLAIN_SOCK" --single-transaction --no-create-info \
  --complete-insert --compact --skip-tz-utc sbplain $tables |
  mariadb --no-defaults -h127.0.0.1 -P"$GATE_PORT" -u"$GATE_USER" -p"$GATE_PASS" sbshard
for i in $(seq 1 "$TABLES"); do
  got=$(mariadb --no-defaults -N -h127.0.0.1 -P"$GATE_PORT" -u"$GATE_USER" -p"$GATE_PASS" sbshard \
    -e "SELECT COUNT(*) FROM sbtest$i")
  [ "$got" = "$TABLE_SIZE" ] || die "sbshard.sbtest$i has $got rows through the gate, not $TABLE_SIZE"
done
for sock in "$S1_SOCK" "$S2_SOCK"; do
  say "   shard rows: $(root_sql "$sock" -N sbshard -e 'SELECT COUNT(*) FROM sbtest1') of $TABLE_SIZE in sbtest1"
done

# sysbench's connection arguments for an endpoint "tcp:PORT" or "socket:PATH".
# (libmysqlclient uses the socket only when the host is localhost.)
endpoint_args() {
  case $1 in
    tcp:*) printf '%s\n' --mysql-host=127.0.0.1 "--mysql-port=${1#tcp:}" ;;
    socket:*) printf '%s\n' --mysql-host=localhost "--mysql-socket=${1#socket:}" ;;
    *) die "bad endpoint $1" ;;
  esac
}

# run <workload> <endpoint> <user> <pass> <db> -> "tps p95 errors"
run() {
  local out conn
  mapfile -t conn < <(endpoint_args "$2")
  out=$(sysbench "$1" "${sb_common[@]}" --threads="$THREADS" --time="$TIME" \
    --db-ps-mode=auto --report-interval=0 --percentile=95 \
    "${conn[@]}" --mysql-user="$3" --mysql-password="$4" --mysql-db="$5" run 2>&1) || {
    say "$out"
    die "sysbench $1 on $2 ($5) failed"
  }
  local tps p95 err
  tps=$(printf '%s\n' "$out" | sed -n 's/.*transactions: *[0-9]* *(\([0-9.]*\) per sec.*/\1/p')
  p95=$(printf '%s\n' "$out" | sed -n 's/.*95th percentile: *\([0-9.]*\).*/\1/p')
  err=$(printf '%s\n' "$out" | sed -n 's/.*ignored errors: *\([0-9]*\).*/\1/p')
  if [ -z "$tps" ] || [ -z "$err" ] || ! python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$tps"; then
    say "$out"
    die "sysbench $1 on $2 ($5) ran no transactions"
  fi
  printf '%s %s %s\n' "$tps" "$p95" "$err"
}

declare -A TPS P95 ERR
record() { # key tps p95 err
  TPS[$1]="${TPS[$1]:-} $2"
  P95[$1]="${P95[$1]:-} $3"
  ERR[$1]=$(( ${ERR[$1]:-0} + $4 ))
}

for w in $WORKLOADS; do
  for kind in unsharded sharded; do
    for r in $(seq 1 "$ROUNDS"); do
      for t in $TRANSPORTS; do
        # The same transport on both sides: tcp ports, or unix sockets.
        if [ "$kind" = unsharded ]; then
          if [ "$t" = tcp ]; then d_ep=tcp:$PLAIN_PORT g_ep=tcp:$GATE_PORT; else d_ep=socket:$PLAIN_SOCK g_ep=socket:$GATE_SOCK; fi
          direct=("$d_ep" "$DB_USER" "$DB_PASS" sbplain)
          gate=("$g_ep" "$GATE_USER" "$GATE_PASS" sbplain)
          if [ "$t" = tcp ]; then l4_ep=tcp:$L4_PORT; else l4_ep=socket:$L4_SOCK; fi
          l4=("$l4_ep" "$DB_USER" "$DB_PASS" sbplain)
          sides="direct gate"
          if [ "$L4" = 1 ]; then sides="direct gate l4"; fi
        else
          if [ "$t" = tcp ]; then d_ep=tcp:$S1_PORT g_ep=tcp:$GATE_PORT; else d_ep=socket:$S1_SOCK g_ep=socket:$GATE_SOCK; fi
          direct=("$d_ep" "$DB_USER" "$DB_PASS" sbfull)
          gate=("$g_ep" "$GATE_USER" "$GATE_PASS" sbshard)
          sides="direct gate"
        fi
        # Rotate who goes first, so that drift (buffer pool warming, page
        # flushing) does not favour one side.
        order=$(python3 -c 'import sys; s=sys.argv[2].split(); k=int(sys.argv[1])%len(s); print(" ".join(s[k:]+s[:k]))' "$((r - 1))" "$sides")
        for side in $order; do
          case $side in
            direct) res=$(run "$w" "${direct[@]}") ;;
            gate) res=$(run "$w" "${gate[@]}") ;;
            l4) res=$(run "$w" "${l4[@]}") ;;
          esac
          # shellcheck disable=SC2086
          set -- $res
          say "   $w $kind $t round $r $side: tps $1 p95 ${2}ms ignored errors $3"
          record "$w/$kind/$t/$side" "$1" "$2" "$3"
        done
      done
    done
  done
done

mean() { python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print(f"{sum(v)/len(v):.1f}")' "$@"; }
mean2() { python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print(f"{sum(v)/len(v):.2f}")' "$@"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.2f}")' "$1" "$2"; }

table=$(
  printf '| workload | keyspace | transport | direct TPS | gate TPS | gate/direct | l4 TPS | l4/direct | gate/l4 | direct p95 ms | gate p95 ms | ignored errors (direct/gate) |\n'
  printf '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
  for w in $WORKLOADS; do
    for kind in unsharded sharded; do
      for t in $TRANSPORTS; do
        k=$w/$kind/$t
        # shellcheck disable=SC2086
        dt=$(mean ${TPS[$k/direct]}); gt=$(mean ${TPS[$k/gate]})
        # shellcheck disable=SC2086
        dp=$(mean2 ${P95[$k/direct]}); gp=$(mean2 ${P95[$k/gate]})
        lt="—" lr="—" gl="—"
        if [ -n "${TPS[$k/l4]:-}" ]; then
          # shellcheck disable=SC2086
          lt=$(mean ${TPS[$k/l4]}); lr=$(ratio "$lt" "$dt"); gl=$(ratio "$gt" "$lt")
        fi
        printf '| %s | %s | %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %s/%s |\n' "$w" "$kind" "$t" "$dt" "$gt" "$(ratio "$gt" "$dt")" \
          "$lt" "$lr" "$gl" "$dp" "$gp" "${ERR[$k/direct]}" "${ERR[$k/gate]}"
      done
    done
  done
)
rounds=$(
  for w in $WORKLOADS; do
    for kind in unsharded sharded; do
      for t in $TRANSPORTS; do
        k=$w/$kind/$t
        printf -- '- %s %s %s: direct TPS%s; gate TPS%s%s\n' "$w" "$kind" "$t" "${TPS[$k/direct]}" "${TPS[$k/gate]}" \
          "${TPS[$k/l4]:+; l4 TPS${TPS[$k/l4]}}"
      done
    done
  done
)
target=""
if [[ " $WORKLOADS " == *" oltp_read_write "* ]]; then
  target="Target (oltp_read_write unsharded ≥ 0.85× direct, same transport on both sides):"
  for t in $TRANSPORTS; do
    # shellcheck disable=SC2086
    r=$(ratio "$(mean ${TPS[oltp_read_write/unsharded/$t/gate]})" "$(mean ${TPS[oltp_read_write/unsharded/$t/direct]})")
    if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 0.85 else 1)' "$r"; then
      target="$target $t **met** ($r×);"
    else
      target="$target $t **not met** ($r×);"
    fi
  done
  target="${target%;}."
fi
transports_line=$(
  for t in $TRANSPORTS; do
    case $t in
      tcp) printf '%s' "tcp: both sides over TCP to 127.0.0.1. " ;;
      socket) printf '%s' "socket: both sides over unix sockets (direct: the tablet's mysqld socket; gate: the gate's socket). " ;;
    esac
  done
)

L4_LINE=""
if [ "$L4" = 1 ]; then
  L4_LINE="l4 (unsharded rows) = $("$HAPROXY" -v | head -1 | cut -d' ' -f1-3) in TCP mode, $(nproc) threads, forwarding bytes between the same client and server without reading them: the cost of the extra hop alone."
fi
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
machine="$(nproc) CPUs ($cpu), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr); $(mariadbd --version 2>/dev/null | sed 's/^.*Ver //'); $(sysbench --version). Load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg). sysbench, the gate and the servers share these CPUs."
summary=$(cat <<EOF
## Run of $(date -u '+%Y-%m-%d %H:%M UTC')

Machine: $machine

Command: \`$ENV_LINE $COMMAND\` (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ', with uncommitted changes'))

sysbench: $THREADS threads, $TIME s per run, $ROUNDS rounds per side alternating, $TABLES tables × $TABLE_SIZE rows,
\`--db-ps-mode=auto\`. Means over the rounds. ${transports_line}
Unsharded: direct = the sbplain tablet's own server. Sharded (2 shards, hash on id): direct = ONE server
(the -80 tablet's) holding ALL rows in database sbfull.
${L4_LINE}

$table

$target

Per round:
$rounds
EOF
)
printf '\n%s\n' "$summary"
if [ -n "$RESULTS" ]; then
  if [ ! -f "$RESULTS" ]; then
    printf '# Gate benchmark results\n\nWritten by bench/gate/gate.sh (newest first below this line).\n' >"$RESULTS"
  fi
  python3 - "$RESULTS" "$summary" <<'PY'
import sys
path, new = sys.argv[1], sys.argv[2]
text = open(path).read()
marker = "(newest first below this line).\n"
i = text.find(marker)
if i < 0:
    text = text.rstrip("\n") + "\n\n" + new + "\n"
else:
    i += len(marker)
    text = text[:i] + "\n" + new + "\n" + text[i:]
open(path, "w").write(text)
PY
  say "results written to $RESULTS"
fi

gate_errors=0
for w in $WORKLOADS; do
  for kind in unsharded sharded; do
    for t in $TRANSPORTS; do
      gate_errors=$((gate_errors + ${ERR[$w/$kind/$t/gate]}))
    done
  done
done
[ -z "$MAX_GATE_ERRORS" ] || [ "$gate_errors" -le "$MAX_GATE_ERRORS" ] ||
  die "sysbench through the gate saw $gate_errors ignored errors (MAX_GATE_ERRORS=$MAX_GATE_ERRORS)"
echo "check gate: ok — $ROUNDS round(s) of $TIME s per side of $WORKLOADS, unsharded and sharded, over $TRANSPORTS; every sysbench run succeeded, $gate_errors errors through the gate"
