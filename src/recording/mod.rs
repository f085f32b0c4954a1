//! Recordings' files: the host-side writer that turns taps' frames
//! ([`crate::media::tap`]) into files in `recordings.path`.
//!
//! # One writer thread for all recordings
//! A [`Recorder`] starts one thread (on the first recording) that serves
//! every recording of the node. Its work per frame is small (decode a
//! 20 ms payload, maybe resample, encode, one buffered `write`), so one
//! thread keeps up with hundreds of recordings, costs one stack however
//! many there are, and keeps all file I/O in one place off the shards and
//! off the control thread. A slow disk delays every recording alike; the
//! shards never wait for it: the frame queue ([`FRAME_QUEUE`] frames,
//! shared by all taps) is bounded, and a full queue drops frames on the
//! shard (counted in `Tap::dropped`).
//!
//! The thread takes commands (start, pause, mute, stop, cancel) from an
//! unbounded channel that it drains before each frame, so a recording's
//! start is seen before its first frame. What it has to say (a recording
//! finished by itself or was stopped, or failed) goes back as a
//! [`writer::Report`] on a channel that a host task consumes under the
//! control lock (`ari::recordings::watch`).

pub mod writer;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::{Duration, Instant};

use crate::media::tap::TapFrame;
use crate::sounds::FileFormat;
pub use writer::{End, Limits, Report};

/// Frames the writer's queue holds (shared by every tap): about 20 s of
/// one recording, or 200 ms of a hundred.
pub const FRAME_QUEUE: usize = 1024;

/// How often the writer looks at the wall clock when no frame comes.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// What a recording does with an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    Overwrite,
    Append,
}

/// A recording to start.
#[derive(Clone, Debug)]
pub struct Spec {
    pub path: PathBuf,
    pub file: FileFormat,
    pub if_exists: IfExists,
    pub limits: Limits,
}

enum Command {
    Start { key: u64, spec: Spec },
    Pause { key: u64, paused: bool },
    Mute { key: u64, muted: bool },
    End { key: u64, end: End },
}

struct Running {
    frames: SyncSender<TapFrame>,
    commands: Sender<Command>,
}

/// The control plane's handle on the writer thread.
pub struct Recorder {
    dir: PathBuf,
    running: Option<Running>,
    /// Recordings asked for whose writing has not started (a beep plays).
    prepared: std::collections::HashMap<u64, Spec>,
    reports: tokio::sync::mpsc::UnboundedSender<Report>,
    /// The receiving end of the reports, until a host task takes it.
    pending: Option<tokio::sync::mpsc::UnboundedReceiver<Report>>,
}

impl Recorder {
    /// A recorder writing under `dir` (the thread starts with the first
    /// recording).
    pub fn new(dir: PathBuf) -> Recorder {
        let (reports, pending) = tokio::sync::mpsc::unbounded_channel();
        Recorder {
            dir,
            running: None,
            prepared: std::collections::HashMap::new(),
            reports,
            pending: Some(pending),
        }
    }

