use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keyshift_topo::conformance::{self, next_event};
use keyshift_topo::{Cond, FileTopo, FileTopoOptions, Topo, TopoError, TopoExt, WatchEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let topo = FileTopo::open(dir.path().join("topo.db")).await.unwrap();
    conformance::run_all(Arc::new(topo)).await;
}

#[tokio::test]
async fn file_conformance_via_url_and_nested_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/topo.db");
    let topo = keyshift_topo::open(&format!("file:{}", path.display()))
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "topo file mode {mode:o}");
    topo.put("/secret", b"pw".to_vec(), Cond::Any)
        .await
        .unwrap();
    for suffix in ["-wal", "-shm"] {
        let side = path.with_file_name(format!("topo.db{suffix}"));
        let m = std::fs::metadata(&side).expect("WAL side files exist while open");
        assert_eq!(
            m.permissions().mode() & 0o077,
            0,
            "{} is group/world accessible",
            side.display()
        );
    }
    conformance::run_all(topo).await;
}

#[tokio::test]
async fn persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topo.db");
    let (rev, create) = {
        let topo = FileTopo::open(&path).await.unwrap();
        let create = topo
            .put("/keyspaces/a", b"1".to_vec(), Cond::Absent)
            .await
            .unwrap();
        topo.put("/keyspaces/b", b"2".to_vec(), Cond::Absent)
            .await
            .unwrap();
        topo.delete("/keyspaces/b", Cond::Any).await.unwrap();
        let rev = topo
            .put("/keyspaces/a", b"3".to_vec(), Cond::Any)
            .await
            .unwrap();
        (rev, create)
    };
    let topo = FileTopo::open(&path).await.unwrap();
    assert_eq!(topo.revision().await.unwrap(), rev);
    let kv = topo.get("/keyspaces/a").await.unwrap().unwrap();
    assert_eq!(kv.value, b"3");
    assert_eq!((kv.create_revision, kv.mod_revision), (create, rev));
    assert_eq!(topo.get("/keyspaces/b").await.unwrap(), None);
    // History survives too: a watcher can replay from the start.
    let mut w = topo.watch("/keyspaces/", 0).await.unwrap();
    let revs: Vec<u64> = [
        next_event(&mut w).await,
        next_event(&mut w).await,
        next_event(&mut w).await,
        next_event(&mut w).await,
    ]
    .iter()
    .map(WatchEvent::revision)
    .collect();
    assert_eq!(revs, [1, 2, 3, 4]);
    assert_eq!(topo.put("/x", vec![], Cond::Any).await.unwrap(), rev + 1);
}

#[tokio::test]
async fn random_bytes_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topo.db");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &junk).unwrap();
    let err = FileTopo::open(&path)
        .await
        .err()
        .expect("junk must be refused");
    let msg = err.to_string();
    assert!(msg.contains("not a keyshift topo"), "{msg}");
    assert!(msg.contains("topo.db"), "{msg}");
    // And it is left alone.
    assert_eq!(std::fs::read(&path).unwrap(), junk);

    std::fs::write(&path, b"hello").unwrap();
    let msg = FileTopo::open(&path).await.err().unwrap().to_string();
    assert!(msg.contains("not a keyshift topo"), "{msg}");
}

#[tokio::test]
async fn foreign_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let msg = FileTopo::open(&path).await.err().unwrap().to_string();
    assert!(msg.contains("not a keyshift topo"), "{msg}");
}

