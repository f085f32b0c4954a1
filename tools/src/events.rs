//! The events WebSocket, counted: a thread reads `/ari/events?app=APP` and
//! tallies every event by `type`. Phases take a [`Tally`] at their start and
//! subtract it from one taken when the socket has gone quiet.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::ari::{encode, Target};

/// How often the reader wakes up to look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// Events seen so far: the total and the count per `type`.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub total: u64,
    pub by_type: BTreeMap<String, u64>,
}

impl Tally {
    /// What arrived between `earlier` and `self`.
    pub fn since(&self, earlier: &Tally) -> Tally {
        let mut by_type = BTreeMap::new();
        for (k, v) in &self.by_type {
            let d = v - earlier.by_type.get(k).copied().unwrap_or(0);
            if d > 0 {
                by_type.insert(k.clone(), d);
            }
        }
        Tally {
            total: self.total - earlier.total,
            by_type,
        }
    }
}

#[derive(Default)]
struct State {
    tally: Tally,
    last_event: Option<Instant>,
    error: Option<String>,
}

/// A running event counter; dropping it (or [`EventCounter::close`]) stops the thread.
pub struct EventCounter {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventCounter {
    /// Connects to the events socket for `app` and starts counting.
    pub fn connect(
        target: &Target,
        user: &str,
        password: &str,
        app: &str,
        timeout: Duration,
    ) -> Result<EventCounter, String> {
        let ws = open_socket(target, user, password, app, timeout)?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("events".into())
                .spawn(move || read_loop(ws, &state, &stop))
                .map_err(|e| format!("cannot start the events thread: {e}"))?
        };
        Ok(EventCounter {
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The events counted so far; an error if the socket has failed.
    pub fn tally(&self) -> Result<Tally, String> {
        let state = lock(&self.state);
        match &state.error {
            Some(e) => Err(e.clone()),
            None => Ok(state.tally.clone()),
        }
    }

    /// Waits until no event has arrived for `quiet` (counting from `since` at
    /// the earliest), or until `max` has passed since `since`. Returns the time
    /// of the last event seen after `opened` (if any) and whether it settled.
    pub fn wait_quiet(
        &self,
        opened: Instant,
        since: Instant,
        quiet: Duration,
        max: Duration,
    ) -> (Option<Instant>, bool) {
        loop {
            let (last, failed) = {
                let state = lock(&self.state);
                (state.last_event, state.error.is_some())
            };
            let last = last.filter(|t| *t >= opened);
            let now = Instant::now();
            let reference = last.unwrap_or(since).max(since);
            if failed || now.duration_since(reference) >= quiet {
                return (last, !failed);
            }
            if now.duration_since(since) >= max {
                return (last, false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the reader and closes the socket.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EventCounter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Opens the events WebSocket for `app` (handshake done); reads time out
/// every [`POLL`] so a reader can look at its stop flag.
pub fn open_socket(
    target: &Target,
    user: &str,
    password: &str,
    app: &str,
    timeout: Duration,
) -> Result<tungstenite::WebSocket<TcpStream>, String> {
    let addr = target.socket_addr()?;
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("events socket: cannot connect to {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("events socket: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let _ = stream.set_nodelay(true);
    let url = format!(
        "ws://{}/ari/events?app={}&api_key={}",
        target.base.trim_start_matches("http://"),
        encode(app),
        encode(&format!("{user}:{password}")),
    );
    let (ws, _) = tungstenite::client::client(url.as_str(), stream).map_err(|e| {
        format!("events socket: handshake failed (check credentials and that ARI is enabled): {e}")
    })?;
    ws.get_ref().set_read_timeout(Some(POLL)).map_err(io)?;
    Ok(ws)
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_loop(mut ws: tungstenite::WebSocket<TcpStream>, state: &Mutex<State>, stop: &AtomicBool) {
    let fail = |message: String| {
        lock(state).error = Some(message);
    };
    while !stop.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(Message::Text(text)) => {
                let kind = serde_json::from_str::<serde_json::Value>(text.as_str())
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                    .unwrap_or_else(|| "(unparsed)".to_string());
                let mut s = lock(state);
                s.tally.total += 1;
                *s.tally.by_type.entry(kind).or_insert(0) += 1;
                s.last_event = Some(Instant::now());
            }
            Ok(Message::Close(frame)) => {
                fail(format!("events socket: the server closed it ({frame:?})"));
                return;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                // Sends any queued pong.
                let _ = ws.flush();
            }
            Err(e) => {
                fail(format!("events socket: {e}"));
                return;
            }
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
}
