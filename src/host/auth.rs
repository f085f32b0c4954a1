//! Failed ARI logins: logged per source (rate limited) and slowed per source.
//!
//! A source is an IPv4 address or an IPv6 /64. After `ari.auth_fail_limit`
//! wrong credentials from a source within `ari.auth_fail_window_s` seconds,
//! the source is *throttled*: each of its requests that carries credentials
//! waits for a slot, one slot per [`THROTTLE_INTERVAL`], before its
//! credentials are checked; a request whose slot is more than
//! [`THROTTLE_MAX_WAIT`] away gets 429 without being checked. Right and wrong
//! credentials wait alike: a reply that came sooner for the right password
//! would let a client guess at full speed by abandoning slow requests. A
//! right password that passes its slot ends the throttle for its source (so
//! a legitimate client behind the same address is slowed for one slot, not a
//! whole window). Requests without credentials are never slowed (they guess
//! nothing). The state is one small mutex, never held across an await, and
//! independent of the control lock: other sources never wait.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time between two credential checks of a throttled source.
pub const THROTTLE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a throttled request waits for its slot; beyond, 429.
pub const THROTTLE_MAX_WAIT: Duration = Duration::from_secs(3);
/// At most one "failed login" log line per source per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Sources remembered at once (beyond, the stalest record is forgotten).
const MAX_SOURCES: usize = 10_000;

/// What to do with a request that carries credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Check them now.
    Now,
    /// Check them after this wait.
    After(Duration),
    /// Refuse with 429 unchecked; retry after this many seconds.
    Refuse(u64),
}

#[derive(Debug)]
struct Record {
    /// Failures counted in the window that started at `window_start`.
    failures: u32,
    window_start: Instant,
    last_failure: Instant,
    /// While throttled: the next free check slot.
    next_slot: Option<Instant>,
    /// Failures not yet reported in the log, and when the last report was.
    unlogged: u64,
    last_log: Option<Instant>,
}

/// Per-source failed-login state.
pub struct Guard {
    limit: u32,
    window: Duration,
    sources: Mutex<HashMap<IpAddr, Record>>,
}

/// The key of a source: the address, or its /64 for IPv6 (IPv4-mapped
/// addresses as IPv4).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

impl Guard {
    /// `limit` failures per `window` before throttling (0: never throttle).
    pub fn new(limit: u32, window: Duration) -> Guard {
        Guard {
            limit,
            window,
            sources: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        // A panic while holding it leaves plain counters: still usable.
        self.sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides when a request from `ip` carrying credentials is checked.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Admit {
        let mut map = self.lock();
        let Some(rec) = map.get_mut(&source_key(ip)) else {
            return Admit::Now;
        };
        if now.duration_since(rec.window_start) >= self.window {
            // The window has passed: the source starts afresh.
            rec.failures = 0;
            rec.window_start = now;
            rec.next_slot = None;
        }
        let Some(slot) = rec.next_slot else {
            return Admit::Now;
        };
        let slot = slot.max(now);
        let wait = slot - now;
        if wait > THROTTLE_MAX_WAIT {
            return Admit::Refuse((wait - THROTTLE_MAX_WAIT).as_secs().max(1));
        }
        rec.next_slot = Some(slot + THROTTLE_INTERVAL);
        if wait.is_zero() {
            Admit::Now
        } else {
            Admit::After(wait)
        }
    }

    /// Records wrong credentials from `ip`. Returns the failures to report
    /// in a log line now (this one included), or `None` while the source's
    /// log is quiet.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let key = source_key(ip);
        let mut map = self.lock();
        if !map.contains_key(&key) && map.len() >= MAX_SOURCES {
            forget_stalest(&mut map, now, self.window);
        }
        let rec = map.entry(key).or_insert(Record {
            failures: 0,
            window_start: now,
            last_failure: now,
            next_slot: None,
            unlogged: 0,
            last_log: None,
        });
        if now.duration_since(rec.window_start) >= self.window {
            rec.failures = 0;
            rec.window_start = now;
            rec.next_slot = None;
        }
        rec.failures = rec.failures.saturating_add(1);
        rec.last_failure = now;
        if self.limit > 0 && rec.failures >= self.limit && rec.next_slot.is_none() {
            rec.next_slot = Some(now + THROTTLE_INTERVAL);
        }
        rec.unlogged += 1;
        let quiet = rec
            .last_log
            .is_some_and(|t| now.duration_since(t) < LOG_INTERVAL);
        if quiet {
            return None;
        }
        rec.last_log = Some(now);
        Some(std::mem::take(&mut rec.unlogged))
    }

    /// Records right credentials from `ip`: a throttle on it ends (the
    /// check already waited for its slot); its log state is kept.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.lock();
        if let Some(rec) = map.get_mut(&source_key(ip)) {
            rec.failures = 0;
            rec.next_slot = None;
        }
    }

