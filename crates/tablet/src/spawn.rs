//! Spawning servers that must die with the process that started them.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not
//! when the process does. Test runtimes come and go with their tests (a
//! `#[tokio::test]` current-thread runtime lives on the test's thread, and
//! `spawn_blocking` threads retire after 10 s idle), so forking from whatever
//! thread happens to run `start` would kill servers early and at random.
//! Children that must die with us are therefore forked by one dedicated thread
//! that lives until the process exits. It holds no state besides the request
//! queue, so tests running in parallel cannot disturb one another through it.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;

type Request = (Command, mpsc::Sender<io::Result<Child>>);

static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();

/// Spawns `cmd`; with `die_with_parent` the child gets SIGKILL when this
/// process dies, however it dies.
pub(crate) fn spawn(mut cmd: Command, die_with_parent: bool) -> io::Result<Child> {
    if !die_with_parent {
        return cmd.spawn();
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        let started = std::thread::Builder::new()
            .name("keyshift-spawner".into())
            .spawn(move || {
                for (cmd, reply) in rx {
                    let _ = reply.send(spawn_dying_with_parent(cmd));
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the spawner thread");
        }
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the spawner thread is not running"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the spawner thread did not answer"))?
}

fn spawn_dying_with_parent(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited before the server started"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}
