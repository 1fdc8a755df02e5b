//! Facts about other processes, read from /proc, so that a pid found on disk
//! can be told apart from an unrelated process that reused the number.

use std::path::Path;

/// Start time of a process in clock ticks since boot (field 22 of
/// /proc/pid/stat). Together with the pid it names one process for good.
/// None when the process is gone or is a zombie (it has exited, only its exit
/// status waits to be collected).
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); starttime is field 22.
    fields.nth(22 - 4)?.parse().ok()
}

pub(crate) fn is_alive(pid: u32) -> bool {
    start_ticks(pid).is_some()
}

/// Whether the pid is alive and is the very process recorded earlier.
pub(crate) fn is_same_process(pid: u32, ticks: u64) -> bool {
    start_ticks(pid) == Some(ticks)
}

/// Whether a live pid runs a MySQL-family server. When /proc does not say,
/// assume it does: refusing to start is safer than two servers on one datadir.
pub(crate) fn is_mysql_server(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => {
            let comm = comm.trim();
            comm.contains("mariadbd") || comm.contains("mysqld")
        }
        Err(_) => is_alive(pid),
    }
}

/// The pid holding InnoDB's write lock on the system tablespace, which every
/// running server keeps on its datadir whatever its pid file says.
pub(crate) fn innodb_lock_holder(datadir: &Path) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(datadir.join("ibdata1")).ok()?;
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_GETLK only reads and writes the flock we pass.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    if rc != 0 || lock.l_type == libc::F_UNLCK as libc::c_short || lock.l_pid <= 0 {
        return None;
    }
    Some(lock.l_pid as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_stable() {
        let me = std::process::id();
        let t = start_ticks(me).expect("own stat");
        assert!(is_same_process(me, t));
        assert!(!is_same_process(me, t + 1));
        assert!(!is_mysql_server(me));
    }
}
