//! The recordings' writer: tap frames in, encoded files out, as a plain
//! state machine ([`Writers`]) that the writer thread (`super`) drives and
//! the tests drive directly with any [`Store`] (a failing one included).
//!
//! Per recording ([`Recording`]):
//! - a leg's RTP payloads are decoded with a [`Decoder`] of their format
//!   (a new one when the format changes); a forward gap in the RTP
//!   timestamps is filled with silence up to [`MAX_GAP_MS`] (a longer jump
//!   is a new stream: nothing is filled); a packet whose sequence number is
//!   not after the last one (a duplicate, or late) is ignored;
//! - a bridge's PCM ticks are taken as they come;
//! - audio is resampled to the file's rate, then paused audio is skipped,
//!   muted audio becomes silence, and the rest is encoded and written;
//! - silence is measured per frame as Asterisk's `ast_dsp_silence` does
//!   (a frame whose mean magnitude is under [`SILENCE_THRESHOLD`] is
//!   silent; consecutive silent time accumulates, a loud frame resets it);
//!   with `max_silence_ms`, that much consecutive silence ends the
//!   recording and the trailing silence beyond 200 ms is cut off, as
//!   `ast_play_and_record_full` does;
//! - `max_duration_ms` ends it once that much audio was written (or, for a
//!   target that sends nothing, once that much unpaused wall time passed:
//!   Asterisk checks the wall clock too);
//! - a WAV file's header is written first and fixed up at the end.
//!
//! Any I/O error fails the recording ([`Report::Failed`]); the others go on.

use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::codec::{g711, Decoder, Encoder, Resampler};
use crate::media::tap::{TapAudio, TapFrame};
use crate::media::Format;
use crate::sounds::FileFormat;

/// Asterisk's default silence threshold (`dsp.conf`), as a frame's mean
/// magnitude.
pub const SILENCE_THRESHOLD: u32 = 256;

/// The longest timestamp gap filled with silence.
pub const MAX_GAP_MS: u32 = 1000;

/// How much silence Asterisk leaves at the end of a recording that silence
/// ended (ms).
const KEEP_SILENCE_MS: u64 = 200;

/// Where a recording's bytes go: a file, or a test's stand-in.
pub trait Store: Write + Seek + Send {
    /// Cuts the store to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl Store for std::fs::File {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// A file behind a buffer: one `write` system call per 8 KiB, not per
/// frame (a second of μ-law is 8 KB).
impl Store for io::BufWriter<std::fs::File> {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.flush()?;
        self.get_ref().set_len(len)
    }
}

impl Store for io::Cursor<Vec<u8>> {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.get_mut().truncate(len as usize);
        Ok(())
    }
}

/// What a recording is asked to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// 0: no limit.
    pub max_duration_ms: u64,
    /// 0: no silence limit, and no talking/silence durations reported.
    pub max_silence_ms: u64,
}

/// Why a recording ended by itself or was ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Stopped by the control plane (stop, hangup, a terminating digit).
    Stopped,
    /// Cancelled: the file was removed.
    Cancelled,
    MaxDuration,
    MaxSilence,
}

/// What the writer tells the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// The file is complete (or removed, when cancelled). Durations in
    /// seconds, as Asterisk's LiveRecording gives them; `talking_s` only
    /// with a silence limit.
    Finished {
        key: u64,
        end: End,
        duration_s: i64,
        talking_s: Option<i64>,
    },
    /// Writing failed (the file is left as it is).
    Failed { key: u64, cause: String },
}

/// One recording being written.
pub struct Recording {
    key: u64,
    out: Box<dyn Store>,
    path: Option<PathBuf>,
    file: FileFormat,
    rate: u32,
    limits: Limits,
    /// The offset of the audio data (the WAV header's length).
    data_start: u64,
    /// Bytes of audio written (including what an appended file had).
    data_bytes: u64,
    /// Samples this recording wrote (at `rate`).
    written: u64,
    encoder: Option<Encoder>,
    /// A G.722 file's odd sample, kept for the next frame.
    carry: Option<i16>,
    decoder: Option<(Format, Decoder)>,
    resampler: Option<Resampler>,
    /// The sequence number and the timestamp just after the last packet.
    last: Option<(u16, u32)>,
    paused: bool,
    muted: bool,
    /// Consecutive silence (ms) and the silence before it.
    silence_ms: u64,
    total_silence_ms: u64,
    started: Instant,
    paused_since: Option<Instant>,
    paused_total: Duration,
    pcm: Vec<i16>,
    resampled: Vec<i16>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("key", &self.key)
            .field("file", &self.file)
            .field("written", &self.written)
            .finish()
    }
}

