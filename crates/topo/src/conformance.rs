//! The behaviour every backend must show, as a reusable test suite: run [`run_all`] against a
//! fresh backend in a `#[tokio::test]` (the etcd backend will reuse it). Failures panic.
//!
//! Each check works under its own key prefix, so they can share one store, and only assumes that
//! revisions increase (not that nobody else writes), so a shared etcd is fine.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::{Cond, Op, Topo, TopoError, TopoExt, UpdateError, WatchEvent};

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs every check, then closes the topo (the close check must come last).
pub async fn run_all(topo: Arc<dyn Topo>) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let base = format!("/conformance/{nanos}");
    basic_crud(topo.clone(), &format!("{base}/crud")).await;
    cas(topo.clone(), &format!("{base}/cas")).await;
    txn_atomicity(topo.clone(), &format!("{base}/txn")).await;
    revisions_monotonic(topo.clone(), &format!("{base}/rev")).await;
    list_ordering(topo.clone(), &format!("{base}/list")).await;
    watch_replay_then_live(topo.clone(), &format!("{base}/watch")).await;
    json_helpers(topo.clone(), &format!("{base}/json")).await;
    concurrent_update_json(topo.clone(), &format!("{base}/counter"), 8, 25).await;
    close_ends_watch(topo, &format!("{base}/close")).await;
}

/// The next event, failing the test if none comes in time or the stream errs or ends.
pub async fn next_event(
    stream: &mut BoxStream<'static, Result<WatchEvent, TopoError>>,
) -> WatchEvent {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch stream error: {e}"),
        Ok(None) => panic!("watch stream ended"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

pub async fn basic_crud(topo: Arc<dyn Topo>, base: &str) {
    let key = format!("{base}/k");
    let before = topo.revision().await.unwrap();
    assert_eq!(topo.get(&key).await.unwrap(), None);

    let r1 = topo.put(&key, b"one".to_vec(), Cond::Any).await.unwrap();
    assert!(r1 > before, "put must bump the revision ({r1} > {before})");
    let kv = topo.get(&key).await.unwrap().expect("key after put");
    assert_eq!(kv.key, key);
    assert_eq!(kv.value, b"one");
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1));
    assert!(topo.revision().await.unwrap() >= r1);

    let r2 = topo.put(&key, b"two".to_vec(), Cond::Any).await.unwrap();
    assert!(r2 > r1);
    let kv = topo.get(&key).await.unwrap().unwrap();
    assert_eq!(kv.value, b"two");
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r2));

    let r3 = topo.delete(&key, Cond::Any).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(topo.get(&key).await.unwrap(), None);

    // Deleting an absent key is fine and writes nothing.
    let rev_now = topo.revision().await.unwrap();
    let r4 = topo.delete(&key, Cond::Any).await.unwrap();
    assert!(r4 >= r3);
    assert!(r4 <= topo.revision().await.unwrap());
    let _ = rev_now;

    // A re-created key starts a new life.
    let r5 = topo.put(&key, b"three".to_vec(), Cond::Any).await.unwrap();
    let kv = topo.get(&key).await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r5, r5));

    // Empty values are values.
    let empty = format!("{base}/empty");
    topo.put(&empty, Vec::new(), Cond::Absent).await.unwrap();
    assert_eq!(topo.get(&empty).await.unwrap().unwrap().value, b"");
}

fn assert_cond_failed<T: std::fmt::Debug>(res: Result<T, TopoError>, key: &str) {
    match res {
        Err(TopoError::CondFailed { key: k, .. }) => assert_eq!(k, key),
        other => panic!("expected CondFailed on {key}, got {other:?}"),
    }
}