    /// Whether `ip` is throttled now (for tests and diagnostics).
    pub fn throttled(&self, ip: IpAddr) -> bool {
        self.lock()
            .get(&source_key(ip))
            .is_some_and(|r| r.next_slot.is_some())
    }
}

/// Makes room in a full table: drops records whose window has passed and
/// that are not throttled; if none, the one with the oldest failure.
fn forget_stalest(map: &mut HashMap<IpAddr, Record>, now: Instant, window: Duration) {
    map.retain(|_, r| r.next_slot.is_some() || now.duration_since(r.window_start) < window);
    if map.len() >= MAX_SOURCES {
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, r)| r.last_failure)
            .map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
    }
}

/// Compares `given` with `want` in time that depends on `want`'s length
/// only: no early exit on a differing byte or on a length mismatch.
pub fn constant_eq(given: &[u8], want: &[u8]) -> bool {
    let mut diff = u64::from(given.len() != want.len());
    for (i, w) in want.iter().enumerate() {
        // Out of range reads compare against 0 (the length already differs).
        let g = given.get(i).copied().unwrap_or(0);
        diff |= u64::from(std::hint::black_box(g ^ w));
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn constant_eq_is_equality() {
        assert!(constant_eq(b"asterisk", b"asterisk"));
        assert!(!constant_eq(b"asterisK", b"asterisk"));
        assert!(!constant_eq(b"aster", b"asterisk"));
        assert!(!constant_eq(b"asterisk\0", b"asterisk"));
        assert!(!constant_eq(b"", b"x"));
        assert!(constant_eq(b"", b""));
    }

    #[test]
    fn throttles_after_the_limit_per_source_only() {
        let g = Guard::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for _ in 0..2 {
            assert_eq!(g.admit(A, t), Admit::Now);
            g.failed(A, t);
        }
        assert!(!g.throttled(A));
        g.failed(A, t);
        assert!(g.throttled(A));
        // slots one interval apart, then 429 beyond the longest wait
        assert_eq!(g.admit(A, t), Admit::After(THROTTLE_INTERVAL));
        assert_eq!(g.admit(A, t), Admit::After(2 * THROTTLE_INTERVAL));
        assert_eq!(g.admit(A, t), Admit::After(3 * THROTTLE_INTERVAL));
        assert!(matches!(g.admit(A, t), Admit::Refuse(_)));
        // another source is untouched
        assert_eq!(g.admit(B, t), Admit::Now);
        // a later window starts afresh
        assert_eq!(g.admit(A, t + Duration::from_secs(61)), Admit::Now);
        assert!(!g.throttled(A));
    }

    #[test]
    fn success_ends_the_throttle() {
        let g = Guard::new(1, Duration::from_secs(60));
        let t = Instant::now();
        g.failed(A, t);
        assert!(g.throttled(A));
        g.succeeded(A);
        assert_eq!(g.admit(A, t), Admit::Now);
    }

    #[test]
    fn log_lines_are_rate_limited_with_a_count() {
        let g = Guard::new(0, Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!(g.failed(A, t), Some(1));
        for _ in 0..5 {
            assert_eq!(g.failed(A, t + Duration::from_secs(1)), None);
        }
        assert!(!g.throttled(A), "limit 0 never throttles");
        assert_eq!(g.failed(A, t + LOG_INTERVAL), Some(6));
    }

    #[test]
    fn ipv6_sources_are_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        let m: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(source_key(m), A);
    }

    #[test]
    fn the_table_is_bounded() {
        let g = Guard::new(5, Duration::from_secs(60));
        let t = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            g.failed(IpAddr::V4(i.into()), t);
        }
        assert!(g.lock().len() <= MAX_SOURCES);
    }
}