/// The sample rate of a file format.
pub fn file_rate(file: FileFormat) -> u32 {
    match file {
        FileFormat::Wav | FileFormat::Sln | FileFormat::Ulaw | FileFormat::Alaw => 8000,
        FileFormat::Wav16 | FileFormat::Sln16 | FileFormat::G722 => 16000,
        FileFormat::Sln48 => 48000,
    }
}

fn wav_header(rate: u32, data_bytes: u64) -> [u8; 44] {
    let data = u32::try_from(data_bytes).unwrap_or(u32::MAX - 36);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36u32.saturating_add(data)).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

fn is_wav(file: FileFormat) -> bool {
    matches!(file, FileFormat::Wav | FileFormat::Wav16)
}

impl Recording {
    /// A recording of `file` format into `out`, which holds `existing`
    /// bytes already (appending; 0 for a new or overwritten file). `path`
    /// is the file to remove when cancelled.
    pub fn new(
        key: u64,
        mut out: Box<dyn Store>,
        path: Option<PathBuf>,
        file: FileFormat,
        limits: Limits,
        existing: u64,
        now: Instant,
    ) -> io::Result<Recording> {
        let rate = file_rate(file);
        let (data_start, data_bytes) = if is_wav(file) {
            let data = existing.saturating_sub(44);
            out.seek(SeekFrom::Start(0))?;
            out.write_all(&wav_header(rate, data))?;
            out.seek(SeekFrom::Start(44 + data))?;
            (44, data)
        } else {
            out.seek(SeekFrom::Start(existing))?;
            (0, existing)
        };
        let encoder = match file {
            FileFormat::G722 => Some(Encoder::new(Format::G722).map_err(io::Error::other)?),
            _ => None,
        };
        Ok(Recording {
            key,
            out,
            path,
            file,
            rate,
            limits,
            data_start,
            data_bytes,
            written: 0,
            encoder,
            carry: None,
            decoder: None,
            resampler: None,
            last: None,
            paused: false,
            muted: false,
            silence_ms: 0,
            total_silence_ms: 0,
            started: now,
            paused_since: None,
            paused_total: Duration::ZERO,
            pcm: vec![0; 48 * 200],
            resampled: Vec::new(),
            bytes: Vec::new(),
        })
    }

    /// Audio written so far, in ms.
    pub fn written_ms(&self) -> u64 {
        self.written * 1000 / u64::from(self.rate)
    }