pub async fn cas(topo: Arc<dyn Topo>, base: &str) {
    let key = format!("{base}/k");
    let r1 = topo.put(&key, b"a".to_vec(), Cond::Absent).await.unwrap();
    assert_cond_failed(topo.put(&key, b"b".to_vec(), Cond::Absent).await, &key);
    assert_eq!(topo.get(&key).await.unwrap().unwrap().value, b"a");

    let r2 = topo
        .put(&key, b"b".to_vec(), Cond::ModRevision(r1))
        .await
        .unwrap();
    assert!(r2 > r1);
    // Stale revision: refused, value kept.
    assert_cond_failed(
        topo.put(&key, b"c".to_vec(), Cond::ModRevision(r1)).await,
        &key,
    );
    assert_cond_failed(
        topo.put(&key, b"c".to_vec(), Cond::ModRevision(0)).await,
        &key,
    );
    assert_eq!(topo.get(&key).await.unwrap().unwrap().value, b"b");

    assert_cond_failed(topo.delete(&key, Cond::ModRevision(r1)).await, &key);
    assert_cond_failed(topo.delete(&key, Cond::Absent).await, &key);
    assert!(topo.get(&key).await.unwrap().is_some());
    topo.delete(&key, Cond::ModRevision(r2)).await.unwrap();
    assert_eq!(topo.get(&key).await.unwrap(), None);

    // Conditions on an absent key.
    assert_cond_failed(topo.delete(&key, Cond::ModRevision(r2)).await, &key);
    assert_cond_failed(
        topo.put(&key, b"x".to_vec(), Cond::ModRevision(r2)).await,
        &key,
    );
    topo.delete(&key, Cond::Absent).await.unwrap();
    topo.put(&key, b"z".to_vec(), Cond::ModRevision(0))
        .await
        .unwrap();
    assert_eq!(topo.get(&key).await.unwrap().unwrap().value, b"z");
}

pub async fn txn_atomicity(topo: Arc<dyn Topo>, base: &str) {
    let a = format!("{base}/a");
    let b = format!("{base}/b");
    let c = format!("{base}/c");
    topo.put(&a, b"1".to_vec(), Cond::Any).await.unwrap();
    let rev_before = topo.revision().await.unwrap();

    let put = |k: &str, v: &str, cond: Cond| Op::Put {
        key: k.to_string(),
        value: v.as_bytes().to_vec(),
        cond,
    };
    // The failing condition is last: the earlier puts must not land either.
    let res = topo
        .txn(vec![
            put(&b, "2", Cond::Any),
            put(&c, "3", Cond::Absent),
            put(&a, "x", Cond::Absent),
        ])
        .await;
    assert_cond_failed(res, &a);
    assert_eq!(topo.get(&b).await.unwrap(), None);
    assert_eq!(topo.get(&c).await.unwrap(), None);
    assert_eq!(topo.get(&a).await.unwrap().unwrap().value, b"1");
    assert_eq!(topo.revision().await.unwrap(), rev_before);

    // A failing delete condition also aborts everything.
    let res = topo
        .txn(vec![
            put(&b, "2", Cond::Any),
            Op::Delete {
                key: c.clone(),
                cond: Cond::ModRevision(12345),
            },
        ])
        .await;
    assert_cond_failed(res, &c);
    assert_eq!(topo.get(&b).await.unwrap(), None);

    // Success: one revision for all keys.
    let a_rev = topo.get(&a).await.unwrap().unwrap().mod_revision;
    let rev = topo
        .txn(vec![
            put(&a, "10", Cond::ModRevision(a_rev)),
            put(&b, "20", Cond::Absent),
            put(&c, "30", Cond::Any),
        ])
        .await
        .unwrap();
    assert!(rev > rev_before);
    for (k, v) in [(&a, "10"), (&b, "20"), (&c, "30")] {
        let kv = topo.get(k).await.unwrap().unwrap();
        assert_eq!(kv.value, v.as_bytes());
        assert_eq!(kv.mod_revision, rev);
    }

    // A key may appear only once per transaction.
    let res = topo
        .txn(vec![put(&a, "1", Cond::Any), put(&a, "2", Cond::Any)])
        .await;
    assert!(matches!(res, Err(TopoError::InvalidTxn(_))), "{res:?}");
    let res = topo
        .txn(vec![
            Op::DeletePrefix {
                prefix: format!("{base}/"),
            },
            put(&a, "1", Cond::Any),
        ])
        .await;
    assert!(matches!(res, Err(TopoError::InvalidTxn(_))), "{res:?}");
    assert_eq!(topo.get(&a).await.unwrap().unwrap().value, b"10");

    // DeletePrefix plus a put elsewhere, atomically.
    let elsewhere = format!("{base}-other/k");
    let rev = topo
        .txn(vec![
            Op::DeletePrefix {
                prefix: format!("{base}/"),
            },
            put(&elsewhere, "moved", Cond::Absent),
        ])
        .await
        .unwrap();
    assert!(topo.list(&format!("{base}/")).await.unwrap().is_empty());
    assert_eq!(
        topo.get(&elsewhere).await.unwrap().unwrap().mod_revision,
        rev
    );

    // Empty and no-op transactions write nothing.
    let now = topo.revision().await.unwrap();
    assert_eq!(topo.txn(vec![]).await.unwrap(), now);
    let r = topo
        .txn(vec![Op::DeletePrefix {
            prefix: format!("{base}/nothing-here/"),
        }])
        .await
        .unwrap();
    assert!(r >= now);
}