#[tokio::test]
async fn directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(FileTopo::open(dir.path()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_across_two_instances() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topo.db");
    let a = FileTopo::open(&path).await.unwrap();
    let b = FileTopo::open(&path).await.unwrap();
    a.put("/routing/before", b"0".to_vec(), Cond::Any)
        .await
        .unwrap();

    // b replays a's history, then sees a's live writes by polling.
    let mut w = b.watch("/routing/", 0).await.unwrap();
    assert_eq!(next_event(&mut w).await.key(), "/routing/before");
    let started = std::time::Instant::now();
    let rev = a
        .put("/routing/rules", b"1".to_vec(), Cond::Any)
        .await
        .unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!((ev.key(), ev.revision()), ("/routing/rules", rev));
    assert!(started.elapsed() < Duration::from_secs(2));

    // Writes interleave from both instances with one revision sequence.
    let r2 = b.put("/routing/b", b"2".to_vec(), Cond::Any).await.unwrap();
    let r3 = a.put("/routing/a", b"3".to_vec(), Cond::Any).await.unwrap();
    assert_eq!((r2, r3), (rev + 1, rev + 2));
    assert_eq!(next_event(&mut w).await.revision(), r2);
    assert_eq!(next_event(&mut w).await.revision(), r3);
    assert_eq!(a.revision().await.unwrap(), r3);

    // CAS sees the other instance's writes.
    assert!(matches!(
        a.put("/routing/b", vec![], Cond::ModRevision(rev)).await,
        Err(TopoError::CondFailed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_concurrent_counter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topo.db");
    let a: Arc<dyn Topo> = Arc::new(FileTopo::open(&path).await.unwrap());
    let b: Arc<dyn Topo> = Arc::new(FileTopo::open(&path).await.unwrap());
    tokio::join!(
        conformance::increment_concurrently(a.clone(), "/counter", 4, 25),
        conformance::increment_concurrently(b.clone(), "/counter", 4, 25),
    );
    let (n, _) = a.get_json::<u64>("/counter").await.unwrap().unwrap();
    assert_eq!(n, 200);
}

#[tokio::test]
async fn file_compacted_history() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileTopoOptions {
        retain_events: 5,
        retain_age: Duration::ZERO,
        ..FileTopoOptions::default()
    };
    let topo = FileTopo::open_with(dir.path().join("topo.db"), opts.clone())
        .await
        .unwrap();
    let mut lagging = topo.watch("/", 0).await.unwrap();
    for i in 0..20u8 {
        topo.put("/k", vec![i], Cond::Any).await.unwrap();
    }
    assert!(matches!(
        topo.watch("/", 1).await,
        Err(TopoError::Compacted { requested: 1, .. })
    ));
    let mut w = topo.watch("/", 15).await.unwrap();
    for rev in 16..=20 {
        assert_eq!(next_event(&mut w).await.revision(), rev);
    }
    // A watcher that had not read anything yet has lost events 1..15: it is told so.
    assert!(matches!(
        lagging.next().await,
        Some(Err(TopoError::Compacted { .. }))
    ));
    assert!(lagging.next().await.is_none());

    // Age-based retention keeps young events regardless of the count.
    let dir2 = tempfile::tempdir().unwrap();
    let topo2 = FileTopo::open_with(
        dir2.path().join("topo.db"),
        FileTopoOptions {
            retain_events: 5,
            retain_age: Duration::from_secs(3600),
            ..opts
        },
    )
    .await
    .unwrap();
    for i in 0..20u8 {
        topo2.put("/k", vec![i], Cond::Any).await.unwrap();
    }
    let mut w = topo2.watch("/", 0).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision(), 1);
}

#[tokio::test]
async fn big_replay_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let topo = FileTopo::open(dir.path().join("topo.db")).await.unwrap();
    // One txn of 1500 keys: more than one watch batch inside a single revision.
    let ops = (0..1500)
        .map(|i| keyshift_topo::Op::Put {
            key: format!("/bulk/{i:05}"),
            value: vec![1],
            cond: Cond::Any,
        })
        .collect();
    let rev = topo.txn(ops).await.unwrap();
    topo.put("/bulk/z", vec![], Cond::Any).await.unwrap();
    let mut w = topo.watch("/bulk/", 0).await.unwrap();
    for i in 0..1500 {
        let ev = next_event(&mut w).await;
        assert_eq!(
            (ev.key(), ev.revision()),
            (format!("/bulk/{i:05}").as_str(), rev)
        );
    }
    assert_eq!(next_event(&mut w).await.key(), "/bulk/z");
}

#[tokio::test]
async fn dropping_topo_ends_watch() {
    let dir = tempfile::tempdir().unwrap();
    let topo = FileTopo::open(dir.path().join("topo.db")).await.unwrap();
    let mut w = topo.watch("/", 0).await.unwrap();
    drop(topo);
    let end = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap();
    assert!(end.is_none());
}

#[tokio::test]
async fn watch_from_future_revision() {
    let dir = tempfile::tempdir().unwrap();
    let topo = FileTopo::open(dir.path().join("topo.db")).await.unwrap();
    topo.put("/k", vec![1], Cond::Any).await.unwrap();
    let mut w = topo.watch("/", 3).await.unwrap();
    topo.put("/k", vec![2], Cond::Any).await.unwrap(); // rev 2
    topo.put("/k", vec![3], Cond::Any).await.unwrap(); // rev 3
    topo.put("/k", vec![4], Cond::Any).await.unwrap(); // rev 4
    assert_eq!(next_event(&mut w).await.revision(), 4);
}

#[tokio::test]
async fn damaged_topo_file_errors_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topo.db");
    {
        let topo = FileTopo::open(&path).await.unwrap();
        for i in 0..200u32 {
            topo.put(&format!("/k/{i:04}"), vec![7; 300], Cond::Any)
                .await
                .unwrap();
        }
    }
    // Keep the header, scribble over everything after the first page.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8192, "file too small: {}", bytes.len());
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i as u8).wrapping_mul(151) ^ 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    match FileTopo::open(&path).await {
        Err(e) => assert!(e.to_string().contains("topo.db"), "{e}"),
        Ok(topo) => {
            let res = topo.list("/k/").await;
            let e = res.expect_err("reading a damaged file must fail");
            assert!(e.to_string().contains("topo.db"), "{e}");
        }
    }
}

