//! CPU time of the process under test, from `/proc/PID/stat`: utime + stime
//! (fields 14 and 15, all threads), in clock ticks converted with
//! `sysconf(_SC_CLK_TCK)`; per thread from `/proc/PID/task/*/stat` with the
//! threads' names from `comm`; the process listening on a TCP port (the ARI
//! server) or bound to a UDP port (rtpengine's ng) from
//! `/proc/net/{tcp,udp}{,6}` and the sockets in `/proc/*/fd`; and the load
//! generator's own CPU (the process, and one of its threads through its
//! CPU-time clock, in nanoseconds).

use std::collections::BTreeMap;
use std::time::Duration;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 if it fails).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_stat(&text).ok_or_else(|| format!("{path}: unexpected format"))
}

/// Fields after `comm` (which may hold spaces and parentheses) start at the
/// last `)`: state is field 3, utime 14, stime 15.
fn parse_stat(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time per thread of `pid`, summed by thread name (`comm`), in ticks.
pub fn thread_ticks(pid: u32) -> Result<BTreeMap<String, u64>, String> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {dir}: {e}"))?;
    let mut out = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path().join("stat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // the thread exited
        };
        let (Some(ticks), Some(name)) = (parse_stat(&text), comm_of(&text)) else {
            continue;
        };
        *out.entry(name).or_insert(0) += ticks;
    }
    Ok(out)
}

/// The `comm` field of a stat line (between the first `(` and the last `)`).
fn comm_of(text: &str) -> Option<String> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    (close > open).then(|| text[open + 1..close].to_string())
}

/// The process that listens on TCP `port` (on any address), if this user may
/// see its file descriptors.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    pid_with_socket(["/proc/net/tcp", "/proc/net/tcp6"], port, "0A")
}

/// The process with an unconnected UDP socket bound to `port` (rtpengine's
/// ng port), if this user may see its file descriptors.
pub fn pid_bound_udp(port: u16) -> Option<u32> {
    pid_with_socket(["/proc/net/udp", "/proc/net/udp6"], port, "07")
}

/// The process owning a socket on `port` in `state` (hex, as in the tables).
fn pid_with_socket(tables: [&str; 2], port: u16, state: &str) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in tables {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port, state));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if wanted.iter().any(|w| link.as_os_str() == w.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Inodes of sockets in `state` (0A: TCP LISTEN, 07: unconnected UDP) on
/// `port` in a `/proc/net/{tcp,udp}` table.
fn listening_inodes(table: &str, port: u16, state: &str) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port && *f.get(3)? == state)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// CPU time (user + system) of this whole process.
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The CPU-time clock of a thread of this process.
#[derive(Clone, Copy, Debug)]
pub struct ThreadClock(libc::clockid_t);

impl ThreadClock {
    /// The clock of a running thread (from its `JoinHandle`'s pthread id).
    pub fn of(thread: libc::pthread_t) -> Result<ThreadClock, String> {
        let mut id: libc::clockid_t = 0;
        // SAFETY: the thread is alive (its JoinHandle is held); id is ours.
        let rc = unsafe { libc::pthread_getcpuclockid(thread, &mut id) };
        if rc == 0 {
            Ok(ThreadClock(id))
        } else {
            Err(format!("pthread_getcpuclockid failed ({rc})"))
        }
    }

    /// CPU time the thread has used so far.
    pub fn now(self) -> Result<Duration, String> {
        // SAFETY: zeroed timespec is valid; clock_gettime writes into it.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer.
        if unsafe { libc::clock_gettime(self.0, &mut ts) } != 0 {
            return Err(format!(
                "clock_gettime(thread clock): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 5 0 1 2 3";
        assert_eq!(parse_stat(line), Some(325));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn listening_table_and_comm() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F98 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0
   1: 0100007F:1F98 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0";
        assert_eq!(listening_inodes(table, 8088, "0A"), vec![4242]);
        assert!(listening_inodes(table, 8089, "0A").is_empty());
        assert_eq!(comm_of("12 (shard 0) S 1").as_deref(), Some("shard 0"));
    }

    #[test]
    fn finds_own_listener_and_threads() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let uport = u.local_addr().unwrap().port();
        assert_eq!(pid_bound_udp(uport), Some(std::process::id()));
        assert!(!thread_ticks(std::process::id()).unwrap().is_empty());
        use std::os::unix::thread::JoinHandleExt;
        let h = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(50)));
        let clock = ThreadClock::of(h.as_pthread_t()).unwrap();
        assert!(clock.now().is_ok());
        h.join().unwrap();
    }

    #[test]
    fn reads_own_process() {
        assert!(cpu_ticks(std::process::id()).is_ok());
        assert!(clk_tck() > 0);
    }
}