pub async fn revisions_monotonic(topo: Arc<dyn Topo>, base: &str) {
    let mut last = topo.revision().await.unwrap();
    for i in 0..20 {
        let key = format!("{base}/k{}", i % 3);
        let rev = if i % 4 == 3 {
            topo.delete(&key, Cond::Any).await.unwrap()
        } else {
            topo.put(&key, vec![i as u8], Cond::Any).await.unwrap()
        };
        assert!(rev >= last, "revision went back: {rev} < {last}");
        let current = topo.revision().await.unwrap();
        assert!(current >= rev);
        last = rev;
    }
    // Puts always write, so they always advance.
    let a = topo
        .put(&format!("{base}/x"), vec![], Cond::Any)
        .await
        .unwrap();
    let b = topo
        .put(&format!("{base}/x"), vec![], Cond::Any)
        .await
        .unwrap();
    assert!(b > a && a > last);
}

pub async fn list_ordering(topo: Arc<dyn Topo>, base: &str) {
    let keys = [
        "/a/2",
        "/a/10",
        "/a/1",
        "/ab",
        "/a",
        "/a/",
        "/a/z",
        "/a/\u{e9}",
        "/a/1/x",
        "/b",
    ];
    for k in keys {
        topo.put(&format!("{base}{k}"), k.as_bytes().to_vec(), Cond::Any)
            .await
            .unwrap();
    }
    let names = |kvs: Vec<crate::KeyValue>| -> Vec<String> {
        kvs.into_iter()
            .map(|kv| kv.key[base.len()..].to_string())
            .collect()
    };
    assert_eq!(
        names(topo.list(&format!("{base}/a/")).await.unwrap()),
        [
            "/a/",
            "/a/1",
            "/a/1/x",
            "/a/10",
            "/a/2",
            "/a/z",
            "/a/\u{e9}"
        ]
    );
    assert_eq!(
        names(topo.list(&format!("{base}/a")).await.unwrap()),
        [
            "/a",
            "/a/",
            "/a/1",
            "/a/1/x",
            "/a/10",
            "/a/2",
            "/a/z",
            "/a/\u{e9}",
            "/ab"
        ]
    );
    assert_eq!(
        names(topo.list(&format!("{base}/a/1")).await.unwrap()),
        ["/a/1", "/a/1/x", "/a/10"]
    );
    assert!(topo.list(&format!("{base}/c")).await.unwrap().is_empty());
    let all = topo.list(base).await.unwrap();
    assert_eq!(all.len(), keys.len());
    let first = &all[0];
    assert_eq!(first.value, b"/a");
    assert!(first.mod_revision > 0);
}

