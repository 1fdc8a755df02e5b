# Helpers shared by the bench scripts (sourced, not run). Each script still
# defines its own say/die; these need `die` to exist when they are called.

# The keyshift binary under test. KEYSHIFT_BIN=<path> uses that binary as it
# is (no build: the test suite passes its debug binary); otherwise
# target/release/keyshift, built first unless SKIP_BUILD=1.
keyshift_bin() { # ROOT -> sets BIN
  if [ -n "${KEYSHIFT_BIN:-}" ]; then
    case $KEYSHIFT_BIN in # absolute, so that it works from any directory
      */*) BIN=$(cd "$(dirname "$KEYSHIFT_BIN")" 2>/dev/null && pwd)/$(basename "$KEYSHIFT_BIN") ;;
      *) BIN=$(command -v "$KEYSHIFT_BIN" || printf '%s' "$KEYSHIFT_BIN") ;;
    esac
  else
    BIN=$1/target/release/keyshift
    if [ -z "${SKIP_BUILD:-}" ]; then
      printf '%s\n' "== building keyshift (release)" >&2
      cargo build --release -p keyshift --manifest-path "$1/Cargo.toml" >&2
    fi
  fi
  [ -x "$BIN" ] || die "$BIN missing (cargo build --release -p keyshift, or KEYSHIFT_BIN=...)"
}

# A field of the node's keyshift.ready (pid, gate, api: the bound addresses,
# so the cluster file can listen on 127.0.0.1:0 and never race for a port).
ready_field() { # data_dir field
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1/keyshift.ready" "$2"
}

# The unix socket of the managed mariadbd whose files live in DIR: DIR/mysqld.sock,
# or (long paths) the --socket= of the mariadbd process whose command line
# names DIR. Never a guess among other clusters' sockets.
tablet_socket() { # dir
  local dir=$1 sock=$1/mysqld.sock p
  if [ ! -S "$sock" ]; then
    sock=""
    for p in /proc/[0-9]*; do
      tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -q -- "^--datadir=$dir" || continue
      sock=$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | sed -n 's/^--socket=//p' | head -1)
      [ -n "$sock" ] && break
    done
  fi
  [ -n "$sock" ] && [ -S "$sock" ] || return 1
  printf '%s' "$sock"
}

# "ROWS SUM" of a table: its row count and the sum of CRC32 over every column
# of every row. Sums add up across shards, so the shards of a split table
# together must give the source's pair.
table_sum() { # socket db table
  local cols
  cols=$(mariadb --no-defaults -uroot -S "$1" -N -e "SELECT GROUP_CONCAT(CONCAT('COALESCE(\`', column_name, '\`, ''~'')')
    ORDER BY ordinal_position SEPARATOR ', ') FROM information_schema.columns
    WHERE table_schema = '$2' AND table_name = '$3'")
  [ -n "$cols" ] && [ "$cols" != NULL ] || { printf 'missing 0'; return 0; }
  mariadb --no-defaults -uroot -S "$1" -N "$2" -e \
    "SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', $cols))), 0) FROM \`$3\`" | tr '\t' ' '
}

# Adds "ROWS SUM" pairs: add_sums "3 10" "4 20" -> "7 30".
add_sums() {
  local n=0 s=0 a b p
  for p in "$@"; do
    read -r a b <<<"$p"
    n=$((n + a)); s=$((s + b))
  done
  printf '%s %s' "$n" "$s"
}
