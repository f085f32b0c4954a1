//! Tones for playback: the `tone:` and `digits:` media URIs of ARI.
//!
//! Sans-IO: this module parses and generates; the caller owns the clock and
//! decides when a frame is due.
//!
//! # Tone strings (Asterisk's `ast_playtones_start`, main/indications.c)
//! A tone string is a list of parts separated by `,` (or by `|` when the
//! string contains one):
//!
//! ```text
//! part  = [!] tone [/ duration_ms]
//! tone  = f1 | f1+f2 | f1*f2 | Mn | Mn+Mm | Mn*Mm
//! ```
//!
//! - `f1+f2` is the sum of two sines, `f1*f2` is `f1` amplitude-modulated by
//!   `f2`, `Mn` is MIDI note `n` (0–127, Asterisk's table of whole hertz);
//!   frequency `0` is silence (`0/500` is half a second of silence).
//! - A part without `/duration` (or with `/0`) lasts for ever.
//! - Repetition: a part starting with `!` is played once. When the last part
//!   ends, playback goes back to the *first part without `!`* and goes on
//!   from there (the `!` parts after it are replayed too, as in Asterisk);
//!   only a string whose parts all start with `!` ends. So
//!   `!950/330,!1400/330,!1800/330,0` plays the three tones once, then
//!   silence for ever, and `440/300,0/10000` repeats.
//! - Each tone sounds at Asterisk's default playtones volume, an amplitude of
//!   7219 (about −13 dBFS) per frequency; two tones sum (peak 14438). A
//!   modulated tone is what Asterisk's generator computes:
//!   `A·sin(f1)·0.9·(1 − (A/32768)·sin(f2))`.
//!
//! Differences from Asterisk, on purpose:
//! - parsing is strict: a part Asterisk would skip with a log line (or read
//!   partly, as `sscanf` ignores trailing garbage) is an error naming the
//!   part; an empty part is an error, except one trailing empty part
//!   (`440/100,`) which is ignored. Frequencies are 0–[`MAX_FREQ`] Hz,
//!   durations at most [`MAX_DURATION_MS`], at most [`MAX_PARTS`] parts;
//! - durations are sample-accurate (Asterisk moves on at the end of the 20 ms
//!   frame in which a part ends) at any sample rate (Asterisk assumes 8 kHz);
//! - sines are phase-continuous across parts and frames (a tone that goes on
//!   into the next part or the next repetition keeps its phase, a frequency
//!   change keeps the phase), and a tone that starts or stops is faded in or
//!   out over [`RAMP_MS`] ms *inside* its own part, so there is no click
//!   (Asterisk restarts every part at phase 0 and cuts tones off).
//!
//! # `tone:` URIs (main/app.c `ast_control_tone`, `parse_tone_uri`)
//! `tone:INDICATION[;tonezone=ZONE]`: the value is split at the first `;`;
//! anything after it must begin with `tonezone=` (else the playback fails).
//! `INDICATION` is looked up (case-insensitively) in `ZONE` when that zone
//! exists, else in the channel's zone (else the default zone, `us`); when it
//! is not an indication there, it is played as a tone string
//! (`tone:350+440`, `tone:!950/330,!1400/330`).
//!
//! # `digits:` URIs (main/say.c `ast_get_digit_str`)
//! Each character is one sound file: `0`–`9` → `digits/0`…`digits/9`, `*` →
//! `digits/star`, `#` → `digits/pound`, `-` → `digits/minus`. Any other
//! character is skipped silently (so is a file that does not exist, at play
//! time); an empty list plays nothing and succeeds. Letters are not spoken
//! (that is `characters:`).

use std::fmt;

/// The most parts a tone string may have (Asterisk's longest indication in
/// indications.conf.sample, `se` info, has about 30).
pub const MAX_PARTS: usize = 64;
/// The highest frequency accepted, in Hz (the Nyquist frequency at 8 kHz).
pub const MAX_FREQ: u32 = 4000;
/// The longest duration of one part, in milliseconds (ten minutes).
pub const MAX_DURATION_MS: u32 = 600_000;
/// Fade-in and fade-out length of a tone that starts or stops, in ms.
pub const RAMP_MS: u32 = 2;
/// Peak amplitude of one tone: Asterisk's default playtones volume.
pub const TONE_AMPLITUDE: f64 = 7219.0;
/// The zone used when neither the URI nor the channel names one.
pub const DEFAULT_ZONE: &str = "us";

/// Asterisk's `midi_tohz` table (main/indications.c).
const MIDI_TO_HZ: [u16; 128] = [
    8, 8, 9, 9, 10, 10, 11, 12, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 27, 29, 30, 32,
    34, 36, 38, 41, 43, 46, 48, 51, 55, 58, 61, 65, 69, 73, 77, 82, 87, 92, 97, 103, 110, 116, 123,
    130, 138, 146, 155, 164, 174, 184, 195, 207, 220, 233, 246, 261, 277, 293, 311, 329, 349, 369,
    391, 415, 440, 466, 493, 523, 554, 587, 622, 659, 698, 739, 783, 830, 880, 932, 987, 1046,
    1108, 1174, 1244, 1318, 1396, 1479, 1567, 1661, 1760, 1864, 1975, 2093, 2217, 2349, 2489, 2637,
    2793, 2959, 3135, 3322, 3520, 3729, 3951, 4186, 4434, 4698, 4978, 5274, 5587, 5919, 6271, 6644,
    7040, 7458, 7902, 8372, 8869, 9397, 9956, 10548, 11175, 11839, 12543,
];

/// Why a tone string, a `tone:` value or a generator was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToneError {
    /// Nothing to play (an empty string, or an empty indication).
    Empty,
    /// More than [`MAX_PARTS`] parts.
    TooManyParts(usize),
    /// One part is not valid; `part` is its text, `index` its position
    /// (from 0).
    BadPart {
        index: usize,
        part: String,
        reason: &'static str,
    },
    /// A `tone:` URI component after `;` other than `tonezone=`.
    BadUriComponent(String),
    /// A sample rate the generator does not support.
    BadRate(u32),
}

impl fmt::Display for ToneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToneError::Empty => write!(f, "empty tone"),
            ToneError::TooManyParts(n) => {
                write!(f, "tone has {n} parts, at most {MAX_PARTS} allowed")
            }
            ToneError::BadPart {
                index,
                part,
                reason,
            } => write!(f, "tone part {} '{part}': {reason}", index + 1),
            ToneError::BadUriComponent(c) => write!(f, "unexpected tone URI component '{c}'"),
            ToneError::BadRate(r) => write!(f, "unsupported sample rate {r}"),
        }
    }
}

impl std::error::Error for ToneError {}

/// One part of a tone string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TonePart {
    /// First frequency in Hz (0: silent).
    pub freq1: u16,
    /// Second frequency in Hz (0: none), summed or modulating.
    pub freq2: u16,
    /// `f1*f2`: `freq1` amplitude-modulated by `freq2`.
    pub modulate: bool,
    /// Duration in milliseconds; 0 = for ever.
    pub duration_ms: u32,
    /// Written with `!`: not part of the repeated section by itself.
    pub once: bool,
}

/// A parsed tone string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToneSpec {
    parts: Vec<TonePart>,
    /// Index of the first part without `!`: where playback goes back to
    /// after the last part. `None`: all parts have `!`, the tone ends.
    repeat_from: Option<usize>,
}

impl ToneSpec {
    /// Parses a tone string (see the module documentation).
    pub fn parse(s: &str) -> Result<ToneSpec, ToneError> {
        let sep = if s.contains('|') { '|' } else { ',' };
        let pieces: Vec<&str> = s.split(sep).collect();
        let mut count = pieces.len();
        // One trailing empty part is tolerated (`440/100,`).
        if count > 1 && pieces[count - 1].is_empty() {
            count -= 1;
        }
        if count == 1 && pieces[0].trim().is_empty() {
            return Err(ToneError::Empty);
        }
        if count > MAX_PARTS {
            return Err(ToneError::TooManyParts(count));
        }
        let mut parts = Vec::with_capacity(count);
        let mut repeat_from = None;
        for (index, raw) in pieces[..count].iter().enumerate() {
            let part = parse_part(raw.trim()).map_err(|reason| ToneError::BadPart {
                index,
                part: (*raw).to_string(),
                reason,
            })?;
            if !part.once && repeat_from.is_none() {
                repeat_from = Some(index);
            }
            parts.push(part);
        }
        Ok(ToneSpec { parts, repeat_from })
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[TonePart] {
        &self.parts
    }

    /// Where playback resumes after the last part; `None` when the tone
    /// plays once and ends.
    pub fn repeat_from(&self) -> Option<usize> {
        self.repeat_from
    }

    /// True when the tone ends by itself: no repetition and no part that
    /// lasts for ever.
    pub fn is_finite(&self) -> bool {
        self.repeat_from.is_none() && self.parts.iter().all(|p| p.duration_ms != 0)
    }

    /// The total duration of a finite tone, in milliseconds.
    pub fn duration_ms(&self) -> Option<u64> {
        self.is_finite()
            .then(|| self.parts.iter().map(|p| u64::from(p.duration_ms)).sum())
    }

    /// The part played after part `i`; `None` at the end of the tone.
    fn next_index(&self, i: usize) -> Option<usize> {
        if i + 1 < self.parts.len() {
            Some(i + 1)
        } else {
            self.repeat_from
        }
    }
}

/// Parses an unsigned decimal number (digits only, at most 9 of them).
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn frequency(s: &str, midi: bool) -> Result<u16, &'static str> {
    let hz = if midi {
        let n = s
            .strip_prefix('M')
            .and_then(number)
            .ok_or("bad MIDI note")?;
        u32::from(*MIDI_TO_HZ.get(n as usize).ok_or("MIDI note above 127")?)
    } else {
        number(s).ok_or("bad frequency")?
    };
    if hz > MAX_FREQ {
        return Err("frequency above 4000 Hz");
    }
    Ok(hz as u16)
}

fn parse_part(s: &str) -> Result<TonePart, &'static str> {
    if s.is_empty() {
        return Err("empty part");
    }
    let (once, s) = match s.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (tone, duration_ms) = match s.split_once('/') {
        Some((tone, d)) => (tone, number(d).ok_or("bad duration")?),
        None => (s, 0),
    };
    if duration_ms > MAX_DURATION_MS {
        return Err("duration above 600000 ms");
    }
    let midi = tone.starts_with('M');
    let (f1, f2, modulate) = if let Some((a, b)) = tone.split_once('+') {
        (a, Some(b), false)
    } else if let Some((a, b)) = tone.split_once('*') {
        (a, Some(b), true)
    } else {
        (tone, None, false)
    };
    let freq1 = frequency(f1, midi)?;
    let freq2 = match f2 {
        Some(f2) => frequency(f2, midi)?,
        None => 0,
    };
    Ok(TonePart {
        freq1,
        freq2,
        modulate,
        duration_ms,
        once,
    })
}

/// One indication zone of indications.conf.sample (Asterisk 22).
struct Zone {
    country: &'static str,
    description: &'static str,
    tones: &'static [(&'static str, &'static str)],
}

/// The zones crossbar knows, copied from Asterisk's indications.conf.sample.
const ZONES: &[Zone] = &[
    Zone {
        country: "au",
        description: "Australia",
        tones: &[
            ("dial", "413+438"),
            ("busy", "425/375,0/375"),
            ("ring", "413+438/400,0/200,413+438/400,0/2000"),
            ("congestion", "425/375,0/375,420/375,0/375"),
            ("callwaiting", "425/200,0/200,425/200,0/4400"),
            ("dialrecall", "413+438"),
            ("record", "!425/1000,!0/15000,425/360,0/15000"),
            ("info", "425/2500,0/500"),
            (
                "std",
                "!525/100,!0/100,!525/100,!0/100,!525/100,!0/100,!525/100,!0/100,!525/100",
            ),
            ("facility", "425"),
            ("stutter", "413+438/100,0/40"),
            ("ringmobile", "400+450/400,0/200,400+450/400,0/2000"),
        ],
    },
    Zone {
        country: "de",
        description: "Germany",
        tones: &[
            ("dial", "425"),
            ("busy", "425/480,0/480"),
            ("ring", "425/1000,0/4000"),
            ("congestion", "425/240,0/240"),
            (
                "callwaiting",
                "!425/200,!0/200,!425/200,!0/5000,!425/200,!0/200,!425/200,!0/5000,\
                 !425/200,!0/200,!425/200,!0/5000,!425/200,!0/200,!425/200,!0/5000,\
                 !425/200,!0/200,!425/200,0",
            ),
            (
                "dialrecall",
                "!425/100,!0/100,!425/100,!0/100,!425/100,!0/100,425",
            ),
            ("record", "1400/80,0/15000"),
            ("info", "950/330,1400/330,1800/330,0/1000"),
            ("stutter", "425+400"),
        ],
    },
    Zone {
        country: "fr",
        description: "France",
        tones: &[
            ("dial", "440"),
            ("busy", "440/500,0/500"),
            ("ring", "440/1500,0/3500"),
            ("congestion", "440/250,0/250"),
            ("callwait", "440/300,0/10000"),
            (
                "dialrecall",
                "!350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,350+440",
            ),
            ("record", "1400/500,0/15000"),
            ("info", "!950/330,!1400/330,!1800/330"),
            (
                "stutter",
                "!440/100,!0/100,!440/100,!0/100,!440/100,!0/100,!440/100,!0/100,\
                 !440/100,!0/100,!440/100,!0/100,440",
            ),
        ],
    },
    Zone {
        country: "it",
        description: "Italy",
        tones: &[
            ("dial", "425/200,0/200,425/600,0/1000"),
            ("busy", "425/500,0/500"),
            ("ring", "425/1000,0/4000"),
            ("congestion", "425/200,0/200"),
            ("callwaiting", "425/400,0/100,425/250,0/100,425/150,0/14000"),
            ("dialrecall", "470/400,425/400"),
            ("record", "1400/400,0/15000"),
            (
                "info",
                "!950/330,!1400/330,!1800/330,!0/1000,!950/330,!1400/330,!1800/330,!0/1000,\
                 !950/330,!1400/330,!1800/330,!0/1000,0",
            ),
            ("stutter", "470/400,425/400"),
        ],
    },
    Zone {
        country: "jp",
        description: "Japan",
        tones: &[
            ("dial", "400"),
            ("busy", "400/500,0/500"),
            ("ring", "400+15/1000,0/2000"),
            ("congestion", "400/500,0/500"),
            ("callwaiting", "400+16/500,0/8000"),
            (
                "dialrecall",
                "!400/200,!0/200,!400/200,!0/200,!400/200,!0/200,400",
            ),
            ("record", "1400/500,0/15000"),
            ("info", "!950/330,!1400/330,!1800/330,0"),
            (
                "stutter",
                "!400/100,!0/100,!400/100,!0/100,!400/100,!0/100,!400/100,!0/100,\
                 !400/100,!0/100,!400/100,!0/100,400",
            ),
        ],
    },
    Zone {
        country: "nl",
        description: "Netherlands",
        tones: &[
            ("dial", "425"),
            ("busy", "425/500,0/500"),
            ("ring", "425/1000,0/4000"),
            ("congestion", "425/250,0/250"),
            ("callwaiting", "425/500,0/9500"),
            ("dialrecall", "425/500,0/50"),
            ("record", "1400/500,0/15000"),
            ("info", "950/330,1400/330,1800/330,0/1000"),
            ("stutter", "425/500,0/50"),
        ],
    },
    Zone {
        country: "uk",
        description: "United Kingdom",
        tones: &[
            ("dial", "350+440"),
            ("specialdial", "350+440/750,440/750"),
            ("busy", "400/375,0/375"),
            ("congestion", "400/400,0/350,400/225,0/525"),
            ("specialcongestion", "400/200,1004/300"),
            ("unobtainable", "400"),
            ("ring", "400+450/400,0/200,400+450/400,0/2000"),
            ("callwaiting", "400/100,0/4000"),
            (
                "specialcallwaiting",
                "400/250,0/250,400/250,0/250,400/250,0/5000",
            ),
            ("creditexpired", "400/125,0/125"),
            ("confirm", "1400"),
            ("switching", "400/200,0/400,400/2000,0/400"),
            ("info", "950/330,0/15,1400/330,0/15,1800/330,0/1000"),
            ("record", "1400/500,0/60000"),
            ("stutter", "350+440/750,440/750"),
        ],
    },
    Zone {
        country: "us",
        description: "United States / North America",
        tones: &[
            ("dial", "350+440"),
            ("busy", "480+620/500,0/500"),
            ("ring", "440+480/2000,0/4000"),
            ("congestion", "480+620/250,0/250"),
            ("callwaiting", "440/300,0/10000"),
            (
                "dialrecall",
                "!350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,350+440",
            ),
            ("record", "1400/500,0/15000"),
            ("info", "!950/330,!1400/330,!1800/330,0"),
            (
                "stutter",
                "!350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,\
                 !350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,350+440",
            ),
        ],
    },
    Zone {
        country: "us-old",
        description: "United States Circa 1950/ North America",
        tones: &[
            ("dial", "600*120"),
            ("busy", "500*100/500,0/500"),
            ("ring", "420*40/2000,0/4000"),
            ("congestion", "500*100/250,0/250"),
            ("callwaiting", "440/300,0/10000"),
            (
                "dialrecall",
                "!600*120/100,!0/100,!600*120/100,!0/100,!600*120/100,!0/100,600*120",
            ),
            ("record", "1400/500,0/15000"),
            ("info", "!950/330,!1400/330,!1800/330,0"),
            (
                "stutter",
                "!600*120/100,!0/100,!600*120/100,!0/100,!600*120/100,!0/100,\
                 !600*120/100,!0/100,!600*120/100,!0/100,!600*120/100,!0/100,600*120",
            ),
        ],
    },
];

