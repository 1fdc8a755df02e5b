// A JDBC application against the gate, run by crates/gate/tests/drivers.rs with
// MariaDB Connector/J: `java -cp mariadb-java-client.jar GateClient.java
// <port> <user> <password>`. It does what applications do through a driver —
// server-side prepared statements with typed parameters, batches, generated
// keys, transactions with autocommit off, metadata, errors as SQLExceptions —
// and checks every answer. It prints one line per check and "ALL OK" at the
// end; the first wrong answer throws, and the exit status is non-zero.

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class GateClient {
    static int checks = 0;

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError("FAILED: " + what);
        checks++;
        System.out.println("ok " + what);
    }

    static void expectError(Connection c, String sql, int code, String sqlState) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute(sql);
            throw new AssertionError("FAILED: no error for " + sql);
        } catch (SQLException e) {
            check(e.getErrorCode() == code && sqlState.equals(e.getSQLState()),
                "error " + code + "/" + sqlState + " for `" + sql + "` (got " + e.getErrorCode() + "/"
                    + e.getSQLState() + ": " + e.getMessage() + ")");
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:mariadb://127.0.0.1:" + args[0] + "/customer?useServerPrepStmts=true";
        try (Connection c = DriverManager.getConnection(url, args[1], args[2])) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductVersion().contains("keyshift"),
                "server version " + md.getDatabaseProductVersion());
            check("customer".equals(c.getCatalog()), "catalog is the keyspace: " + c.getCatalog());

            // A batch of typed inserts on the sharded table, ids from the
            // test, then one without an id: the sequence gives it, and the
            // driver reads it back as a generated key.
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO orders (id, customer_id, amount, note, created) VALUES (?, ?, ?, ?, ?)")) {
                for (long id = 1; id <= 20; id++) {
                    ps.setLong(1, id);
                    ps.setLong(2, id % 7);
                    ps.setBigDecimal(3, new BigDecimal(id + ".25"));
                    if (id % 5 == 0) ps.setNull(4, Types.VARCHAR); else ps.setString(4, "note ü " + id);
                    ps.setTimestamp(5, Timestamp.valueOf("2026-12-06 10:00:" + String.format("%02d", id)));
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                int total = 0;
                for (int n : counts) total += (n == Statement.SUCCESS_NO_INFO ? 1 : n);
                check(counts.length == 20 && total == 20, "batch of 20 inserts: " + Arrays.toString(counts));
            }
            long generated;
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO orders (customer_id, amount, note, created) VALUES (?, ?, ?, NOW())",
                    Statement.RETURN_GENERATED_KEYS)) {
                ps.setLong(1, 3);
                ps.setBigDecimal(2, new BigDecimal("9.99"));
                ps.setString(3, "from the sequence");
                check(ps.executeUpdate() == 1, "insert without id");
                try (ResultSet k = ps.getGeneratedKeys()) {
                    check(k.next(), "a generated key");
                    generated = k.getLong(1);
                    check(generated >= 1000, "generated id from the sequence: " + generated);
                }
            }

            // Point reads by the vindex column, re-executed with new
            // parameters, every type read back.
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT id, customer_id, amount, note, created FROM orders WHERE id = ?")) {
                for (long id : new long[] {1, 5, 17, generated}) {
                    ps.setLong(1, id);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "row " + id + " found");
                        check(rs.getLong(1) == id, "id " + id);
                        if (id != generated) {
                            check(rs.getLong(2) == id % 7, "customer_id of " + id);
                            check(rs.getBigDecimal(3).compareTo(new BigDecimal(id + ".25")) == 0,
                                "amount of " + id + ": " + rs.getBigDecimal(3));
                            String note = rs.getString(4);
                            check(id % 5 == 0 ? note == null && rs.wasNull() : ("note ü " + id).equals(note),
                                "note of " + id + ": " + note);
                            check(Timestamp.valueOf("2026-12-06 10:00:" + String.format("%02d", id))
                                    .equals(rs.getTimestamp(5)), "created of " + id + ": " + rs.getTimestamp(5));
                        } else {
                            check("from the sequence".equals(rs.getString(4)), "note of the generated row");
                        }
                        check(!rs.next(), "one row for " + id);
                    }
                }
            }

            // Scatter: ORDER BY with LIMIT, aggregates, IN over both shards.
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT id FROM orders WHERE amount > ? ORDER BY amount DESC LIMIT 3")) {
                ps.setBigDecimal(1, new BigDecimal("5"));
                List<Long> ids = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) ids.add(rs.getLong(1));
                }
                check(ids.equals(List.of(20L, 19L, 18L)), "top 3 by amount across shards: " + ids);
            }
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery(
                     "SELECT COUNT(*), SUM(amount), MIN(id), MAX(created) FROM orders WHERE id <= 20")) {
                check(rs.next(), "aggregate row");
                check(rs.getLong(1) == 20, "count " + rs.getLong(1));
                check(rs.getBigDecimal(2).compareTo(new BigDecimal("215.00")) == 0, "sum " + rs.getBigDecimal(2));
                check(rs.getLong(3) == 1, "min " + rs.getLong(3));
                check(Timestamp.valueOf("2026-12-06 10:00:20").equals(rs.getTimestamp(4)), "max " + rs.getTimestamp(4));
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT COUNT(*) FROM orders WHERE id IN (?, ?, ?, ?)")) {
                ps.setLong(1, 2); ps.setLong(2, 9); ps.setLong(3, 14); ps.setLong(4, 999999);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    check(rs.getLong(1) == 3, "IN over shards counts 3");
                }
            }

            // Transactions with autocommit off: rollback leaves nothing,
            // commit keeps both rows (on two shards).
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO orders (id, customer_id, amount, note, created) VALUES (?, 1, 1.00, 'tx', NOW())")) {
                ps.setLong(1, 101); ps.executeUpdate();
                ps.setLong(1, 102); ps.executeUpdate();
                c.rollback();
                ps.setLong(1, 103); ps.executeUpdate();
                ps.setLong(1, 104); ps.executeUpdate();
                c.commit();
            }
            c.setAutoCommit(true);
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT id FROM orders WHERE id BETWEEN 101 AND 104 ORDER BY id")) {
                List<Long> ids = new ArrayList<>();
                while (rs.next()) ids.add(rs.getLong(1));
                check(ids.equals(List.of(103L, 104L)), "rolled back 101, 102; committed 103, 104: " + ids);
            }
            try (PreparedStatement ps = c.prepareStatement("UPDATE orders SET note = ? WHERE id = ?")) {
                ps.setString(1, "updated");
                ps.setLong(2, 103);
                check(ps.executeUpdate() == 1, "update by id");
            }
            try (PreparedStatement ps = c.prepareStatement("DELETE FROM orders WHERE id = ?")) {
                ps.setLong(1, 104);
                check(ps.executeUpdate() == 1, "delete by id");
            }

            // The unsharded keyspace, qualified, and switching catalog.
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT name FROM commerce.product ORDER BY name")) {
                check(rs.next() && "anvil".equals(rs.getString(1)), "qualified unsharded table");
            }
            c.setCatalog("commerce");
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT COUNT(*) FROM product")) {
                rs.next();
                check(rs.getLong(1) == 2, "USE through setCatalog");
            }
            c.setCatalog("customer");

            // Errors arrive as SQLExceptions with MySQL's codes and states.
            expectError(c, "INSERT INTO orders (id, customer_id, amount, created) VALUES (1, 1, 1, NOW())", 1062, "23000");
            expectError(c, "SELECT * FROM nosuch", 1146, "42S02");
            expectError(c, "SELEC 1", 1064, "42000");
            try {
                c.setCatalog("nokeyspace");
                throw new AssertionError("FAILED: no error for an unknown catalog");
            } catch (SQLException e) {
                check(e.getErrorCode() == 1049, "unknown keyspace: " + e.getErrorCode());
            }
            check(c.isValid(5), "connection still valid after the errors");
        }
        try {
            DriverManager.getConnection("jdbc:mariadb://127.0.0.1:" + args[0] + "/customer", args[1], "wrong");
            throw new AssertionError("FAILED: a wrong password was accepted");
        } catch (SQLException e) {
            check(e.getErrorCode() == 1045, "wrong password refused with 1045: " + e.getErrorCode());
        }
        System.out.println("ALL OK " + checks);
    }
}
