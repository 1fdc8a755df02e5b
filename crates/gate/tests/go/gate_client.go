// A Go application against the gate, run by crates/gate/tests/drivers.rs with
// go-sql-driver/mysql (Debian's golang-github-go-sql-driver-mysql-dev):
// `GO111MODULE=off GOPATH=/usr/share/gocode go run gate_client.go <port>
// <user> <password>`.
//
// database/sql with arguments prepares, executes and closes a statement per
// call, on whichever pooled connection is free, from many goroutines at once;
// with interpolateParams=true the driver sends text instead. Both are how Go
// services talk to MySQL. Every answer is checked; it prints one line per
// check and "ALL OK <n>", and exits non-zero on the first wrong answer.
package main

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

var checks int

func check(ok bool, format string, args ...interface{}) {
	what := fmt.Sprintf(format, args...)
	if !ok {
		fmt.Println("FAILED: " + what)
		os.Exit(1)
	}
	checks++
	fmt.Println("ok " + what)
}

func must(err error, what string) {
	if err != nil {
		fmt.Printf("FAILED: %s: %v\n", what, err)
		os.Exit(1)
	}
}

func code(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

func main() {
	port, user, pass := os.Args[1], os.Args[2], os.Args[3]
	dsn := func(db, extra string) string {
		return fmt.Sprintf("%s:%s@tcp(127.0.0.1:%s)/%s?parseTime=true%s", user, pass, port, db, extra)
	}
	db, err := sql.Open("mysql", dsn("customer", ""))
	must(err, "open")
	db.SetMaxOpenConns(4)
	must(db.Ping(), "ping")

	// 40 inserts from 8 goroutines: prepare/execute/close per call over
	// 4 pooled connections.
	base := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for id := int64(g*5 + 1); id <= int64(g*5+5); id++ {
				var note interface{} = fmt.Sprintf("go %d ✓", id)
				if id%6 == 0 {
					note = nil
				}
				_, err := db.Exec("INSERT INTO orders (id, customer_id, amount, note, created) VALUES (?, ?, ?, ?, ?)",
					id, id%7, fmt.Sprintf("%d.75", id), note, base.Add(time.Duration(id)*time.Second))
				if err != nil {
					errs <- err
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(err, "concurrent insert")
	}
	check(true, "40 concurrent inserts")

	// One prepared statement, executed many times.
	stmt, err := db.Prepare("SELECT customer_id, amount, note, created FROM orders WHERE id = ?")
	must(err, "prepare")
	for _, id := range []int64{1, 6, 23, 40} {
		var cust int64
		var amount string
		var note sql.NullString
		var created time.Time
		must(stmt.QueryRow(id).Scan(&cust, &amount, &note, &created), fmt.Sprintf("row %d", id))
		check(cust == id%7 && amount == fmt.Sprintf("%d.75", id), "row %d: %d %s", id, cust, amount)
		check(note.Valid == (id%6 != 0) && (!note.Valid || note.String == fmt.Sprintf("go %d ✓", id)),
			"note of %d: %v", id, note)
		check(created.Equal(base.Add(time.Duration(id)*time.Second)), "created of %d: %v", id, created)
	}
	must(stmt.Close(), "close")

	// The sequence: LastInsertId.
	res, err := db.Exec("INSERT INTO orders (customer_id, amount, note, created) VALUES (?, ?, ?, ?)", 2, "0.10", "seq", base)
	must(err, "insert without id")
	seqID, err := res.LastInsertId()
	must(err, "LastInsertId")
	check(seqID >= 1000, "LastInsertId from the sequence: %d", seqID)

	// Scatter reads with arguments.
	rows, err := db.Query("SELECT id FROM orders WHERE amount > ? ORDER BY amount DESC LIMIT ?", "30", 3)
	must(err, "top 3")
	var top []int64
	for rows.Next() {
		var id int64
		must(rows.Scan(&id), "scan")
		top = append(top, id)
	}
	must(rows.Err(), "rows")
	check(fmt.Sprint(top) == "[40 39 38]", "top 3 across shards: %v", top)
	var n int64
	var sum string
	must(db.QueryRow("SELECT COUNT(*), SUM(amount) FROM orders WHERE id BETWEEN ? AND ?", 1, 40).Scan(&n, &sum), "aggregate")
	check(n == 40 && sum == "850.00", "count %d, sum %s", n, sum)

	// Transactions: rollback, then commit, each on one pooled connection.
	tx, err := db.Begin()
	must(err, "begin")
	_, err = tx.Exec("UPDATE orders SET note = ? WHERE id = ?", "tx", 7)
	must(err, "update in tx")
	_, err = tx.Exec("DELETE FROM orders WHERE id = ?", 8)
	must(err, "delete in tx")
	must(tx.Rollback(), "rollback")
	must(db.QueryRow("SELECT COUNT(*) FROM orders WHERE id IN (?, ?) AND (note IS NULL OR note <> 'tx')", 7, 8).Scan(&n), "after rollback")
	check(n == 2, "rollback kept both rows")
	tx, err = db.Begin()
	must(err, "begin")
	_, err = tx.Exec("UPDATE orders SET note = ? WHERE id = ?", "committed", 7)
	must(err, "update in tx")
	_, err = tx.Exec("DELETE FROM orders WHERE id = ?", seqID)
	must(err, "delete in tx")
	must(tx.Commit(), "commit")

	// Text protocol with client-side interpolation.
	text, err := sql.Open("mysql", dsn("customer", "&interpolateParams=true"))
	must(err, "open interpolated")
	var notes []string
	rows, err = text.Query("SELECT note FROM orders WHERE id IN (?, ?, ?) AND note IS NOT NULL", 1, 7, 12)
	must(err, "interpolated query")
	for rows.Next() {
		var s string
		must(rows.Scan(&s), "scan")
		notes = append(notes, s)
	}
	sort.Strings(notes)
	check(fmt.Sprint(notes) == "[committed go 1 ✓]", "interpolated IN: %v", notes)
	must(text.Close(), "close interpolated")

	// The unsharded keyspace, qualified.
	var name string
	must(db.QueryRow("SELECT name FROM commerce.product WHERE name = ?", "rope").Scan(&name), "commerce")
	check(name == "rope", "qualified unsharded table")

	// Errors carry MySQL's numbers.
	_, err = db.Exec("INSERT INTO orders (id, customer_id, amount, created) VALUES (?, 1, 1, NOW())", 1)
	check(code(err) == 1062, "duplicate key: %v", err)
	_, err = db.Query("SELECT * FROM nosuch WHERE id = ?", 1)
	check(code(err) == 1146, "unknown table: %v", err)
	_, err = db.Exec("SELEC ?", 1)
	check(code(err) == 1064, "syntax error: %v", err)
	bad, _ := sql.Open("mysql", fmt.Sprintf("%s:wrong@tcp(127.0.0.1:%s)/customer", user, port))
	check(code(bad.Ping()) == 1045, "wrong password refused")
	must(db.Close(), "close")
	fmt.Printf("ALL OK %d\n", checks)
}