pub async fn watch_replay_then_live(topo: Arc<dyn Topo>, base: &str) {
    let dir = format!("{base}/w/");
    let start = topo.revision().await.unwrap();
    let r1 = topo
        .put(&format!("{dir}k1"), b"v1".to_vec(), Cond::Any)
        .await
        .unwrap();
    // Siblings with a shared string prefix must not leak in.
    topo.put(&format!("{base}/wx"), b"no".to_vec(), Cond::Any)
        .await
        .unwrap();
    let r2 = topo
        .put(&format!("{dir}k2"), b"v2".to_vec(), Cond::Any)
        .await
        .unwrap();
    let r3 = topo.delete(&format!("{dir}k1"), Cond::Any).await.unwrap();

    let mut w = topo.watch(&dir, start).await.unwrap();
    let e1 = next_event(&mut w).await;
    match &e1 {
        WatchEvent::Put(kv) => {
            assert_eq!(kv.key, format!("{dir}k1"));
            assert_eq!(kv.value, b"v1");
            assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1));
        }
        other => panic!("expected put k1, got {other:?}"),
    }
    assert_eq!(next_event(&mut w).await.revision(), r2);
    assert_eq!(
        next_event(&mut w).await,
        WatchEvent::Delete {
            key: format!("{dir}k1"),
            revision: r3
        }
    );

    // Live: a multi-key txn arrives as events sharing one revision, in op order.
    let rt = topo
        .txn(vec![
            Op::Put {
                key: format!("{dir}t2"),
                value: b"2".to_vec(),
                cond: Cond::Any,
            },
            Op::Put {
                key: format!("{base}/wx"),
                value: b"no".to_vec(),
                cond: Cond::Any,
            },
            Op::Put {
                key: format!("{dir}t1"),
                value: b"1".to_vec(),
                cond: Cond::Any,
            },
        ])
        .await
        .unwrap();
    let a = next_event(&mut w).await;
    let b = next_event(&mut w).await;
    assert_eq!((a.key(), a.revision()), (format!("{dir}t2").as_str(), rt));
    assert_eq!((b.key(), b.revision()), (format!("{dir}t1").as_str(), rt));
    let rd = topo
        .txn(vec![Op::DeletePrefix {
            prefix: dir.clone(),
        }])
        .await
        .unwrap();
    let mut deleted = Vec::new();
    for _ in 0..3 {
        let ev = next_event(&mut w).await;
        assert!(matches!(ev, WatchEvent::Delete { .. }), "{ev:?}");
        assert_eq!(ev.revision(), rd);
        deleted.push(ev.key().to_string());
    }
    assert_eq!(
        deleted,
        [format!("{dir}k2"), format!("{dir}t1"), format!("{dir}t2")]
    );

    // Resuming after a revision skips it, and a second watcher sees the same history.
    let mut w2 = topo.watch(&dir, r1).await.unwrap();
    assert_eq!(next_event(&mut w2).await.revision(), r2);
    assert_eq!(next_event(&mut w2).await.revision(), r3);

    // Watching from "now" only sees the future.
    let now = topo.revision().await.unwrap();
    let mut w3 = topo.watch(&dir, now).await.unwrap();
    let r4 = topo
        .put(&format!("{dir}live"), b"x".to_vec(), Cond::Any)
        .await
        .unwrap();
    let ev = next_event(&mut w3).await;
    assert_eq!(
        (ev.key(), ev.revision()),
        (format!("{dir}live").as_str(), r4)
    );
    let ev = next_event(&mut w).await;
    assert_eq!(ev.revision(), r4);
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Sample {
    name: String,
    shards: Vec<String>,
}