/// A node keeps a dozen idle watches on its topo; each used to read the
/// file every poll interval. They now share one recent read of the store's
/// revision, and still see writes from this handle and from another
/// process's (here: another handle, with its own connections and probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watchers_share_their_polls_and_still_see_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topo.db");
    let opts = FileTopoOptions {
        poll_interval: Duration::from_millis(20),
        ..FileTopoOptions::default()
    };
    let topo = FileTopo::open_with(&path, opts.clone()).await.unwrap();
    let other = FileTopo::open_with(&path, opts).await.unwrap();
    let rev = topo.revision().await.unwrap();
    const WATCHERS: usize = 10;
    let mut tasks = Vec::new();
    for i in 0..WATCHERS {
        let mut w = topo.watch(&format!("/w{i}/"), rev).await.unwrap();
        tasks.push(tokio::spawn(async move { w.next().await }));
    }
    // Let every watcher make its first read, then count the polls of a
    // 600 ms window: unshared that is WATCHERS x 30 reads.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = topo.watch_poll_reads();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let reads = topo.watch_poll_reads() - before;
    assert!(
        reads < (WATCHERS as u64 * 30) / 3,
        "{WATCHERS} idle watchers made {reads} SQLite reads in 600 ms"
    );
    eprintln!("{WATCHERS} idle watchers: {reads} SQLite reads in 600 ms");
    assert!(reads > 0, "idle watchers stopped polling");

    let from_other = other
        .put("/w3/k", b"from another process".to_vec(), Cond::Any)
        .await
        .unwrap();
    let from_here = topo
        .put("/w7/k", b"from this one".to_vec(), Cond::Any)
        .await
        .unwrap();
    let mut tasks: Vec<_> = tasks.into_iter().map(Some).collect();
    for (i, want) in [(3, from_other), (7, from_here)] {
        let task = tasks[i].take().unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|_| panic!("watcher /w{i}/ did not see its write"))
            .unwrap()
            .expect("stream ended")
            .expect("watch error");
        assert_eq!(ev.revision(), want, "watcher /w{i}/ got {ev:?}");
    }
    for (i, t) in tasks.iter().enumerate() {
        if let Some(t) = t {
            assert!(
                !t.is_finished(),
                "watcher /w{i}/ got an event it should not have"
            );
        }
    }
}
