#!/usr/bin/env bash
# Installs what keyshift and its tests need on Debian, skipping what is there.
# Usage: scripts/install-deps.sh [--test]   (--test adds what only the tests need)
set -euo pipefail

want=(mariadb-server mariadb-client)
if [[ "${1:-}" == "--test" ]]; then
  # sysbench, mydumper (with myloader) and percona-toolkit (pt-table-checksum):
  # the peers `bench/run.sh small` runs keyshift against (crates/cli/tests/bench_small.rs).
  # A JRE with MariaDB Connector/J, PyMySQL, and Go with go-sql-driver/mysql:
  # applications on real drivers through the gate (crates/gate/tests/drivers.rs).
  want+=(openssl sysbench mydumper percona-toolkit haproxy chromium chromium-driver
    default-jre-headless libmariadb-java python3-pymysql
    golang-go golang-github-go-sql-driver-mysql-dev)
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # Debian's packages try to start the system's MariaDB service; keyshift runs
  # its own servers, so keep the system one from starting (and from holding 3306).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is missing. Install Rust 1.95 or newer with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi
