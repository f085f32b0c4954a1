//! Node counters, served in Prometheus text form on `/metrics` (outside `/ari`,
//! behind the same credentials).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the control plane. Relaxed atomics: they are statistics only.
#[derive(Default)]
pub struct Metrics {
    pub http_requests: AtomicU64,
    pub http_client_errors: AtomicU64,
    pub http_server_errors: AtomicU64,
    pub auth_failures: AtomicU64,
    pub auth_throttled: AtomicU64,
    /// Writes refused (403) to a `read_only` user.
    pub auth_read_only_refused: AtomicU64,
    pub ws_sessions: AtomicU64,
    pub ws_bad_messages: AtomicU64,
    pub events_sent: AtomicU64,
    pub events_dropped: AtomicU64,
    /// Events WebSockets closed (1008) for not reading: over their own
    /// bound, or the biggest when the total was reached.
    pub ws_slow_closed_total: AtomicU64,
    /// Events WebSocket upgrades refused (503) at `ari.max_event_sockets`.
    pub ws_refused_total: AtomicU64,
    // Connections of the control socket (`host::conn`).
    pub http_connections_open: AtomicU64,
    pub http_connections_refused: AtomicU64,
    pub http_connections_evicted: AtomicU64,
    pub http_header_timeouts: AtomicU64,
    pub http_idle_closed: AtomicU64,
    pub http_accept_fd_exhausted: AtomicU64,
    /// TLS handshakes that failed or timed out (`ari.tls_cert`).
    pub tls_handshake_failures: AtomicU64,
}

impl Metrics {
    pub fn inc(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reply by status class.
    pub fn count_status(&self, status: u16) {
        self.inc(&self.http_requests);
        match status {
            400..=499 => self.inc(&self.http_client_errors),
            500..=599 => self.inc(&self.http_server_errors),
            _ => {}
        }
    }

    /// The Prometheus exposition text, with `extra` gauges appended.
    pub fn render(&self, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &AtomicU64); 9] = [
            (
                "crossbar_http_requests_total",
                "ARI HTTP requests served",
                &self.http_requests,
            ),
            (
                "crossbar_http_client_errors_total",
                "ARI replies with a 4xx status",
                &self.http_client_errors,
            ),
            (
                "crossbar_http_server_errors_total",
                "ARI replies with a 5xx status",
                &self.http_server_errors,
            ),
            (
                "crossbar_auth_failures_total",
                "Requests refused for missing or wrong credentials",
                &self.auth_failures,
            ),
            (
                "crossbar_auth_throttled_total",
                "Requests refused with 429 unchecked: their source had too many failed logins",
                &self.auth_throttled,
            ),
            (
                "crossbar_ws_sessions_total",
                "Events WebSockets opened",
                &self.ws_sessions,
            ),
            (
                "crossbar_ws_bad_messages_total",
                "Malformed messages received on events WebSockets",
                &self.ws_bad_messages,
            ),
            (
                "crossbar_events_sent_total",
                "Events queued to WebSockets",
                &self.events_sent,
            ),
            (
                "crossbar_events_dropped_total",
                "Events not queued because the WebSocket's queue was full (the session is closed)",
                &self.events_dropped,
            ),
        ];
        for (name, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        self.render_connections(&mut out);
        self.render_websockets(&mut out);
        for (name, help, value) in extra {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }

    /// The events WebSockets' limits (`host::session`).
    fn render_websockets(&self, out: &mut String) {
        let rows: [(&str, &str, &AtomicU64); 4] = [
            (
                "crossbar_tls_handshake_failures_total",
                "ARI connections closed because their TLS handshake failed or was not done within ari.header_timeout_ms (plain HTTP to the TLS port included)",
                &self.tls_handshake_failures,
            ),
            (
                "crossbar_auth_read_only_refused_total",
                "Requests refused with 403 Write access denied: a read_only user's method other than GET",
                &self.auth_read_only_refused,
            ),
            (
                "crossbar_ws_slow_closed_total",
                "Events WebSockets closed with 1008: over ari.ws_queue_bytes or ari.ws_queue_events, or the biggest queue when ari.ws_queue_total_bytes was reached",
                &self.ws_slow_closed_total,
            ),
            (
                "crossbar_ws_refused_total",
                "Events WebSocket upgrades refused with 503 at ari.max_event_sockets",
                &self.ws_refused_total,
            ),
        ];
        for (name, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }

    /// The connection counters and gauge (`host::conn`).
    fn render_connections(&self, out: &mut String) {
        let rows: [(&str, &str, &AtomicU64); 5] = [
            (
                "crossbar_http_connections_refused_total",
                "ARI connections refused with 503 (ari.max_connections or ari.max_connections_per_source)",
                &self.http_connections_refused,
            ),
            (
                "crossbar_http_connections_evicted_total",
                "Idle ARI connections closed to admit a new one",
                &self.http_connections_evicted,
            ),
            (
                "crossbar_http_header_timeouts_total",
                "ARI connections closed because a request's headers did not arrive within ari.header_timeout_ms",
                &self.http_header_timeouts,
            ),
            (
                "crossbar_http_idle_closed_total",
                "ARI keep-alive connections closed after ari.idle_timeout_ms without a request",
                &self.http_idle_closed,
            ),
            (
                "crossbar_http_accept_fd_exhausted_total",
                "Accepts of ARI connections that failed for want of file descriptors",
                &self.http_accept_fd_exhausted,
            ),
        ];
        for (name, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let name = "crossbar_http_connections_open";
        let _ = writeln!(
            out,
            "# HELP {name} Open ARI connections (events WebSockets included)\n# TYPE {name} gauge\n{name} {}",
            self.http_connections_open.load(Ordering::Relaxed)
        );
    }
}