fn find_zone(zone: &str) -> Option<&'static Zone> {
    ZONES.iter().find(|z| z.country.eq_ignore_ascii_case(zone))
}

/// True when `zone` is a known indication zone (case-insensitive, as
/// Asterisk's zone container).
pub fn zone_exists(zone: &str) -> bool {
    find_zone(zone).is_some()
}

/// The known zones: (country code, description).
pub fn zones() -> impl Iterator<Item = (&'static str, &'static str)> {
    ZONES.iter().map(|z| (z.country, z.description))
}

/// The tone string of indication `name` in `zone` (both case-insensitive).
pub fn lookup(zone: &str, name: &str) -> Option<&'static str> {
    find_zone(zone)?
        .tones
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, tone)| tone)
}

/// Parses the value of a `tone:` URI (what follows `tone:`) for a channel in
/// the default zone. See [`parse_tone_uri_in`].
pub fn parse_tone_uri(value: &str) -> Result<ToneSpec, ToneError> {
    parse_tone_uri_in(value, None)
}

/// Parses the value of a `tone:` URI for a channel whose tone zone is
/// `channel_zone` (`None`, or an unknown zone: the default zone).
///
/// `INDICATION[;tonezone=ZONE]`: the indication is looked up in `ZONE` if it
/// exists, else in the channel's zone; if it is no indication there, it is
/// parsed as a tone string.
pub fn parse_tone_uri_in(value: &str, channel_zone: Option<&str>) -> Result<ToneSpec, ToneError> {
    let (indication, rest) = match value.split_once(';') {
        Some((ind, rest)) => (ind, rest),
        None => (value, ""),
    };
    let uri_zone = if rest.is_empty() {
        None
    } else {
        match rest.strip_prefix("tonezone=") {
            Some(z) => Some(z),
            None => return Err(ToneError::BadUriComponent(rest.to_string())),
        }
    };
    if indication.is_empty() {
        return Err(ToneError::Empty);
    }
    let zone = [uri_zone, channel_zone]
        .into_iter()
        .flatten()
        .find(|z| zone_exists(z))
        .unwrap_or(DEFAULT_ZONE);
    ToneSpec::parse(lookup(zone, indication).unwrap_or(indication))
}

/// The sound files of a `digits:` value, in order (see the module
/// documentation for the mapping; other characters are skipped).
pub fn parse_digits(value: &str) -> Vec<&'static str> {
    value.chars().filter_map(digit_sound).collect()
}

/// The sound file Asterisk plays for one character of a `digits:` value.
pub fn digit_sound(c: char) -> Option<&'static str> {
    const DIGITS: [&str; 10] = [
        "digits/0", "digits/1", "digits/2", "digits/3", "digits/4", "digits/5", "digits/6",
        "digits/7", "digits/8", "digits/9",
    ];
    match c {
        '0'..='9' => Some(DIGITS[c as usize - '0' as usize]),
        '*' => Some("digits/star"),
        '#' => Some("digits/pound"),
        '-' => Some("digits/minus"),
        _ => None,
    }
}

/// Generates a [`ToneSpec`] as signed linear 16-bit mono PCM.
///
/// All allocation happens in [`ToneGen::new`] (a copy of the spec);
/// [`ToneGen::next_frame`] neither allocates nor panics.
#[derive(Clone, Debug)]
pub struct ToneGen {
    spec: ToneSpec,
    rate: u32,
    /// Fade length in samples.
    ramp: u64,
    /// The part playing.
    index: usize,
    /// Samples of the part played so far.
    pos: u64,
    /// Length of the part in samples; 0 = for ever.
    len: u64,
    /// Fade length for this part (`ramp`, at most half the part).
    part_ramp: f64,
    /// Phase of each oscillator, in cycles, in [0, 1).
    phase: [f64; 2],
    /// Phase increment per sample of each oscillator.
    step: [f64; 2],
    fade_in: [bool; 2],
    fade_out: [bool; 2],
    done: bool,
}

/// The sample rates accepted.
pub const MIN_RATE: u32 = 8000;
pub const MAX_RATE: u32 = 192_000;

impl ToneGen {
    /// A generator for `spec` at `rate` samples per second (8000–192000;
    /// durations are exact when the rate is a multiple of 1000).
    pub fn new(spec: ToneSpec, rate: u32) -> Result<ToneGen, ToneError> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(ToneError::BadRate(rate));
        }
        if spec.parts.is_empty() {
            return Err(ToneError::Empty);
        }
        let mut gen = ToneGen {
            spec,
            rate,
            ramp: u64::from(rate * RAMP_MS / 1000).max(1),
            index: 0,
            pos: 0,
            len: 0,
            part_ramp: 1.0,
            phase: [0.0; 2],
            step: [0.0; 2],
            fade_in: [false; 2],
            fade_out: [false; 2],
            done: false,
        };
        gen.enter(0, None);
        Ok(gen)
    }

    /// The sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// True once a tone that plays once has played all its parts.
    pub fn is_finished(&self) -> bool {
        self.done
    }

    /// Starts again from the first part (ARI's `restart`).
    pub fn restart(&mut self) {
        self.done = false;
        self.phase = [0.0; 2];
        self.enter(0, None);
    }

    /// Fills `out` with the next samples. Returns false, with `out` silent,
    /// when the tone had already ended; true otherwise (the frame in which
    /// the tone ends is padded with silence).
    pub fn next_frame(&mut self, out: &mut [i16]) -> bool {
        if self.done {
            out.fill(0);
            return false;
        }
        for sample in out.iter_mut() {
            if self.done {
                *sample = 0;
                continue;
            }
            *sample = self.sample();
            self.pos += 1;
            if self.len != 0 && self.pos >= self.len {
                let prev = self.index;
                match self.spec.next_index(prev) {
                    Some(next) => self.enter(next, Some(prev)),
                    None => self.done = true,
                }
            }
        }
        true
    }

    /// Makes part `index` current; `prev` is the part before it, if any.
    fn enter(&mut self, index: usize, prev: Option<usize>) {
        let Some(&part) = self.spec.parts.get(index) else {
            self.done = true;
            return;
        };
        let prev = prev.and_then(|i| self.spec.parts.get(i).copied());
        let next = if part.duration_ms == 0 {
            // Lasts for ever: never fades out.
            Some(part)
        } else {
            self.spec
                .next_index(index)
                .and_then(|i| self.spec.parts.get(i).copied())
        };
        self.index = index;
        self.pos = 0;
        self.len = u64::from(part.duration_ms) * u64::from(self.rate) / 1000;
        self.part_ramp = if self.len == 0 {
            self.ramp as f64
        } else {
            self.ramp.min(self.len / 2).max(1) as f64
        };
        let freqs = [part.freq1, part.freq2];
        for (k, &f) in freqs.iter().enumerate() {
            self.step[k] = f64::from(f) / f64::from(self.rate);
            let starts = !continues(prev.as_ref(), &part, k);
            self.fade_in[k] = starts;
            if starts {
                self.phase[k] = 0.0;
            }
            self.fade_out[k] = match next {
                None => true,
                Some(next) => !continues(Some(&part), &next, k),
            };
        }
    }

    /// The gain of oscillator `k` at the current position.
    fn gain(&self, k: usize) -> f64 {
        let mut g = 1.0f64;
        if self.fade_in[k] {
            g = g.min(self.pos as f64 / self.part_ramp);
        }
        if self.fade_out[k] && self.len != 0 {
            g = g.min(self.len.saturating_sub(self.pos + 1) as f64 / self.part_ramp);
        }
        g
    }

    fn sample(&mut self) -> i16 {
        let part = match self.spec.parts.get(self.index) {
            Some(p) => *p,
            None => return 0,
        };
        let tau = std::f64::consts::TAU;
        let s0 = (tau * self.phase[0]).sin();
        let s1 = (tau * self.phase[1]).sin();
        let v = if part.modulate {
            let m = TONE_AMPLITUDE / 32768.0;
            TONE_AMPLITUDE * self.gain(0) * s0 * 0.9 * (1.0 - m * s1)
        } else {
            let a = if part.freq1 != 0 {
                self.gain(0) * s0
            } else {
                0.0
            };
            let b = if part.freq2 != 0 {
                self.gain(1) * s1
            } else {
                0.0
            };
            TONE_AMPLITUDE * (a + b)
        };
        for k in 0..2 {
            self.phase[k] += self.step[k];
            if self.phase[k] >= 1.0 {
                self.phase[k] -= 1.0;
            }
        }
        v.round().clamp(-32768.0, 32767.0) as i16
    }
}

/// True when oscillator `k` of `part` sounds on, without a fade, from the
/// oscillator of `prev` (the same oscillator sounding before, maybe at
/// another frequency: its phase carries on).
fn continues(prev: Option<&TonePart>, part: &TonePart, k: usize) -> bool {
    let Some(prev) = prev else { return false };
    if part.modulate || prev.modulate {
        return same_tone(prev, part);
    }
    let f = |p: &TonePart| if k == 0 { p.freq1 } else { p.freq2 };
    f(prev) != 0 && f(part) != 0
}

fn same_tone(a: &TonePart, b: &TonePart) -> bool {
    a.freq1 == b.freq1 && a.freq2 == b.freq2 && a.modulate == b.modulate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(freq1: u16, freq2: u16, modulate: bool, duration_ms: u32, once: bool) -> TonePart {
        TonePart {
            freq1,
            freq2,
            modulate,
            duration_ms,
            once,
        }
    }

    /// Everything `spec` produces at `rate` in frames of `frame` samples,
    /// at most `max` samples; and whether it ended by itself.
    fn render(spec: &str, rate: u32, frame: usize, max: usize) -> (Vec<i16>, bool) {
        let mut gen = ToneGen::new(ToneSpec::parse(spec).unwrap(), rate).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0i16; frame];
        while out.len() < max {
            if !gen.next_frame(&mut buf) {
                assert!(buf.iter().all(|&s| s == 0));
                assert!(gen.is_finished());
                return (out, true);
            }
            out.extend_from_slice(&buf);
        }
        (out, false)
    }

    /// Amplitude of the `freq` component of `x` (Goertzel).
    fn goertzel(x: &[i16], freq: f64, rate: u32) -> f64 {
        let w = std::f64::consts::TAU * freq / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        2.0 * power.max(0.0).sqrt() / x.len() as f64
    }

    fn max_delta(x: &[i16]) -> i32 {
        x.windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn parse_valid() {
        let cases: &[(&str, &[TonePart], Option<usize>)] = &[
            ("1000", &[p(1000, 0, false, 0, false)], Some(0)),
            ("350+440", &[p(350, 440, false, 0, false)], Some(0)),
            (
                "480+620/500,0/500",
                &[p(480, 620, false, 500, false), p(0, 0, false, 500, false)],
                Some(0),
            ),
            (
                "!950/330,!1400/330,!1800/330,0",
                &[
                    p(950, 0, false, 330, true),
                    p(1400, 0, false, 330, true),
                    p(1800, 0, false, 330, true),
                    p(0, 0, false, 0, false),
                ],
                Some(3),
            ),
            (
                "!950/330,!1400/330",
                &[p(950, 0, false, 330, true), p(1400, 0, false, 330, true)],
                None,
            ),
            ("600*120/100", &[p(600, 120, true, 100, false)], Some(0)),
            ("M69", &[p(440, 0, false, 0, false)], Some(0)),
            ("!M60+M64/250", &[p(261, 329, false, 250, true)], None),
            ("M69*M45", &[p(440, 110, true, 0, false)], Some(0)),
            (
                "440/100|0/100",
                &[p(440, 0, false, 100, false), p(0, 0, false, 100, false)],
                Some(0),
            ),
            (
                " 440/100 , !0/50 ,",
                &[p(440, 0, false, 100, false), p(0, 0, false, 50, true)],
                Some(0),
            ),
            ("4000/600000", &[p(4000, 0, false, 600_000, false)], Some(0)),
            ("440/0", &[p(440, 0, false, 0, false)], Some(0)),
        ];
        for (s, parts, rep) in cases {
            let spec = ToneSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(spec.parts(), *parts, "{s}");
            assert_eq!(spec.repeat_from(), *rep, "{s}");
        }
        assert_eq!(
            ToneSpec::parse("!950/330,!1400/330").unwrap().duration_ms(),
            Some(660)
        );
        assert_eq!(ToneSpec::parse("!950/330,!0").unwrap().duration_ms(), None);
        assert_eq!(ToneSpec::parse("440/100").unwrap().duration_ms(), None);
    }

    #[test]
    fn parse_invalid() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("   ", None),
            (",", None),
            ("abc", Some("abc")),
            ("440/", Some("440/")),
            ("440/x", Some("440/x")),
            ("4001", Some("4001")),
            ("440+", Some("440+")),
            ("+440", Some("+440")),
            ("440*", Some("440*")),
            ("-5", Some("-5")),
            ("440abc", Some("440abc")),
            ("440/100/5", Some("440/100/5")),
            ("1+2+3", Some("1+2+3")),
            ("M128", Some("M128")),
            ("M108", Some("M108")),
            ("M69+70", Some("M69+70")),
            ("440/600001", Some("440/600001")),
            ("440,,880", Some("")),
            ("440,!", Some("!")),
            ("350+440/100,0/100,9999999999/1", Some("9999999999/1")),
        ];
        for (s, part) in cases {
            let err = ToneSpec::parse(s).expect_err(s);
            match (part, &err) {
                (None, ToneError::Empty) => {}
                (Some(part), ToneError::BadPart { part: got, .. }) => {
                    assert_eq!(got.trim(), *part, "{s}");
                    assert!(err.to_string().contains(part), "{err}");
                }
                _ => panic!("{s}: unexpected {err:?}"),
            }
        }
        let many = vec!["440/10"; MAX_PARTS + 1].join(",");
        assert_eq!(
            ToneSpec::parse(&many),
            Err(ToneError::TooManyParts(MAX_PARTS + 1))
        );
        assert!(ToneSpec::parse(&vec!["440/10"; MAX_PARTS].join(",")).is_ok());
    }

    #[test]
    fn zones_and_lookup() {
        assert_eq!(lookup("us", "dial"), Some("350+440"));
        assert_eq!(lookup("US", "Busy"), Some("480+620/500,0/500"));
        assert_eq!(
            lookup("uk", "ring"),
            Some("400+450/400,0/200,400+450/400,0/2000")
        );
        assert_eq!(lookup("de", "busy"), Some("425/480,0/480"));
        assert_eq!(lookup("fr", "callwait"), Some("440/300,0/10000"));
        assert_eq!(lookup("fr", "callwaiting"), None);
        assert_eq!(lookup("us-old", "dial"), Some("600*120"));
        assert_eq!(lookup("xx", "dial"), None);
        assert_eq!(lookup("us", "nope"), None);
        for zone in ["us", "uk", "de", "fr"] {
            for name in [
                "dial",
                "busy",
                "ring",
                "congestion",
                "record",
                "info",
                "stutter",
            ] {
                assert!(lookup(zone, name).is_some(), "{zone} {name}");
            }
        }
        // Every indication of every zone parses.
        let mut count = 0;
        for (zone, _) in zones() {
            for (name, tone) in find_zone(zone).unwrap().tones {
                ToneSpec::parse(tone).unwrap_or_else(|e| panic!("{zone} {name}: {e}"));
                count += 1;
            }
        }
        assert!(count > 60);
        assert_eq!(
            ToneSpec::parse(lookup("de", "callwaiting").unwrap())
                .unwrap()
                .repeat_from(),
            Some(19)
        );
    }

    #[test]
    fn tone_uris() {
        let spec = |s: &str| ToneSpec::parse(s).unwrap();
        assert_eq!(parse_tone_uri("busy"), Ok(spec("480+620/500,0/500")));
        assert_eq!(parse_tone_uri("BUSY"), Ok(spec("480+620/500,0/500")));
        assert_eq!(
            parse_tone_uri("busy;tonezone=de"),
            Ok(spec("425/480,0/480"))
        );
        assert_eq!(
            parse_tone_uri("busy;tonezone=DE"),
            Ok(spec("425/480,0/480"))
        );
        // An unknown zone falls back to the channel's zone, then the default.
        assert_eq!(
            parse_tone_uri("busy;tonezone=zz"),
            Ok(spec("480+620/500,0/500"))
        );
        assert_eq!(
            parse_tone_uri_in("busy;tonezone=zz", Some("uk")),
            Ok(spec("400/375,0/375"))
        );
        assert_eq!(
            parse_tone_uri_in("busy", Some("uk")),
            Ok(spec("400/375,0/375"))
        );
        assert_eq!(
            parse_tone_uri_in("busy;tonezone=fr", Some("uk")),
            Ok(spec("440/500,0/500"))
        );
        assert_eq!(
            parse_tone_uri_in("busy", Some("zz")),
            Ok(spec("480+620/500,0/500"))
        );
        // Not an indication: a tone string.
        assert_eq!(parse_tone_uri("1000"), Ok(spec("1000")));
        assert_eq!(
            parse_tone_uri("!950/330,!1400/330;tonezone=de"),
            Ok(spec("!950/330,!1400/330"))
        );
        assert!(matches!(
            parse_tone_uri("notatone"),
            Err(ToneError::BadPart { .. })
        ));
        assert_eq!(
            parse_tone_uri("busy;zone=de"),
            Err(ToneError::BadUriComponent("zone=de".into()))
        );
        assert_eq!(parse_tone_uri(""), Err(ToneError::Empty));
        assert_eq!(parse_tone_uri(";tonezone=de"), Err(ToneError::Empty));
    }

    #[test]
    fn digits() {
        assert_eq!(
            parse_digits("12*#-a 9"),
            [
                "digits/1",
                "digits/2",
                "digits/star",
                "digits/pound",
                "digits/minus",
                "digits/9"
            ]
        );
        assert_eq!(parse_digits("0123456789").len(), 10);
        assert_eq!(parse_digits("0")[0], "digits/0");
        assert!(parse_digits("").is_empty());
        assert!(parse_digits("abc+").is_empty());
    }

    #[test]
    fn rates() {
        let spec = ToneSpec::parse("440").unwrap();
        assert_eq!(
            ToneGen::new(spec.clone(), 0).err(),
            Some(ToneError::BadRate(0))
        );
        assert!(ToneGen::new(spec.clone(), 7999).is_err());
        for rate in [8000, 16000, 48000] {
            assert_eq!(ToneGen::new(spec.clone(), rate).unwrap().rate(), rate);
        }
    }

    #[test]
    fn frequencies_by_goertzel() {
        for rate in [8000u32, 16000] {
            let n = rate as usize / 10; // 100 ms: 10 Hz bins
                                        // Single tone.
            let (x, _) = render("1000", rate, 160, 3 * n);
            let win = &x[n..2 * n];
            let a = goertzel(win, 1000.0, rate);
            assert!(
                (a - TONE_AMPLITUDE).abs() < 0.01 * TONE_AMPLITUDE,
                "{rate}: {a}"
            );
            for off in [500.0, 950.0, 1050.0, 2000.0] {
                assert!(
                    goertzel(win, off, rate) < 0.01 * TONE_AMPLITUDE,
                    "{rate} {off}"
                );
            }
            // Dual tone.
            let (x, _) = render("350+440", rate, 160, 3 * n);
            let win = &x[n..2 * n];
            for f in [350.0, 440.0] {
                let a = goertzel(win, f, rate);
                assert!(
                    (a - TONE_AMPLITUDE).abs() < 0.01 * TONE_AMPLITUDE,
                    "{rate} {f}: {a}"
                );
            }
            for off in [300.0, 400.0, 480.0, 1000.0] {
                assert!(
                    goertzel(win, off, rate) < 0.01 * TONE_AMPLITUDE,
                    "{rate} {off}"
                );
            }
            let peak = win.iter().map(|v| i32::from(*v).abs()).max().unwrap();
            assert!(
                peak <= 2 * TONE_AMPLITUDE as i32 + 1 && peak > 13_000,
                "{peak}"
            );
            // Modulated: carrier plus sidebands at f1 ± f2.
            let (x, _) = render("600*120", rate, 160, 3 * n);
            let win = &x[n..2 * n];
            let carrier = goertzel(win, 600.0, rate);
            assert!((carrier - 0.9 * TONE_AMPLITUDE).abs() < 0.02 * TONE_AMPLITUDE);
            let side = 0.9 * TONE_AMPLITUDE * (TONE_AMPLITUDE / 32768.0) / 2.0;
            for f in [480.0, 720.0] {
                let a = goertzel(win, f, rate);
                assert!((a - side).abs() < 0.1 * side, "{f}: {a} vs {side}");
            }
            assert!(goertzel(win, 120.0, rate) < 0.01 * TONE_AMPLITUDE);
        }
    }

    #[test]
    fn durations_are_exact() {
        for rate in [8000u32, 16000, 48000] {
            let ms = rate as usize / 1000;
            for frame in [ms * 20, 7, 1] {
                let (x, ended) = render("!1000/100,!0/50,!500/30", rate, frame, 10 * rate as usize);
                assert!(ended);
                let total = 180 * ms;
                assert_eq!(x.len(), total.div_ceil(frame) * frame, "{rate} {frame}");
                assert!(x[total..].iter().all(|&s| s == 0));
                // Part 1 sounds up to its last samples, part 2 is silent.
                let (a, b) = (100 * ms, 150 * ms);
                assert!(x[a - 4 * ms..a].iter().any(|&s| s.abs() > 1000));
                assert!(x[a..b].iter().all(|&s| s == 0), "{rate} {frame}");
                assert!(x[b..b + 4 * ms].iter().any(|&s| s.abs() > 1000));
                assert!(x[total - 4 * ms..total].iter().any(|&s| s.abs() > 1000));
                // Each tone is where it belongs.
                let p1 = &x[..a];
                assert!(goertzel(p1, 1000.0, rate) > 0.9 * TONE_AMPLITUDE);
                assert!(goertzel(&x[b..total], 500.0, rate) > 0.8 * TONE_AMPLITUDE);
                assert!(goertzel(&x[b..total], 1000.0, rate) < 0.05 * TONE_AMPLITUDE);
            }
        }
        // A frame that ends exactly with the tone: true, then false.
        let mut gen = ToneGen::new(ToneSpec::parse("!440/20").unwrap(), 8000).unwrap();
        let mut buf = [0i16; 160];
        assert!(gen.next_frame(&mut buf));
        assert!(gen.is_finished());
        assert!(!gen.next_frame(&mut buf));
        gen.restart();
        assert!(!gen.is_finished());
        assert!(gen.next_frame(&mut buf));
    }

    #[test]
    fn repetition_and_once() {
        let rate = 8000;
        // Repeats for ever: 100 ms on, 100 ms off.
        let (x, ended) = render("440/100,0/100", rate, 160, 10 * 8000);
        assert!(!ended);
        for period in 0..50 {
            let on = &x[period * 1600..period * 1600 + 800];
            let off = &x[period * 1600 + 800..(period + 1) * 1600];
            assert!(goertzel(on, 440.0, rate) > 0.9 * TONE_AMPLITUDE, "{period}");
            assert!(off.iter().all(|&s| s == 0), "{period}");
        }
        // `!` parts once, then the rest repeats.
        let (x, ended) = render("!1000/100,440/50", rate, 160, 8000);
        assert!(!ended);
        assert!(goertzel(&x[..800], 1000.0, rate) > 0.9 * TONE_AMPLITUDE);
        let rest = &x[800..8000];
        assert!(goertzel(rest, 1000.0, rate) < 0.01 * TONE_AMPLITUDE);
        // The repeated 440 Hz part carries on without a gap.
        assert!(goertzel(&rest[100..7100], 440.0, rate) > 0.99 * TONE_AMPLITUDE);
        // Asterisk replays the `!` parts after the first repeated one.
        let (x, _) = render("!1000/50,440/50,!0/50", rate, 160, 4000);
        let segs: Vec<f64> = (0..10)
            .map(|i| goertzel(&x[i * 400..(i + 1) * 400], 440.0, rate))
            .collect();
        assert!(segs[0] < 100.0 && segs[1] > 6000.0 && segs[2] < 100.0);
        assert!(segs[3] > 6000.0 && segs[4] < 100.0 && segs[5] > 6000.0);
        // All `!`: ends.
        let (x, ended) = render("!440/100,!0/100", rate, 160, 10 * 8000);
        assert!(ended);
        assert_eq!(x.len(), 1600);
        // A part without duration lasts for ever (us "info").
        let (x, ended) = render(lookup("us", "info").unwrap(), rate, 160, 5 * 8000);
        assert!(!ended);
        assert!(x[990 * 8..].iter().all(|&s| s == 0));
        assert!(goertzel(&x[660 * 8..990 * 8], 1800.0, rate) > 0.9 * TONE_AMPLITUDE);
        // Silence parts are exactly zero.
        let (x, ended) = render("!0/100", rate, 160, 8000);
        assert!(ended && x.len() == 800 && x.iter().all(|&s| s == 0));
    }

    #[test]
    fn no_clicks() {
        let specs = [
            "!1000/100,!0/50,!500/30",
            "350+440/750,440/750",
            "950/330,1400/330,1800/330,0/1000",
            "950/330,0/15,1400/330,0/15,1800/330,0/1000",
            "440/100,440/100",
            "440/100,0/100",
            "350+440/37,0/13",
            "!425/100,!0/100,!425/100,!0/100,425",
            "600*120/100,0/100,440/100",
            "500*100/250,0/250",
            "413+438/100,0/40",
            "!440/1",
        ];
        for rate in [8000u32, 16000, 48000] {
            let ramp = f64::from((rate * RAMP_MS / 1000).max(1));
            for s in specs {
                let spec = ToneSpec::parse(s).unwrap();
                let fmax = spec
                    .parts()
                    .iter()
                    .map(|p| f64::from(p.freq1) + f64::from(p.freq2))
                    .fold(0.0, f64::max);
                let part_min = spec
                    .parts()
                    .iter()
                    .map(|p| p.duration_ms)
                    .filter(|&d| d != 0)
                    .min()
                    .unwrap_or(1000);
                let r = ramp.min(f64::from(part_min * rate / 1000 / 2));
                let bound = TONE_AMPLITUDE
                    * (std::f64::consts::TAU * fmax / f64::from(rate) + 2.0 / r)
                    + 4.0;
                let (x, _) = render(s, rate, 37, 3 * rate as usize);
                let d = max_delta(&x);
                assert!(f64::from(d) <= bound, "{s} at {rate}: delta {d} > {bound}");
                // Framing does not change the signal.
                let (y, _) = render(s, rate, 160, 3 * rate as usize);
                let (z, _) = render(s, rate, 1, 3 * rate as usize);
                let n = x.len().min(y.len()).min(z.len());
                assert_eq!(&x[..n], &y[..n], "{s}");
                assert_eq!(&x[..n], &z[..n], "{s}");
            }
        }
        // The bound is meaningful: cutting 440 Hz off would exceed it.
        let bound = TONE_AMPLITUDE * (std::f64::consts::TAU * 440.0 / 8000.0 + 2.0 / 16.0) + 4.0;
        assert!(bound < TONE_AMPLITUDE * 0.9);
    }
}
