"""A Python application against the gate, run by crates/gate/tests/drivers.rs
with PyMySQL (Debian's python3-pymysql): `python3 gate_client.py <port>
<user> <password>`.

PyMySQL speaks the text protocol and escapes parameters itself, starts with
autocommit off, sends executemany() as one multi-row INSERT (which the gate
splits per shard), reads lastrowid from the OK packet, switches databases
with COM_INIT_DB, pings, and streams large results with an unbuffered
cursor. Every answer is checked; it prints one line per check and
"ALL OK <n>" at the end, and exits non-zero on the first wrong answer.
"""

import datetime
import decimal
import sys

import pymysql

checks = 0


def check(ok, what):
    global checks
    if not ok:
        raise AssertionError("FAILED: " + what)
    checks += 1
    print("ok " + what)


def expect_error(cur, sql, code):
    try:
        cur.execute(sql)
    except pymysql.MySQLError as e:
        check(e.args[0] == code, f"error {code} for `{sql}` (got {e.args})")
        return
    raise AssertionError(f"FAILED: no error for {sql}")


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password,
                           database="customer", charset="utf8mb4")
    check(conn.get_server_info().endswith("keyshift"), "server " + conn.get_server_info())
    cur = conn.cursor()

    # executemany: one multi-row INSERT, split per shard by the gate;
    # autocommit is off (PyMySQL's default), so nothing is visible to
    # another connection before commit.
    rows = [(i, i % 7, decimal.Decimal(f"{i}.50"), None if i % 4 == 0 else f"n'ote {i} ☃",
             datetime.datetime(2026, 12, 6, 11, 0, i)) for i in range(1, 41)]
    n = cur.executemany(
        "INSERT INTO orders (id, customer_id, amount, note, created) VALUES (%s, %s, %s, %s, %s)", rows)
    check(n == 40, f"executemany inserted {n}")
    other = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password,
                            database="customer", autocommit=True)
    with other.cursor() as oc:
        oc.execute("SELECT COUNT(*) FROM orders")
        check(oc.fetchone()[0] == 0, "uncommitted rows invisible to another session")
    conn.commit()
    with other.cursor() as oc:
        oc.execute("SELECT COUNT(*) FROM orders")
        check(oc.fetchone()[0] == 40, "40 rows after commit")

    # Text-protocol parameters of every type, read back exactly.
    for i in (1, 4, 13, 40):
        cur.execute("SELECT id, customer_id, amount, note, created FROM orders WHERE id = %s", (i,))
        got = cur.fetchall()
        check(len(got) == 1 and got[0] == rows[i - 1], f"row {i}: {got}")

    # The sequence gives ids to rows without one; lastrowid reports it.
    cur.execute("INSERT INTO orders (customer_id, amount, note, created) VALUES (%s, %s, %s, %s)",
                (1, decimal.Decimal("0.01"), "seq", datetime.datetime(2026, 1, 1)))
    check(cur.lastrowid >= 1000, f"lastrowid from the sequence: {cur.lastrowid}")
    seq_id = cur.lastrowid
    conn.rollback()
    cur.execute("SELECT COUNT(*) FROM orders WHERE id = %s", (seq_id,))
    check(cur.fetchone()[0] == 0, "rolled back insert is gone")

    # Scatter: ORDER BY + LIMIT, GROUP BY, aggregates, IN.
    cur.execute("SELECT id FROM orders ORDER BY amount DESC LIMIT 5")
    check([r[0] for r in cur.fetchall()] == [40, 39, 38, 37, 36], "top 5 across shards")
    cur.execute("SELECT customer_id, COUNT(*), SUM(amount) FROM orders GROUP BY customer_id ORDER BY customer_id")
    groups = cur.fetchall()
    want = []
    for c in range(7):
        ids = [i for i in range(1, 41) if i % 7 == c]
        want.append((c, len(ids), sum(decimal.Decimal(f"{i}.50") for i in ids)))
    check(list(groups) == want, f"GROUP BY across shards: {groups}")
    cur.execute("SELECT COUNT(*) FROM orders WHERE id IN %s", ((3, 8, 21, 999),))
    check(cur.fetchone()[0] == 3, "IN with an escaped tuple")

    # An unbuffered cursor streams a scatter result.
    with conn.cursor(pymysql.cursors.SSCursor) as ss:
        ss.execute("SELECT id, note FROM orders")
        ids = sorted(r[0] for r in ss.fetchall_unbuffered())
        check(ids == list(range(1, 41)), "unbuffered scatter read")

    # Updates and deletes by id, then commit.
    cur.execute("UPDATE orders SET note = %s WHERE id = %s", ("upd", 2))
    check(cur.rowcount == 1, "update by id")
    cur.execute("DELETE FROM orders WHERE id = %s", (3,))
    check(cur.rowcount == 1, "delete by id")
    conn.commit()

    # COM_INIT_DB, ping, the unsharded keyspace.
    conn.select_db("commerce")
    cur.execute("SELECT name FROM product ORDER BY name")
    check([r[0] for r in cur.fetchall()] == ["anvil", "rope"], "select_db commerce")
    conn.ping(reconnect=False)
    check(True, "ping")
    conn.select_db("customer")

    expect_error(cur, "INSERT INTO orders (id, customer_id, amount, created) VALUES (1, 1, 1, NOW())", 1062)
    conn.rollback()
    expect_error(cur, "SELECT * FROM nosuch", 1146)
    expect_error(cur, "SELEC 1", 1064)
    try:
        conn.select_db("nokeyspace")
        raise AssertionError("FAILED: select_db of an unknown keyspace")
    except pymysql.MySQLError as e:
        check(e.args[0] == 1049, f"unknown keyspace: {e.args}")
    other.close()
    conn.close()
    try:
        pymysql.connect(host="127.0.0.1", port=port, user=user, password="wrong")
        raise AssertionError("FAILED: a wrong password was accepted")
    except pymysql.MySQLError as e:
        check(e.args[0] == 1045, f"wrong password: {e.args}")
    print(f"ALL OK {checks}")


if __name__ == "__main__":
    main()
