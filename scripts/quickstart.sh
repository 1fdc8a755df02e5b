#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is missing, build,
# start a local cluster on real MariaDB servers, load the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release --locked -p keyshift
ks=target/release/keyshift

if ! $ks status >/dev/null 2>&1 && ! $ks up --detach; then
  echo "error: the cluster did not start; see keyshift-data/keyshift.log" >&2
  exit 1
fi
$ks demo
$ks status
echo
echo "A query through the gate, with the demo's user from keyshift.toml:"
echo "  mariadb -h127.0.0.1 -P15306 -uapp -papp-password -e 'SELECT * FROM commerce.customer'"
mariadb -h127.0.0.1 -P15306 -uapp -papp-password -e 'SELECT * FROM commerce.customer'
echo
echo "The cluster keeps running in the background. Stop it with: $ks down"
