#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is missing, build,
# start a local cluster on real MariaDB servers, load the demo, then run the
# headline workflow — move `customer` and `corder` from the unsharded
# `commerce` keyspace into the sharded `customer` keyspace — through create,
# copy, verify, switch traffic and complete, while a query through the gate
# keeps working before and after.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked -p keyshift
ks=target/release/keyshift
gate=(mariadb -h127.0.0.1 -P15306 -uapp -papp-password)

if ! $ks status >/dev/null 2>&1 && ! $ks up --detach; then
  echo "error: the cluster did not start; see keyshift-data/keyshift.log" >&2
  exit 1
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if $ks workflow show move1 >/dev/null 2>&1; then
  step "The headline workflow ran before; its record:"
  $ks workflow show move1
else
  $ks demo
  $ks status
  step "A query through the gate (customer lives in commerce)"
  "${gate[@]}" -e 'SELECT * FROM customer ORDER BY customer_id'

  step "Create the workflow: validate, create the target schema, start copying"
  $ks workflow create --name move1 --source-keyspace commerce --target-keyspace customer \
    --tables customer,corder
  $ks workflow show move1 --wait-for running --caught-up --timeout 600s

  step "Verify: every row of the source against the targets, at one point in time"
  $ks workflow verify-data move1 --wait

  step "Switch traffic: reads and writes now go to the sharded keyspace"
  $ks workflow switch-traffic move1
  "${gate[@]}" -e 'SELECT * FROM customer ORDER BY customer_id'

  step "Complete: drop the source tables and the routing rules"
  $ks workflow complete move1
  $ks workflow show move1
fi

step "Done"
echo "A query through the gate, with the demo's user from keyshift.toml:"
echo "  ${gate[*]} -e 'SELECT * FROM customer'"
if [ -f keyshift-data/keyshift.ready ]; then
  api=$(python3 -c 'import json; print(json.load(open("keyshift-data/keyshift.ready")).get("api") or "")' 2>/dev/null || true)
  if [ -n "$api" ]; then
    echo "The dashboard: http://$api/  (token: keyshift-data/api-token)"
  fi
fi
echo "The cluster keeps running in the background. Stop it with: $ks down"
