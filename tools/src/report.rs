//! What a media run reports: [`RunReport`] holds one run's measurements (a
//! server or the in-process reflector), its parameters, and the ratios to
//! the runs it is compared with; it prints as a table for people or as one
//! JSON line for machines.

use serde_json::{json, Map, Value};

use crate::traffic::Measured;

/// One measured run.
pub struct RunReport {
    pub scenario: &'static str,
    pub target: String,
    pub params: Map<String, Value>,
    pub m: Measured,
    /// Mixing scenarios: participants in all bridges (for µs per participant-second).
    pub participants: Option<usize>,
    /// Name → value figures added by the scenario (ratios, setup latency...).
    pub extra: Map<String, Value>,
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl RunReport {
    pub fn new(scenario: &'static str, target: &str, m: Measured) -> RunReport {
        RunReport {
            scenario,
            target: target.to_string(),
            params: Map::new(),
            m,
            participants: None,
            extra: Map::new(),
        }
    }

    pub fn param(&mut self, name: &str, v: impl Into<Value>) {
        self.params.insert(name.into(), v.into());
    }

    pub fn extra(&mut self, name: &str, v: impl Into<Value>) {
        self.extra.insert(name.into(), v.into());
    }

    /// Server (or reflector) CPU, µs per packet received back in the window.
    pub fn us_per_packet(&self) -> Option<f64> {
        self.m.us_per_packet()
    }

    /// Mixing: server CPU µs per participant-second.
    pub fn us_per_participant_second(&self) -> Option<f64> {
        let p = self.participants? as f64;
        let cpu = self.m.server_cpu.as_ref()?.total.as_secs_f64();
        let w = self.m.window.as_secs_f64();
        (p > 0.0 && w > 0.0).then(|| cpu * 1e6 / (p * w))
    }

    fn server_pct(&self) -> Option<f64> {
        let cpu = self.m.server_cpu.as_ref()?.total.as_secs_f64();
        Some(cpu / self.m.window.as_secs_f64().max(1e-9) * 100.0)
    }

    fn tool_pct(&self) -> f64 {
        self.m.tool_cpu.as_secs_f64() / self.m.window.as_secs_f64().max(1e-9) * 100.0
    }

    fn lat_us(&self, q: f64) -> Option<f64> {
        let h = &self.m.latency;
        (!h.is_empty()).then(|| r3(h.value_at_quantile(q) as f64 / 1e3))
    }

    pub fn to_json(&self) -> String {
        let m = &self.m;
        let w = m.window.as_secs_f64();
        let mut v = json!({
            "scenario": self.scenario,
            "target": self.target,
            "params": self.params,
            "window_s": r3(w),
            "legs": m.legs,
            "sending_legs": m.sending_legs,
            "packets_in": m.sent_window,
            "packets_out": m.received_window,
            "packets_in_total": m.sent_total,
            "packets_out_total": m.received_total,
            "pps_out": r3(m.received_window as f64 / w.max(1e-9)),
            "lost": m.lost,
            "reordered": m.reordered,
            "duplicates": m.duplicates,
            "send_errors": m.send_errors,
            "min_leg_ratio": r3(m.min_leg_ratio),
            "latency_samples": m.latency.len(),
            "latency_p50_us": self.lat_us(0.5),
            "latency_p99_us": self.lat_us(0.99),
            "latency_p999_us": self.lat_us(0.999),
            "latency_max_us": (!m.latency.is_empty()).then(|| r3(m.latency.max() as f64 / 1e3)),
            "server_cpu_ms": m.server_cpu.as_ref().map(|c| r3(c.total.as_secs_f64() * 1e3)),
            "server_cpu_pct": self.server_pct().map(r3),
            "server_us_per_packet": self.us_per_packet().map(r3),
            "server_us_per_participant_s": self.us_per_participant_second().map(r3),
            "tool_cpu_pct": r3(self.tool_pct()),
            "interrupted": m.interrupted,
        });
        if let (Some(threads), Value::Object(map)) = (
            m.server_cpu.as_ref().and_then(|c| c.threads.as_ref()),
            &mut v,
        ) {
            let t: Map<String, Value> = threads
                .iter()
                .map(|(k, d)| (k.clone(), json!(r3(d.as_secs_f64() * 1e3))))
                .collect();
            map.insert("server_threads_cpu_ms".into(), Value::Object(t));
        }
        if let Value::Object(map) = &mut v {
            for (k, x) in &self.extra {
                map.insert(k.clone(), x.clone());
            }
        }
        v.to_string()
    }

    pub fn to_table(&self) -> String {
        let m = &self.m;
        let opt = |x: Option<f64>, unit: &str| match x {
            Some(v) => format!("{v:.2}{unit}"),
            None => "-".into(),
        };
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut s = format!(
            "{} against {} ({})\n",
            self.scenario,
            self.target,
            params.join(" ")
        );
        s += &format!(
            "  window {:.2} s | packets in {} out {} ({:.0} pps out) | lost {} | reordered {} | dup {} | send errors {}\n",
            m.window.as_secs_f64(),
            m.sent_window,
            m.received_window,
            m.received_window as f64 / m.window.as_secs_f64().max(1e-9),
            m.lost,
            m.reordered,
            m.duplicates,
            m.send_errors
        );
        s += &format!(
            "  latency through the node ({} samples): p50 {} p99 {} p99.9 {} max {}\n",
            m.latency.len(),
            opt(self.lat_us(0.5), " µs"),
            opt(self.lat_us(0.99), " µs"),
            opt(self.lat_us(0.999), " µs"),
            opt(
                (!m.latency.is_empty()).then(|| m.latency.max() as f64 / 1e3),
                " µs"
            ),
        );
        s += &format!(
            "  server CPU {} ({} of a core) | {} per forwarded packet",
            opt(
                m.server_cpu.as_ref().map(|c| c.total.as_secs_f64() * 1e3),
                " ms"
            ),
            opt(self.server_pct(), " %"),
            opt(self.us_per_packet(), " µs"),
        );
        if let Some(x) = self.us_per_participant_second() {
            s += &format!(" | {x:.1} µs per participant-second");
        }
        s += &format!(" | tool CPU {:.1} % of a core\n", self.tool_pct());
        if let Some(threads) = m.server_cpu.as_ref().and_then(|c| c.threads.as_ref()) {
            let list: Vec<String> = threads
                .iter()
                .filter(|(_, d)| !d.is_zero())
                .map(|(k, d)| format!("{k} {:.0} ms", d.as_secs_f64() * 1e3))
                .collect();
            s += &format!("  server threads: {}\n", list.join(", "));
        }
        for (k, v) in &self.extra {
            s += &format!("  {k}: {v}\n");
        }
        if m.interrupted {
            s += "  (interrupted: the window is shorter than asked)\n";
        }
        s
    }
}