    pub fn set_paused(&mut self, paused: bool, now: Instant) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        if paused {
            self.paused_since = Some(now);
        } else if let Some(since) = self.paused_since.take() {
            self.paused_total += now.saturating_duration_since(since);
        }
    }

    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    /// Takes one tap frame; `Some` when the recording ended with it.
    pub fn frame(&mut self, audio: TapAudio) -> io::Result<Option<End>> {
        match audio {
            TapAudio::Rtp {
                format,
                seq,
                timestamp,
                payload,
            } => self.rtp(format, seq, timestamp, &payload),
            TapAudio::Pcm { rate, samples } => self.pcm_in(rate, &samples),
        }
    }

    fn rtp(
        &mut self,
        format: Format,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
    ) -> io::Result<Option<End>> {
        if self.decoder.as_ref().is_none_or(|(f, _)| *f != format) {
            let Ok(decoder) = Decoder::new(format) else {
                return Ok(None);
            };
            self.decoder = Some((format, decoder));
            self.last = None;
        }
        let clock = format.clock_rate();
        let rate = format.sample_rate();
        if let Some((last_seq, next_ts)) = self.last {
            if (seq.wrapping_sub(last_seq) as i16) <= 0 {
                return Ok(None);
            }
            let gap = timestamp.wrapping_sub(next_ts) as i32;
            if gap > 0 && (gap as u64) * 1000 <= u64::from(MAX_GAP_MS) * u64::from(clock) {
                let fill = (gap as u64 * u64::from(rate) / u64::from(clock)) as usize;
                let silence = vec![0i16; fill];
                if let Some(end) = self.pcm_in(rate, &silence)? {
                    return Ok(Some(end));
                }
            }
        }
        let Some((_, decoder)) = self.decoder.as_mut() else {
            return Ok(None);
        };
        let mut pcm = std::mem::take(&mut self.pcm);
        let n = decoder.decode(payload, &mut pcm).unwrap_or(0);
        let step = (n as u64 * u64::from(clock) / u64::from(rate)) as u32;
        self.last = Some((seq, timestamp.wrapping_add(step)));
        let r = self.pcm_in(rate, &pcm[..n]);
        self.pcm = pcm;
        r
    }

    fn pcm_in(&mut self, rate: u32, samples: &[i16]) -> io::Result<Option<End>> {
        if samples.is_empty() {
            return Ok(None);
        }
        let mut out = std::mem::take(&mut self.resampled);
        out.clear();
        if rate == self.rate {
            out.extend_from_slice(samples);
        } else {
            if self
                .resampler
                .as_ref()
                .is_none_or(|r| r.from_rate() != rate)
            {
                match Resampler::new(rate, self.rate) {
                    Ok(r) => self.resampler = Some(r),
                    Err(_) => {
                        self.resampled = out;
                        return Ok(None);
                    }
                }
            }
            if let Some(r) = self.resampler.as_mut() {
                out.resize(r.output_len(samples.len()) + 8, 0);
                let n = r.process(samples, &mut out).unwrap_or(0);
                out.truncate(n);
            }
        }
        let r = self.write_pcm(&mut out);
        self.resampled = out;
        r
    }

    fn write_pcm(&mut self, pcm: &mut [i16]) -> io::Result<Option<End>> {
        if self.paused || pcm.is_empty() {
            return Ok(None);
        }
        if self.muted {
            // Muted: silence is written, and silence detection is
            // suspended (as Asterisk's mute does).
            pcm.fill(0);
        } else {
            let frame_ms = pcm.len() as u64 * 1000 / u64::from(self.rate);
            let magnitude =
                pcm.iter().map(|s| u64::from(s.unsigned_abs())).sum::<u64>() / pcm.len() as u64;
            if magnitude < u64::from(SILENCE_THRESHOLD) {
                self.silence_ms += frame_ms;
            } else {
                self.total_silence_ms += self.silence_ms;
                self.silence_ms = 0;
            }
        }
        self.encode(pcm)?;
        self.written += pcm.len() as u64;
        if self.limits.max_silence_ms > 0 && self.silence_ms > self.limits.max_silence_ms {
            return Ok(Some(End::MaxSilence));
        }
        if self.limits.max_duration_ms > 0 && self.written_ms() >= self.limits.max_duration_ms {
            return Ok(Some(End::MaxDuration));
        }
        Ok(None)
    }

    fn encode(&mut self, pcm: &[i16]) -> io::Result<()> {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        match self.file {
            FileFormat::Wav
            | FileFormat::Wav16
            | FileFormat::Sln
            | FileFormat::Sln16
            | FileFormat::Sln48 => bytes.extend(pcm.iter().flat_map(|s| s.to_le_bytes())),
            FileFormat::Ulaw | FileFormat::Alaw => {
                bytes.resize(pcm.len(), 0);
                let r = if self.file == FileFormat::Ulaw {
                    g711::encode_ulaw(pcm, &mut bytes)
                } else {
                    g711::encode_alaw(pcm, &mut bytes)
                };
                bytes.truncate(r.unwrap_or(0));
            }
            FileFormat::G722 => {
                let mut joined: Vec<i16> = Vec::with_capacity(pcm.len() + 1);
                joined.extend(self.carry.take());
                joined.extend_from_slice(pcm);
                if joined.len() % 2 == 1 {
                    self.carry = joined.pop();
                }
                bytes.resize(joined.len() / 2, 0);
                if let Some(e) = self.encoder.as_mut() {
                    let n = e.encode(&joined, &mut bytes).unwrap_or(0);
                    bytes.truncate(n);
                }
            }
        }
        let r = self.out.write_all(&bytes);
        self.data_bytes += bytes.len() as u64;
        self.bytes = bytes;
        r
    }

    /// Bytes of `ms` of audio in the file.
    fn bytes_of_ms(&self, ms: u64) -> u64 {
        let samples = ms * u64::from(self.rate) / 1000;
        match self.file {
            FileFormat::Ulaw | FileFormat::Alaw => samples,
            FileFormat::G722 => samples / 2,
            _ => samples * 2,
        }
    }

    /// Whether the recording's time is up by the wall clock (a target that
    /// sends nothing: Asterisk's max duration is wall time).
    pub fn expired(&self, now: Instant) -> bool {
        if self.limits.max_duration_ms == 0 {
            return false;
        }
        let mut paused = self.paused_total;
        if let Some(since) = self.paused_since {
            paused += now.saturating_duration_since(since);
        }
        let elapsed = now
            .saturating_duration_since(self.started)
            .saturating_sub(paused);
        elapsed.as_millis() >= u128::from(self.limits.max_duration_ms) + 1000
    }

    /// Completes the file (cut trailing silence, WAV header) or removes it.
    pub fn finish(mut self, end: End) -> Report {
        let key = self.key;
        match self.complete(end) {
            Ok(report) => report,
            Err(e) => Report::Failed {
                key,
                cause: format!("Error writing the recording: {e}"),
            },
        }
    }

    fn complete(&mut self, end: End) -> io::Result<Report> {
        if end == End::Cancelled {
            if let Some(path) = &self.path {
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            return Ok(Report::Finished {
                key: self.key,
                end,
                duration_s: 0,
                talking_s: None,
            });
        }
        // Durations as `ast_play_and_record_full` computes them: whole
        // seconds of what was written; with a silence limit, the talk is
        // that less all silence but 200 ms, and the duration loses the
        // trailing silence but 200 ms.
        let total_silence = self.total_silence_ms + self.silence_ms;
        let written_s = (self.written_ms() / 1000) as i64;
        let less_200 = |ms: u64| (ms as i64 - KEEP_SILENCE_MS as i64) / 1000;
        let (duration_s, talking_s) = if self.limits.max_silence_ms > 0 {
            let talking = (written_s - less_200(total_silence)).max(0);
            let duration = (written_s - less_200(self.silence_ms)).max(0);
            (duration, Some(talking))
        } else {
            (written_s, None)
        };
        if end == End::MaxSilence && self.silence_ms > KEEP_SILENCE_MS {
            // The trailing silence is cut, all but 200 ms.
            let cut_ms = self.silence_ms - KEEP_SILENCE_MS;
            let cut = self.bytes_of_ms(cut_ms).min(self.data_bytes);
            self.data_bytes -= cut;
            self.out.truncate(self.data_start + self.data_bytes)?;
        }
        if is_wav(self.file) {
            self.out.seek(SeekFrom::Start(0))?;
            self.out
                .write_all(&wav_header(self.rate, self.data_bytes))?;
        }
        self.out.flush()?;
        Ok(Report::Finished {
            key: self.key,
            end,
            duration_s,
            talking_s,
        })
    }
}