    /// `recordings.path`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The reports' receiver, once (for the host task that consumes them).
    pub fn take_reports(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Report>> {
        self.pending.take()
    }

    fn running(&mut self) -> std::io::Result<&Running> {
        if self.running.is_none() {
            let (frames, frames_rx) = mpsc::sync_channel(FRAME_QUEUE);
            let (commands, commands_rx) = mpsc::channel();
            let reports = self.reports.clone();
            std::thread::Builder::new()
                .name("crossbar-recorder".into())
                .spawn(move || run(frames_rx, commands_rx, reports))?;
            self.running = Some(Running { frames, commands });
        }
        self.running
            .as_ref()
            .ok_or_else(|| std::io::Error::other("no writer"))
    }

    /// Keeps a recording's spec until it starts.
    pub fn prepare(&mut self, key: u64, spec: Spec) {
        self.prepared.insert(key, spec);
    }

    /// The spec of a prepared recording, forgotten.
    pub fn take_prepared(&mut self, key: u64) -> Option<Spec> {
        self.prepared.remove(&key)
    }

    /// Starts a recording; the sender its tap hands frames to.
    pub fn start(&mut self, key: u64, spec: Spec) -> std::io::Result<SyncSender<TapFrame>> {
        let running = self.running()?;
        running
            .commands
            .send(Command::Start { key, spec })
            .map_err(|_| std::io::Error::other("the recorder thread has gone"))?;
        Ok(running.frames.clone())
    }

    fn send(&self, command: Command) {
        if let Some(r) = &self.running {
            let _ = r.commands.send(command);
        }
    }

    pub fn pause(&self, key: u64, paused: bool) {
        self.send(Command::Pause { key, paused });
    }

    pub fn mute(&self, key: u64, muted: bool) {
        self.send(Command::Mute { key, muted });
    }

    /// Completes (or, `End::Cancelled`, removes) a recording's file; its
    /// report follows.
    pub fn end(&self, key: u64, end: End) {
        self.send(Command::End { key, end });
    }
}

/// Opens a recording's file as `spec` says; the bytes it holds already.
fn open(spec: &Spec) -> std::io::Result<(std::fs::File, u64)> {
    if let Some(parent) = spec.path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    if spec.if_exists != IfExists::Append {
        options.truncate(true);
    }
    let file = options.open(&spec.path)?;
    let existing = file.metadata()?.len();
    Ok((file, existing))
}

/// The writer thread: runs until the [`Recorder`] is dropped (its command
/// sender gone), then completes what is live.
fn run(
    frames: Receiver<TapFrame>,
    commands: Receiver<Command>,
    reports: tokio::sync::mpsc::UnboundedSender<Report>,
) {
    let mut writers = writer::Writers::default();
    let report = |r: Report| {
        let _ = reports.send(r);
    };
    loop {
        loop {
            match commands.try_recv() {
                Ok(command) => apply(&mut writers, command, &mut None, &frames, &report),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    writers.end_all().into_iter().for_each(report);
                    return;
                }
            }
        }
        match frames.recv_timeout(IDLE_TICK) {
            Ok(frame) => {
                // Commands first (a recording's start comes before its
                // frames, a pause applies at once); an end writes this
                // frame and the queued ones first.
                let mut pending = Some(frame);
                while let Ok(command) = commands.try_recv() {
                    apply(&mut writers, command, &mut pending, &frames, &report);
                }
                if let Some(r) = pending.and_then(|f| writers.frame(f)) {
                    report(r);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                writers.end_all().into_iter().for_each(report);
                return;
            }
        }
        writers.expire(Instant::now()).into_iter().for_each(report);
    }
}

fn apply(
    writers: &mut writer::Writers,
    command: Command,
    pending: &mut Option<TapFrame>,
    frames: &Receiver<TapFrame>,
    report: &impl Fn(Report),
) {
    match command {
        Command::Start { key, spec } => {
            let started = open(&spec).and_then(|(file, existing)| {
                writer::Recording::new(
                    key,
                    Box::new(std::io::BufWriter::new(file)),
                    Some(spec.path.clone()),
                    spec.file,
                    spec.limits.clone(),
                    existing,
                    Instant::now(),
                )
            });
            match started {
                Ok(rec) => writers.insert(rec),
                Err(e) => report(Report::Failed {
                    key,
                    cause: format!("Could not open {}: {e}", spec.path.display()),
                }),
            }
        }
        // Pausing and muting apply from now on: the frames still queued
        // are most likely younger than the command.
        Command::Pause { key, paused } => writers.pause(key, paused, Instant::now()),
        Command::Mute { key, muted } => writers.mute(key, muted),
        Command::End { key, end } => {
            drain(writers, pending, frames, report);
            if let Some(r) = writers.end(key, end) {
                report(r);
            }
        }
    }
}

/// Writes the frames received before a command was given (they are older
/// than it): `pending`, then the queued ones (bounded by the queue's size).
fn drain(
    writers: &mut writer::Writers,
    pending: &mut Option<TapFrame>,
    frames: &Receiver<TapFrame>,
    report: &impl Fn(Report),
) {
    if let Some(r) = pending.take().and_then(|f| writers.frame(f)) {
        report(r);
    }
    for _ in 0..FRAME_QUEUE {
        let Ok(frame) = frames.try_recv() else {
            return;
        };
        if let Some(r) = writers.frame(frame) {
            report(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tap::{Tap, TapAudio};

    #[test]
    fn the_thread_writes_a_tap_and_reports_an_open_failure() {
        let dir = std::env::temp_dir().join(format!("crossbar-recorder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut rec = Recorder::new(dir.clone());
        let mut reports = rec.take_reports().unwrap();
        let spec = Spec {
            path: dir.join("sub/a.sln"),
            file: FileFormat::Sln,
            if_exists: IfExists::Overwrite,
            limits: Limits::default(),
        };
        let mut tap = Tap::new(5, rec.start(5, spec).unwrap());
        for _ in 0..10 {
            tap.push(TapAudio::Pcm {
                rate: 8000,
                samples: vec![1000; 160].into(),
            });
        }
        rec.end(5, End::Stopped);
        let r = reports.blocking_recv().unwrap();
        assert_eq!(
            r,
            Report::Finished {
                key: 5,
                end: End::Stopped,
                duration_s: 0,
                talking_s: None
            }
        );
        assert_eq!(
            std::fs::metadata(dir.join("sub/a.sln")).unwrap().len(),
            3200
        );
        // A path under a file cannot be opened: the recording fails.
        let spec = Spec {
            path: dir.join("sub/a.sln/b.sln"),
            file: FileFormat::Sln,
            if_exists: IfExists::Overwrite,
            limits: Limits::default(),
        };
        rec.start(6, spec).unwrap();
        match reports.blocking_recv().unwrap() {
            Report::Failed { key, cause } => {
                assert_eq!(key, 6);
                assert!(cause.starts_with("Could not open"), "{cause}");
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