pub async fn json_helpers(topo: Arc<dyn Topo>, base: &str) {
    let key = format!("{base}/ks/commerce");
    let v = Sample {
        name: "commerce".into(),
        shards: vec!["-80".into(), "80-".into()],
    };
    let rev = topo.put_json(&key, &v, Cond::Absent).await.unwrap();
    let (got, got_rev) = topo.get_json::<Sample>(&key).await.unwrap().unwrap();
    assert_eq!((got, got_rev), (v.clone(), rev));
    assert!(
        topo.get_json::<Sample>(&format!("{base}/none"))
            .await
            .unwrap()
            .is_none()
    );
    let listed = topo
        .list_json::<Sample>(&format!("{base}/ks/"))
        .await
        .unwrap();
    assert_eq!(listed, vec![(key.clone(), v.clone(), rev)]);

    // Malformed JSON: an error that names the key, from every helper.
    let bad = format!("{base}/ks/broken");
    topo.put(&bad, b"{not json".to_vec(), Cond::Any)
        .await
        .unwrap();
    match topo.get_json::<Sample>(&bad).await {
        Err(TopoError::Json { key, .. }) => assert_eq!(key, bad),
        other => panic!("expected Json error, got {other:?}"),
    }
    match topo.list_json::<Sample>(&format!("{base}/ks/")).await {
        Err(TopoError::Json { key, .. }) => assert_eq!(key, bad),
        other => panic!("expected Json error, got {other:?}"),
    }
    let res = topo
        .update_json::<Sample, _, String>(&bad, |_| Ok(v.clone()))
        .await;
    assert!(
        matches!(&res, Err(UpdateError::Topo(TopoError::Json { key, .. })) if *key == bad),
        "{res:?}"
    );

    // update_json: create, modify, abort.
    let counter = format!("{base}/n");
    let (n, _) = topo
        .update_json::<u64, _, String>(&counter, |cur| {
            assert!(cur.is_none());
            Ok(7)
        })
        .await
        .unwrap();
    assert_eq!(n, 7);
    let (n, rev) = topo
        .update_json::<u64, _, String>(&counter, |cur| Ok(cur.unwrap() + 1))
        .await
        .unwrap();
    assert_eq!(n, 8);
    let res = topo
        .update_json::<u64, _, String>(&counter, |_| Err("no".to_string()))
        .await;
    assert!(matches!(res, Err(UpdateError::Aborted(ref e)) if e == "no"));
    assert_eq!(
        topo.get_json::<u64>(&counter).await.unwrap(),
        Some((8, rev))
    );
}

/// `tasks` concurrent writers each add 1 `per_task` times through `update_json`; the counter
/// must end at exactly `tasks * per_task` (the key must be absent or 0 at the start).
pub async fn concurrent_update_json(topo: Arc<dyn Topo>, key: &str, tasks: u64, per_task: u64) {
    increment_concurrently(topo.clone(), key, tasks, per_task).await;
    let (n, _) = topo.get_json::<u64>(key).await.unwrap().unwrap();
    assert_eq!(n, tasks * per_task);
}

/// The writing half of [`concurrent_update_json`], for tests that run several of them at once
/// (e.g. from several processes) and check the grand total themselves.
pub async fn increment_concurrently(topo: Arc<dyn Topo>, key: &str, tasks: u64, per_task: u64) {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let topo = topo.clone();
        let key = key.to_string();
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                topo.update_json::<u64, _, std::convert::Infallible>(&key, |cur| {
                    Ok(cur.unwrap_or(0) + 1)
                })
                .await
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

/// Closing ends watch streams and makes later calls fail with `Closed`.
pub async fn close_ends_watch(topo: Arc<dyn Topo>, base: &str) {
    let rev = topo.revision().await.unwrap();
    let mut w = topo.watch(base, rev).await.unwrap();
    topo.put(&format!("{base}/k"), b"v".to_vec(), Cond::Any)
        .await
        .unwrap();
    next_event(&mut w).await;
    topo.close().await;
    let end = tokio::time::timeout(EVENT_TIMEOUT, w.next())
        .await
        .expect("watch stream did not end after close");
    assert!(end.is_none(), "expected end of stream, got {end:?}");
    assert!(matches!(
        topo.get(&format!("{base}/k")).await,
        Err(TopoError::Closed)
    ));
}