/// Every recording the writer serves, by key.
#[derive(Debug, Default)]
pub struct Writers {
    live: std::collections::HashMap<u64, Recording>,
}

impl Writers {
    pub fn insert(&mut self, recording: Recording) {
        self.live.insert(recording.key, recording);
    }

    pub fn contains(&self, key: u64) -> bool {
        self.live.contains_key(&key)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// A tap frame: written to its recording (frames of no recording — one
    /// that ended — are dropped); a report when the recording ended.
    pub fn frame(&mut self, frame: TapFrame) -> Option<Report> {
        let rec = self.live.get_mut(&frame.key)?;
        match rec.frame(frame.audio) {
            Ok(None) => None,
            Ok(Some(end)) => self.end(frame.key, end),
            Err(e) => {
                self.live.remove(&frame.key);
                Some(Report::Failed {
                    key: frame.key,
                    cause: format!("Error writing the recording: {e}"),
                })
            }
        }
    }

    pub fn pause(&mut self, key: u64, paused: bool, now: Instant) {
        if let Some(r) = self.live.get_mut(&key) {
            r.set_paused(paused, now);
        }
    }

    pub fn mute(&mut self, key: u64, muted: bool) {
        if let Some(r) = self.live.get_mut(&key) {
            r.set_muted(muted);
        }
    }

    /// Ends a recording (`None` if it is not live).
    pub fn end(&mut self, key: u64, end: End) -> Option<Report> {
        Some(self.live.remove(&key)?.finish(end))
    }

    /// Ends the recordings whose time is up by the wall clock.
    pub fn expire(&mut self, now: Instant) -> Vec<Report> {
        let keys: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, r)| r.expired(now))
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.end(k, End::MaxDuration))
            .collect()
    }

    /// Ends every recording (the writer is shutting down).
    pub fn end_all(&mut self) -> Vec<Report> {
        let keys: Vec<u64> = self.live.keys().copied().collect();
        keys.into_iter()
            .filter_map(|k| self.end(k, End::Stopped))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A store whose bytes the test can read after the recording took it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<io::Cursor<Vec<u8>>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Shared {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.0.lock().unwrap().seek(pos)
        }
    }
    impl Store for Shared {
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.0.lock().unwrap().get_mut().truncate(len as usize);
            Ok(())
        }
    }
    impl Shared {
        fn bytes(&self) -> Vec<u8> {
            self.0.lock().unwrap().get_ref().clone()
        }
    }

    /// A store that fails once `room` bytes were written (a full disk).
    struct Full {
        room: usize,
    }
    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.room {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device",
                ));
            }
            self.room -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Full {
        fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
            Ok(0)
        }
    }
    impl Store for Full {
        fn truncate(&mut self, _: u64) -> io::Result<()> {
            Ok(())
        }
    }

    fn tone(freq: f64, rate: u32, n: usize, offset: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + offset) as f64 / f64::from(rate);
                (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    fn ulaw(pcm: &[i16]) -> Box<[u8]> {
        let mut out = vec![0u8; pcm.len()];
        g711::encode_ulaw(pcm, &mut out).unwrap();
        out.into()
    }

    fn rtp(key: u64, seq: u16, ts: u32, pcm: &[i16]) -> TapFrame {
        TapFrame {
            key,
            audio: TapAudio::Rtp {
                format: Format::Ulaw,
                seq,
                timestamp: ts,
                payload: ulaw(pcm),
            },
        }
    }

    fn start(file: FileFormat, limits: Limits) -> (Writers, Shared) {
        let store = Shared::default();
        let rec = Recording::new(
            1,
            Box::new(store.clone()),
            None,
            file,
            limits,
            0,
            Instant::now(),
        )
        .unwrap();
        let mut w = Writers::default();
        w.insert(rec);
        (w, store)
    }

    #[test]
    fn a_wav_recording_holds_each_packet_once_with_gaps_filled() {
        let (mut w, store) = start(FileFormat::Wav, Limits::default());
        for i in 0..10u16 {
            let pcm = tone(1000.0, 8000, 160, usize::from(i) * 160);
            assert_eq!(w.frame(rtp(1, i, u32::from(i) * 160, &pcm)), None);
            // A duplicate and a late packet are ignored.
            assert_eq!(w.frame(rtp(1, i, u32::from(i) * 160, &pcm)), None);
        }
        // Packet 10 lost: 160 samples of silence are filled in.
        let pcm = tone(1000.0, 8000, 160, 11 * 160);
        w.frame(rtp(1, 11, 11 * 160, &pcm));
        let report = w.end(1, End::Stopped).unwrap();
        assert_eq!(
            report,
            Report::Finished {
                key: 1,
                end: End::Stopped,
                duration_s: 0,
                talking_s: None
            }
        );
        let bytes = store.bytes();
        let pcm = crate::sounds::decode_wav(&bytes).unwrap();
        assert_eq!(pcm.rate, 8000);
        assert_eq!(pcm.samples.len(), 12 * 160);
        assert_eq!(
            u32::from_le_bytes(bytes[40..44].try_into().unwrap()),
            12 * 320
        );
        assert!(pcm.samples[1600..1760].iter().all(|s| *s == 0));
        assert!(pcm.samples[..160].iter().any(|s| s.abs() > 4000));
    }

    #[test]
    fn a_full_disk_fails_the_recording_with_its_cause() {
        let mut w = Writers::default();
        let rec = Recording::new(
            7,
            Box::new(Full { room: 44 + 320 * 3 }),
            None,
            FileFormat::Wav,
            Limits::default(),
            0,
            Instant::now(),
        )
        .unwrap();
        w.insert(rec);
        let mut failed = None;
        for i in 0..10u16 {
            if let Some(r) = w.frame(rtp(7, i, u32::from(i) * 160, &[100; 160])) {
                failed = Some((i, r));
                break;
            }
        }
        let (at, report) = failed.expect("the recording failed");
        assert_eq!(at, 3);
        match report {
            Report::Failed { key, cause } => {
                assert_eq!(key, 7);
                assert!(cause.contains("No space left"), "{cause}");
            }
            other => panic!("{other:?}"),
        }
        // The failed recording is gone: later frames are dropped.
        assert!(w.is_empty());
        assert_eq!(w.frame(rtp(7, 11, 11 * 160, &[0; 160])), None);
    }

    #[test]
    fn a_header_that_cannot_be_written_fails_at_start() {
        let r = Recording::new(
            1,
            Box::new(Full { room: 10 }),
            None,
            FileFormat::Wav,
            Limits::default(),
            0,
            Instant::now(),
        );
        assert!(r.is_err());
    }

    #[test]
    fn max_duration_ends_it_and_max_silence_cuts_the_trailing_silence() {
        let limits = Limits {
            max_duration_ms: 1000,
            max_silence_ms: 0,
        };
        let (mut w, _) = start(FileFormat::Sln, limits);
        let mut ended = None;
        for i in 0..100u16 {
            if let Some(r) = w.frame(rtp(1, i, u32::from(i) * 160, &[3000; 160])) {
                ended = Some((i, r));
                break;
            }
        }
        let (at, r) = ended.unwrap();
        assert_eq!(at, 49);
        assert!(matches!(
            r,
            Report::Finished {
                end: End::MaxDuration,
                duration_s: 1,
                ..
            }
        ));

        let limits = Limits {
            max_duration_ms: 0,
            max_silence_ms: 1000,
        };
        let (mut w, store) = start(FileFormat::Sln, limits);
        let mut seq = 0u16;
        // 2 s of talk, then silence until the limit.
        for _ in 0..100 {
            assert_eq!(
                w.frame(rtp(
                    1,
                    seq,
                    u32::from(seq) * 160,
                    &tone(500.0, 8000, 160, 0)
                )),
                None
            );
            seq += 1;
        }
        let mut report = None;
        for _ in 0..100 {
            if let Some(r) = w.frame(rtp(1, seq, u32::from(seq) * 160, &[0; 160])) {
                report = Some(r);
                break;
            }
            seq += 1;
        }
        // 3.02 s written; Asterisk's whole seconds: (1020 - 200) / 1000 = 0
        // taken off either.
        assert_eq!(
            report.unwrap(),
            Report::Finished {
                key: 1,
                end: End::MaxSilence,
                duration_s: 3,
                talking_s: Some(3),
            }
        );
        // 2 s of talk and 200 ms of the silence are left.
        assert_eq!(store.bytes().len(), (2000 + 200) * 16);
    }

    #[test]
    fn paused_audio_is_skipped_and_muted_audio_is_silence() {
        let (mut w, store) = start(FileFormat::Sln, Limits::default());
        let now = Instant::now();
        w.frame(rtp(1, 0, 0, &[1000; 160]));
        w.pause(1, true, now);
        w.frame(rtp(1, 1, 160, &[1000; 160]));
        w.pause(1, false, now);
        w.mute(1, true);
        w.frame(rtp(1, 2, 320, &[1000; 160]));
        w.end(1, End::Stopped).unwrap();
        let bytes = store.bytes();
        let pcm = crate::sounds::decode(FileFormat::Sln, &bytes).unwrap();
        // The paused packet is not there, nor is the gap it leaves filled.
        assert_eq!(pcm.samples.len(), 320);
        assert!(pcm.samples[..160].iter().all(|s| s.abs() > 900));
        assert!(pcm.samples[160..].iter().all(|s| *s == 0));
    }

    #[test]
    fn formats_round_trip_a_tone_and_mixes_are_resampled() {
        for file in [
            FileFormat::Wav,
            FileFormat::Wav16,
            FileFormat::Sln,
            FileFormat::Sln16,
            FileFormat::Ulaw,
            FileFormat::Alaw,
            FileFormat::G722,
        ] {
            let (mut w, store) = start(file, Limits::default());
            for i in 0..50usize {
                let frame = TapFrame {
                    key: 1,
                    audio: TapAudio::Pcm {
                        rate: 16000,
                        samples: tone(1000.0, 16000, 320, i * 320).into(),
                    },
                };
                assert_eq!(w.frame(frame), None);
            }
            w.end(1, End::Stopped).unwrap();
            let pcm = crate::sounds::decode(file, &store.bytes()).unwrap();
            assert_eq!(pcm.rate, file_rate(file), "{file:?}");
            let expected = file_rate(file) as usize;
            assert!(
                pcm.samples.len().abs_diff(expected) <= 16,
                "{file:?}: {} samples",
                pcm.samples.len()
            );
            let tail = &pcm.samples[pcm.samples.len() / 2..];
            let mean = tail.iter().map(|s| f64::from(*s).abs()).sum::<f64>() / tail.len() as f64;
            assert!(mean > 3000.0, "{file:?}: mean {mean}");
        }
    }

    #[test]
    fn appending_to_a_wav_continues_its_data_and_fixes_its_header() {
        let store = Shared::default();
        let mut existing = wav_header(8000, 1600).to_vec();
        existing.extend([7i16; 800].iter().flat_map(|s| s.to_le_bytes()));
        store
            .0
            .lock()
            .unwrap()
            .get_mut()
            .extend_from_slice(&existing);
        let rec = Recording::new(
            1,
            Box::new(store.clone()),
            None,
            FileFormat::Wav,
            Limits::default(),
            existing.len() as u64,
            Instant::now(),
        )
        .unwrap();
        let mut w = Writers::default();
        w.insert(rec);
        w.frame(rtp(1, 0, 0, &[1000; 160]));
        w.end(1, End::Stopped).unwrap();
        let pcm = crate::sounds::decode_wav(&store.bytes()).unwrap();
        assert_eq!(pcm.samples.len(), 960);
        assert_eq!(pcm.samples[0], 7);
        assert!(pcm.samples[800] > 900);
    }

    #[test]
    fn durations_with_a_silence_limit_are_asterisks() {
        // 3 s of talk, 2 s of silence, 1 s of talk, 1.5 s of silence, stopped.
        let limits = Limits {
            max_duration_ms: 0,
            max_silence_ms: 5000,
        };
        let (mut w, _) = start(FileFormat::Sln, limits);
        let mut seq = 0u16;
        for (loud, frames) in [(true, 150), (false, 100), (true, 50), (false, 75)] {
            for _ in 0..frames {
                let pcm = if loud {
                    tone(500.0, 8000, 160, 0)
                } else {
                    vec![0; 160]
                };
                assert_eq!(w.frame(rtp(1, seq, u32::from(seq) * 160, &pcm)), None);
                seq += 1;
            }
        }
        // Written 7.5 s → 7; silence 3.5 s → talk 7 - 3 = 4; the trailing
        // 1.5 s → duration 7 - 1 = 6.
        assert_eq!(
            w.end(1, End::Stopped).unwrap(),
            Report::Finished {
                key: 1,
                end: End::Stopped,
                duration_s: 6,
                talking_s: Some(4),
            }
        );
    }

    #[test]
    fn cancel_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("crossbar-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sln");
        let file = std::fs::File::create(&path).unwrap();
        let mut rec = Recording::new(
            1,
            Box::new(file),
            Some(path.clone()),
            FileFormat::Sln,
            Limits::default(),
            0,
            Instant::now(),
        )
        .unwrap();
        rec.frame(TapAudio::Pcm {
            rate: 8000,
            samples: vec![5; 160].into(),
        })
        .unwrap();
        assert!(path.exists());
        assert!(matches!(
            rec.finish(End::Cancelled),
            Report::Finished {
                end: End::Cancelled,
                ..
            }
        ));
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
