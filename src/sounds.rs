//! `sound:` media: the index of the prompt files under `sounds.path`, the
//! choice of a file for a channel, and the decoders of the file formats.
//!
//! **Layout, as Asterisk's** (`main/sounds.c`, `main/media_index.c`): every
//! directory directly under a sounds root is a language (symbolic links
//! followed); a sound's id is its path relative to the language directory
//! without the extension (`beep`, `digits/1`). The Debian packages
//! (`asterisk-core-sounds-en-wav`, `-fr-wav`, `-en-g722`, ...) install a voice
//! folder (`en_US_f_Allison`, `fr_CA_f_June`) and link the languages to it
//! with update-alternatives (`en`, `en_US` -> `en_US_f_Allison`): Asterisk
//! lists every one of these names as a language, and so does crossbar.
//!
//! **Formats** are named as Asterisk names a file's format (its
//! `ast_get_format_for_file_ext`): `.wav` is `slin`, `.wav16` `slin16`,
//! `.sln`/`.slin`/`.raw` `slin`, `.sln16` `slin16`, `.sln48` `slin48`,
//! `.ulaw`/`.ul`/`.pcm`/`.mu`/`.ulw` `ulaw`, `.alaw`/`.al`/`.alw` `alaw`,
//! `.g722` `g722`. GSM (`.gsm`, `.wav49`) is not carried by crossbar and
//! such files are not indexed. Unlike Asterisk's format_wav (8 kHz only in
//! `.wav`, 16 kHz only in `.wav16`), a WAV file is decoded at whatever rate
//! its header gives (8, 16 or 48 kHz).
//!
//! **Descriptions** (`text`) come from `*.txt` files in the language
//! directories (`id: words`, `;` comments, lines without `:` continuing the
//! previous one), and, as in Asterisk's `create_sound_blob`, only the `en`
//! description is shown. The Debian packages ship none, so `text` is absent.
//!
//! **Choice of a file** (Asterisk's `fileexists_core` then
//! `ast_translator_best_choice`): languages are tried as the preferred one,
//! then with each `_suffix` removed (`en_US_f_Allison`, `en_US`, `en`), then
//! the root itself (files with no language), then `en`; the first language
//! that has the sound in any format wins. Among its formats the channel's own
//! format wins, else the cheapest translation path by Asterisk's translation
//! cost classes (`AST_TRANS_COST_*`), then the fewest steps, then the
//! smallest sample-rate gap.
//!
//! **When scanned**: once per process and set of roots ([`index_for`]), on
//! first use; Asterisk rescans at every request, crossbar needs a restart to
//! see new files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::codec::g711;
use crate::codec::g722::G722Decoder;
use crate::media::Format;

/// The language Asterisk falls back to (`DEFAULT_LANGUAGE`).
pub const DEFAULT_LANGUAGE: &str = "en";

/// How deep the scan descends below a language directory (a guard against
/// symbolic link loops).
const MAX_DEPTH: usize = 16;

/// A sound file format crossbar reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileFormat {
    /// RIFF WAVE, PCM 16-bit mono (`.wav`; Asterisk's `wav`, format slin).
    Wav,
    /// RIFF WAVE at 16 kHz (`.wav16`; format slin16).
    Wav16,
    /// Raw signed linear 8 kHz, little-endian (`.sln`, `.slin`, `.raw`).
    Sln,
    /// Raw signed linear 16 kHz (`.sln16`).
    Sln16,
    /// Raw signed linear 48 kHz (`.sln48`).
    Sln48,
    /// Raw G.711 µ-law (`.ulaw`, `.ul`, `.pcm`, `.mu`, `.ulw`).
    Ulaw,
    /// Raw G.711 A-law (`.alaw`, `.al`, `.alw`).
    Alaw,
    /// Raw G.722 (`.g722`).
    G722,
}

impl FileFormat {
    /// The format of a file extension (without the dot), as Asterisk's
    /// format modules register them; `None` for others (`.gsm`, `.txt`).
    pub fn from_ext(ext: &str) -> Option<FileFormat> {
        Some(match ext {
            "wav" => FileFormat::Wav,
            "wav16" => FileFormat::Wav16,
            "sln" | "slin" | "raw" => FileFormat::Sln,
            "sln16" => FileFormat::Sln16,
            "sln48" => FileFormat::Sln48,
            "ulaw" | "ul" | "pcm" | "mu" | "ulw" => FileFormat::Ulaw,
            "alaw" | "al" | "alw" => FileFormat::Alaw,
            "g722" => FileFormat::G722,
            _ => return None,
        })
    }

    /// The media format Asterisk gives such a file (its ARI name is the
    /// `format` of a `FormatLangPair`).
    pub fn format(self) -> Format {
        match self {
            FileFormat::Wav | FileFormat::Sln => Format::Slin,
            FileFormat::Wav16 | FileFormat::Sln16 => Format::Slin16,
            FileFormat::Sln48 => Format::Slin48,
            FileFormat::Ulaw => Format::Ulaw,
            FileFormat::Alaw => Format::Alaw,
            FileFormat::G722 => Format::G722,
        }
    }
}

/// One file of a sound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoundFile {
    pub path: PathBuf,
    pub format: FileFormat,
}

/// A sound: its files per language (`""` for files directly in a root,
/// which playback finds but the listing does not show, as in Asterisk).
#[derive(Clone, Debug, Default)]
pub struct Sound {
    /// Language -> files, at most one per media format (the first root and
    /// the first extension found win).
    pub languages: BTreeMap<String, Vec<SoundFile>>,
    /// Language -> description.
    pub text: BTreeMap<String, String>,
}

impl Sound {
    fn add(&mut self, lang: &str, file: SoundFile) {
        let files = self.languages.entry(lang.to_string()).or_default();
        if files
            .iter()
            .all(|f| f.format.format() != file.format.format())
        {
            files.push(file);
            files.sort_by_key(|f| f.format);
        }
    }
}

/// The sounds under a set of roots.
#[derive(Clone, Debug, Default)]
pub struct SoundIndex {
    sounds: BTreeMap<String, Sound>,
}

impl SoundIndex {
    /// Scans `roots` (missing or unreadable directories are skipped).
    pub fn scan(roots: &[PathBuf]) -> SoundIndex {
        let mut index = SoundIndex::default();
        for root in roots {
            // Files directly in the root: no language.
            index.scan_dir(root, "", "", 0, false);
            let Ok(entries) = std::fs::read_dir(root) else {
                tracing::warn!(root = %root.display(), "sounds: cannot read directory");
                continue;
            };
            let mut langs: Vec<String> = entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            langs.sort();
            for lang in langs {
                index.scan_dir(&root.join(&lang), &lang, "", 0, true);
            }
        }
        // Descriptions of sounds with no file are dropped (Asterisk shows no
        // sound without a format).
        index.sounds.retain(|_, s| !s.languages.is_empty());
        index
    }

    fn scan_dir(&mut self, dir: &Path, lang: &str, prefix: &str, depth: usize, recurse: bool) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = entry.path();
            if path.is_dir() {
                if recurse && depth < MAX_DEPTH {
                    let sub = format!("{prefix}{name}/");
                    self.scan_dir(&path, lang, &sub, depth + 1, true);
                }
                continue;
            }
            let Some((stem, ext)) = name.rsplit_once('.') else {
                continue;
            };
            if stem.is_empty() {
                continue;
            }
            if ext == "txt" {
                if !lang.is_empty() {
                    if let Ok(text) = std::fs::read(&path) {
                        self.add_descriptions(lang, &String::from_utf8_lossy(&text));
                    }
                }
                continue;
            }
            if let Some(format) = FileFormat::from_ext(ext) {
                self.add(&format!("{prefix}{stem}"), lang, SoundFile { path, format });
            }
        }
    }

    /// Adds one file of sound `id` in `lang`.
    pub fn add(&mut self, id: &str, lang: &str, file: SoundFile) {
        self.sounds
            .entry(id.to_string())
            .or_default()
            .add(lang, file);
    }

    /// Reads a description file's `id: text` entries for `lang`, as
    /// Asterisk's `process_description_file`.
    pub fn add_descriptions(&mut self, lang: &str, text: &str) {
        let mut current: Option<(String, String)> = None;
        let flush = |this: &mut SoundIndex, entry: Option<(String, String)>| {
            if let Some((id, text)) = entry {
                if !text.is_empty() {
                    let sound = this.sounds.entry(id).or_default();
                    sound.text.insert(lang.to_string(), text);
                }
            }
        };
        for line in text.lines() {
            if line.starts_with(';') {
                continue;
            }
            let line = line.trim_end();
            match line.split_once(':') {
                None => {
                    if let Some((_, text)) = current.as_mut() {
                        text.push('\n');
                        text.push_str(line);
                    }
                }
                Some((id, text)) => {
                    flush(self, current.take());
                    current = Some((id.to_string(), text.trim_start().to_string()));
                }
            }
        }
        flush(self, current.take());
    }

    /// A sound by id.
    pub fn get(&self, id: &str) -> Option<&Sound> {
        self.sounds.get(id)
    }

    /// Every sound id, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.sounds.keys().map(String::as_str)
    }

    /// The `Sound` JSON of `id` (Asterisk's `create_sound_blob`), its
    /// formats filtered by language and format name when given; `None` when
    /// the sound is unknown or nothing passes the filters.
    pub fn sound_json(&self, id: &str, lang: Option<&str>, format: Option<&str>) -> Option<Value> {
        let sound = self.sounds.get(id)?;
        let mut formats = Vec::new();
        for (language, files) in &sound.languages {
            if language.is_empty() || lang.is_some_and(|l| l != language) {
                continue;
            }
            for file in files {
                let name = file.format.format().name();
                if format.is_some_and(|f| f != name) {
                    continue;
                }
                formats.push(json!({"language": language, "format": name}));
            }
        }
        if formats.is_empty() {
            return None;
        }
        let mut v = json!({"id": id});
        if let Some(text) = sound.text.get(DEFAULT_LANGUAGE) {
            v["text"] = json!(text);
        }
        v["formats"] = Value::Array(formats);
        Some(v)
    }

    /// Every sound's JSON that passes the filters (`GET /sounds`).
    pub fn list_json(&self, lang: Option<&str>, format: Option<&str>) -> Vec<Value> {
        self.ids()
            .filter_map(|id| self.sound_json(id, lang, format))
            .collect()
    }

    /// The file to play for `id` to a channel of `language` and `channel`
    /// format (see the module docs), or `None` when there is none.
    pub fn pick(&self, id: &str, language: &str, channel: Format) -> Option<&SoundFile> {
        let sound = self.sounds.get(id)?;
        let files = language_order(language)
            .into_iter()
            .find_map(|l| sound.languages.get(&l).filter(|f| !f.is_empty()))?;
        files
            .iter()
            .min_by_key(|f| choice_key(f.format.format(), channel))
    }
}

/// The languages tried for `preferred`, in Asterisk's order.
pub fn language_order(preferred: &str) -> Vec<String> {
    let mut order = Vec::new();
    let mut lang = preferred;
    while !lang.is_empty() {
        order.push(lang.to_string());
        match lang.rfind('_') {
            Some(end) => lang = &lang[..end],
            None => break,
        }
    }
    order.push(String::new());
    if preferred != DEFAULT_LANGUAGE && lang != DEFAULT_LANGUAGE {
        order.push(DEFAULT_LANGUAGE.to_string());
    }
    order
}

// Asterisk's translation cost classes (include/asterisk/translate.h).
const LL_LL_ORIGSAMP: u32 = 400_000;
const LL_LY_ORIGSAMP: u32 = 600_000;
const LL_LL_UPSAMP: u32 = 800_000;
const LL_LY_UPSAMP: u32 = 825_000;
const LL_LL_DOWNSAMP: u32 = 850_000;
const LY_LL_ORIGSAMP: u32 = 900_000;
const LY_LY_ORIGSAMP: u32 = 915_000;
const LY_LL_DOWNSAMP: u32 = 960_000;

fn is_linear(f: Format) -> bool {
    matches!(f, Format::Slin | Format::Slin16 | Format::Slin48)
}

/// The cost of Asterisk's one-step translator from `src` to `dst`, if it
/// has one (codec_ulaw, codec_alaw, codec_a_mu, codec_g722, codec_resample;
/// Opus as codec_opus, to and from slin48).
fn step_cost(src: Format, dst: Format) -> Option<u32> {
    use Format::*;
    if is_linear(src) && is_linear(dst) {
        return Some(match src.sample_rate().cmp(&dst.sample_rate()) {
            std::cmp::Ordering::Less => LL_LL_UPSAMP,
            std::cmp::Ordering::Greater => LL_LL_DOWNSAMP,
            std::cmp::Ordering::Equal => LL_LL_ORIGSAMP,
        });
    }
    Some(match (src, dst) {
        (Ulaw | Alaw, Slin) => LY_LL_ORIGSAMP,
        (Slin, Ulaw | Alaw) => LL_LY_ORIGSAMP,
        (Ulaw, Alaw) | (Alaw, Ulaw) => LY_LY_ORIGSAMP,
        (G722, Slin16) => LY_LL_ORIGSAMP,
        (G722, Slin) => LY_LL_DOWNSAMP,
        (Slin16, G722) => LL_LY_ORIGSAMP,
        (Slin, G722) => LL_LY_UPSAMP,
        (Opus, Slin48) => LY_LL_ORIGSAMP,
        (Slin48, Opus) => LL_LY_ORIGSAMP,
        _ => return None,
    })
}

/// The cheapest translation path from `src` to `dst`: (cost, steps), by
/// exhaustive search over the seven formats (paths of at most 4 steps).
fn path_cost(src: Format, dst: Format) -> (u32, u32) {
    if src == dst {
        return (0, 0);
    }
    let mut best = (u32::MAX, u32::MAX);
    fn walk(at: Format, dst: Format, cost: u32, steps: u32, seen: u8, best: &mut (u32, u32)) {
        if at == dst {
            *best = (*best).min((cost, steps));
            return;
        }
        if steps >= 4 {
            return;
        }
        for (i, next) in Format::ALL.into_iter().enumerate() {
            if seen & (1 << i) != 0 {
                continue;
            }
            if let Some(c) = step_cost(at, next) {
                walk(next, dst, cost + c, steps + 1, seen | (1 << i), best);
            }
        }
    }
    let start = Format::ALL.iter().position(|f| *f == src).unwrap_or(0);
    walk(src, dst, 0, 0, 1 << start, &mut best);
    best
}

/// Smaller is better: the channel's own format, then the cheapest path,
/// the fewest steps, the smallest rate gap.
fn choice_key(file: Format, channel: Format) -> (u32, u32, u32) {
    let (cost, steps) = path_cost(file, channel);
    (
        cost,
        steps,
        file.sample_rate().abs_diff(channel.sample_rate()),
    )
}

/// Decoded audio: mono samples at `rate` Hz.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pcm {
    pub rate: u32,
    pub samples: Vec<i16>,
}

/// Why a sound file cannot be played.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SoundError {
    /// The file could not be read.
    Io(String),
    /// The file is not a valid file of its format.
    Malformed(&'static str),
    /// A valid WAV file crossbar does not play (not PCM 16-bit mono at 8,
    /// 16 or 48 kHz).
    Unsupported(String),
}

impl fmt::Display for SoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SoundError::Io(e) => write!(f, "cannot read sound file: {e}"),
            SoundError::Malformed(why) => write!(f, "malformed sound file: {why}"),
            SoundError::Unsupported(why) => write!(f, "unsupported sound file: {why}"),
        }
    }
}

impl std::error::Error for SoundError {}

/// Reads and decodes `file`.
pub fn load(file: &SoundFile) -> Result<Pcm, SoundError> {
    let bytes = std::fs::read(&file.path).map_err(|e| SoundError::Io(e.to_string()))?;
    decode(file.format, &bytes)
}

/// Decoded sounds kept for the process, up to [`CACHE_SAMPLES`] in all:
/// prompts play again and again, and reading and decoding them each time
/// would hold the control thread for nothing.
pub const CACHE_SAMPLES: usize = 16 * 1024 * 1024;

/// [`load`], through a cache of decoded files (whole cache dropped when
/// it would grow past [`CACHE_SAMPLES`]; a file larger than that is not
/// kept).
pub fn load_shared(file: &SoundFile) -> Result<(u32, Arc<[i16]>), SoundError> {
    type Cache = Mutex<(usize, BTreeMap<PathBuf, (u32, Arc<[i16]>)>)>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some((rate, pcm)) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .1
        .get(&file.path)
    {
        return Ok((*rate, Arc::clone(pcm)));
    }
    let Pcm { rate, samples } = load(file)?;
    let pcm: Arc<[i16]> = samples.into();
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if pcm.len() <= CACHE_SAMPLES {
        if c.0 + pcm.len() > CACHE_SAMPLES {
            c.1.clear();
            c.0 = 0;
        }
        c.0 += pcm.len();
        c.1.insert(file.path.clone(), (rate, Arc::clone(&pcm)));
    }
    Ok((rate, pcm))
}

/// Decodes the bytes of a file of `format`. Raw linear files are
/// little-endian (Asterisk writes host order); a trailing odd byte is
/// ignored.
pub fn decode(format: FileFormat, bytes: &[u8]) -> Result<Pcm, SoundError> {
    match format {
        FileFormat::Wav | FileFormat::Wav16 => decode_wav(bytes),
        FileFormat::Sln => Ok(linear(8000, bytes)),
        FileFormat::Sln16 => Ok(linear(16000, bytes)),
        FileFormat::Sln48 => Ok(linear(48000, bytes)),
        FileFormat::Ulaw | FileFormat::Alaw => {
            let mut samples = vec![0i16; bytes.len()];
            let res = if format == FileFormat::Ulaw {
                g711::decode_ulaw(bytes, &mut samples)
            } else {
                g711::decode_alaw(bytes, &mut samples)
            };
            res.map_err(|_| SoundError::Malformed("G.711 decoding failed"))?;
            Ok(Pcm {
                rate: 8000,
                samples,
            })
        }
        FileFormat::G722 => {
            let mut samples = vec![0i16; bytes.len() * 2];
            G722Decoder::new()
                .decode(bytes, &mut samples)
                .map_err(|_| SoundError::Malformed("G.722 decoding failed"))?;
            Ok(Pcm {
                rate: 16000,
                samples,
            })
        }
    }
}

fn linear(rate: u32, bytes: &[u8]) -> Pcm {
    Pcm {
        rate,
        samples: bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a RIFF WAVE file: PCM (format 1) 16-bit mono at 8, 16 or 48 kHz.
/// A `data` chunk longer than the file (a header never fixed up after
/// writing) is read up to the end of the file.
pub fn decode_wav(bytes: &[u8]) -> Result<Pcm, SoundError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(SoundError::Malformed("not a RIFF WAVE file"));
    }
    let mut at = 12usize;
    let mut rate = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = le32(bytes, at + 4).ok_or(SoundError::Malformed("truncated chunk"))? as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                let end = body
                    .checked_add(size)
                    .filter(|&e| e <= bytes.len() && size >= 16)
                    .ok_or(SoundError::Malformed("bad fmt chunk"))?;
                let fmt = &bytes[body..end];
                let tag = le16(fmt, 0).unwrap_or(0);
                let channels = le16(fmt, 2).unwrap_or(0);
                let hz = le32(fmt, 4).unwrap_or(0);
                let block_align = le16(fmt, 12).unwrap_or(0);
                let bits = le16(fmt, 14).unwrap_or(0);
                if tag != 1 {
                    return Err(SoundError::Unsupported(format!(
                        "WAV format tag {tag} (only PCM)"
                    )));
                }
                if channels != 1 || bits != 16 || block_align != 2 {
                    return Err(SoundError::Unsupported(format!(
                        "{channels} channel(s) of {bits} bits (only 16-bit mono)"
                    )));
                }
                if !matches!(hz, 8000 | 16000 | 48000) {
                    return Err(SoundError::Unsupported(format!(
                        "{hz} Hz (only 8, 16 or 48 kHz)"
                    )));
                }
                rate = Some(hz);
            }
            b"data" => {
                let rate = rate.ok_or(SoundError::Malformed("data chunk before fmt chunk"))?;
                let end = body.saturating_add(size).min(bytes.len());
                return Ok(linear(rate, &bytes[body..end]));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body
            .checked_add(size)
            .and_then(|e| e.checked_add(size & 1))
            .ok_or(SoundError::Malformed("bad chunk size"))?;
    }
    Err(SoundError::Malformed("no data chunk"))
}

/// The sound id of a media URI (`sound:digits/1` -> `digits/1`).
pub fn sound_id(media: &str) -> Option<&str> {
    media.strip_prefix("sound:").filter(|id| !id.is_empty())
}

/// The index of `roots`, scanned on first use and kept for the process
/// (the node's configuration does not change while it runs).
pub fn index_for(roots: &[PathBuf]) -> Arc<SoundIndex> {
    type Cache = Mutex<Vec<(Vec<PathBuf>, Arc<SoundIndex>)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, index)) = cache.iter().find(|(r, _)| r == roots) {
        return Arc::clone(index);
    }
    let index = Arc::new(SoundIndex::scan(roots));
    cache.push((roots.to_vec(), Arc::clone(&index)));
    index
}

/// Music on hold: the audio of class `class` under `root` (`sounds.moh_path`):
/// the files directly in `root` for `default`, those of the subdirectory
/// `class` otherwise; one file per name (the cheapest format to decode:
/// WAV first), in name order, joined, at the first file's rate (the others
/// resampled to it). Read once per class and kept for the process; `None`
/// when the class has no playable file.
pub fn moh_class(root: &Path, class: &str) -> Option<(u32, Arc<[i16]>)> {
    type Cache = Mutex<BTreeMap<(PathBuf, String), (u32, Arc<[i16]>)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    if class.is_empty() || class.contains('/') || class.starts_with('.') {
        return None;
    }
    let cache = CACHE.get_or_init(Default::default);
    let key = (root.to_path_buf(), class.to_string());
    if let Some((rate, pcm)) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Some((*rate, Arc::clone(pcm)));
    }
    let dir = if class == "default" {
        root.to_path_buf()
    } else {
        root.join(class)
    };
    let mut files: BTreeMap<String, (FileFormat, PathBuf)> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let (Some(stem), Some(format)) = (
            path.file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string),
            path.extension()
                .and_then(|e| e.to_str())
                .and_then(FileFormat::from_ext),
        ) else {
            continue;
        };
        let better = files.get(&stem).is_none_or(|(f, _)| format < *f);
        if better {
            files.insert(stem, (format, path));
        }
    }
    let mut rate = None;
    let mut all: Vec<i16> = Vec::new();
    for (format, path) in files.into_values() {
        let Ok(Pcm {
            rate: from,
            samples,
        }) = load(&SoundFile { path, format })
        else {
            continue;
        };
        let to = *rate.get_or_insert(from);
        if from == to {
            all.extend_from_slice(&samples);
        } else if let Ok(mut r) = crate::codec::Resampler::new(from, to) {
            let mut out = vec![0i16; r.output_len(samples.len())];
            if let Ok(n) = r.process(&samples, &mut out) {
                all.extend_from_slice(&out[..n]);
            }
        }
    }
    let rate = rate.filter(|_| !all.is_empty())?;
    let pcm: Arc<[i16]> = all.into();
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, (rate, Arc::clone(&pcm)));
    Some((rate, pcm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn temp_dir() -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("crossbar-sounds-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A PCM 16-bit mono WAV of `samples` at `rate`.
    pub fn wav(rate: u32, samples: &[i16]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2).to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&data);
        v
    }

    fn put(dir: &Path, rel: &str, bytes: &[u8]) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn sample_tree() -> PathBuf {
        let dir = temp_dir();
        put(&dir, "en/beep.wav", &wav(8000, &[1, 2, 3]));
        put(&dir, "en/beep.g722", &[0u8; 10]);
        put(&dir, "en/beep.gsm", &[0u8; 33]);
        put(&dir, "en/digits/1.ulaw", &[0xff; 8]);
        put(&dir, "en/digits/1.sln16", &[0; 8]);
        put(
            &dir,
            "en/core-sounds-en.txt",
            b"; comment\nbeep: A beep.\ndigits/1: one\nmore\nghost: no file\n",
        );
        put(&dir, "fr/beep.alaw", &[0xd5; 8]);
        put(&dir, "fr/vm-intro.sln", &[0; 4]);
        put(&dir, "root-only.wav", &wav(8000, &[0]));
        put(&dir, "en/README", b"no extension");
        dir
    }

    #[test]
    fn the_index_has_ids_languages_formats_and_english_text() {
        let dir = sample_tree();
        let index = SoundIndex::scan(std::slice::from_ref(&dir));
        let ids: Vec<&str> = index.ids().collect();
        assert_eq!(ids, ["beep", "digits/1", "root-only", "vm-intro"]);
        assert_eq!(
            index.sound_json("beep", None, None).unwrap(),
            json!({"id": "beep", "text": "A beep.", "formats": [
                {"language": "en", "format": "slin"},
                {"language": "en", "format": "g722"},
                {"language": "fr", "format": "alaw"},
            ]})
        );
        assert_eq!(
            index.sound_json("digits/1", None, None).unwrap()["text"],
            json!("one\nmore")
        );
        // French only: no English text for it, no `text` key.
        assert_eq!(
            index.sound_json("vm-intro", None, None).unwrap(),
            json!({"id": "vm-intro", "formats": [{"language": "fr", "format": "slin"}]})
        );
        // Root files play but are not listed; descriptions without files are dropped.
        assert!(index.sound_json("root-only", None, None).is_none());
        assert!(index.get("ghost").is_none());
        // Filters.
        assert_eq!(index.list_json(Some("fr"), None).len(), 2);
        assert_eq!(
            index.sound_json("beep", Some("en"), Some("g722")).unwrap()["formats"],
            json!([{"language": "en", "format": "g722"}])
        );
        assert!(index.sound_json("beep", Some("de"), None).is_none());
        assert_eq!(index.list_json(None, Some("ulaw")).len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn symlinked_language_folders_are_languages_too() {
        let dir = temp_dir();
        put(&dir, "en_US_f_Allison/beep.wav", &wav(8000, &[0]));
        std::os::unix::fs::symlink(dir.join("en_US_f_Allison"), dir.join("en")).unwrap();
        let index = SoundIndex::scan(&[dir.clone(), dir.join("missing")]);
        let langs: Vec<&String> = index.get("beep").unwrap().languages.keys().collect();
        assert_eq!(langs, ["en", "en_US_f_Allison"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn language_fallback_is_asterisks() {
        assert_eq!(
            language_order("en_US_f_Allison"),
            ["en_US_f_Allison", "en_US_f", "en_US", "en", ""]
        );
        assert_eq!(language_order("fr_CA"), ["fr_CA", "fr", "", "en"]);
        assert_eq!(language_order(""), ["", "en"]);
    }

    #[test]
    fn pick_prefers_the_channel_format_then_the_cheapest_translation() {
        let dir = sample_tree();
        let index = SoundIndex::scan(std::slice::from_ref(&dir));
        let pick = |id, lang, f| index.pick(id, lang, f).map(|s| s.format);
        assert_eq!(pick("beep", "en", Format::G722), Some(FileFormat::G722));
        assert_eq!(pick("beep", "en", Format::Ulaw), Some(FileFormat::Wav));
        assert_eq!(pick("beep", "en", Format::Slin16), Some(FileFormat::Wav));
        assert_eq!(pick("beep", "en", Format::Slin48), Some(FileFormat::Wav));
        assert_eq!(pick("digits/1", "en", Format::Ulaw), Some(FileFormat::Ulaw));
        assert_eq!(
            pick("digits/1", "en", Format::G722),
            Some(FileFormat::Sln16)
        );
        assert_eq!(pick("digits/1", "en", Format::Alaw), Some(FileFormat::Ulaw));
        // fr_CA -> fr; German falls back to English; root files for anyone.
        assert_eq!(pick("beep", "fr_CA", Format::Ulaw), Some(FileFormat::Alaw));
        assert_eq!(
            pick("digits/1", "de", Format::Slin),
            Some(FileFormat::Sln16)
        );
        assert_eq!(pick("root-only", "fr", Format::Ulaw), Some(FileFormat::Wav));
        assert_eq!(pick("vm-intro", "en", Format::Ulaw), None);
        assert_eq!(pick("nope", "en", Format::Ulaw), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn decoders() {
        let pcm = decode(FileFormat::Wav, &wav(16000, &[1, -2, 300])).unwrap();
        assert_eq!(
            pcm,
            Pcm {
                rate: 16000,
                samples: vec![1, -2, 300]
            }
        );
        assert_eq!(
            decode(FileFormat::Wav16, &wav(48000, &[7])).unwrap().rate,
            48000
        );
        assert_eq!(
            decode(FileFormat::Sln16, &[1, 0, 0xff, 0xff, 9]).unwrap(),
            Pcm {
                rate: 16000,
                samples: vec![1, -1]
            }
        );
        assert_eq!(decode(FileFormat::Sln48, &[]).unwrap().rate, 48000);
        let u = decode(FileFormat::Ulaw, &[0xff, 0x7f]).unwrap();
        assert_eq!((u.rate, u.samples), (8000, vec![0, 0]));
        let a = decode(FileFormat::Alaw, &[0xd5]).unwrap();
        assert_eq!(a.samples.len(), 1);
        assert!(a.samples[0].abs() < 16);
        let g = decode(FileFormat::G722, &[0u8; 80]).unwrap();
        assert_eq!((g.rate, g.samples.len()), (16000, 160));
        // A WAV with an extra chunk before data and an oversized data chunk.
        let mut w = wav(8000, &[5, 6]);
        w.splice(36..36, b"LIST\x03\x00\x00\x00abc\x00".iter().copied());
        let len = w.len();
        w[len - 8..len - 4].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(decode_wav(&w).unwrap().samples, [5, 6]);
    }

    #[test]
    fn malformed_wavs_are_refused() {
        let good = wav(8000, &[1, 2]);
        assert!(matches!(decode_wav(b""), Err(SoundError::Malformed(_))));
        assert!(matches!(
            decode_wav(&good[..11]),
            Err(SoundError::Malformed(_))
        ));
        let mut not_wave = good.clone();
        not_wave[8..12].copy_from_slice(b"AVI ");
        assert!(matches!(
            decode_wav(&not_wave),
            Err(SoundError::Malformed(_))
        ));
        // fmt chunk claiming more bytes than the file has.
        let mut big_fmt = good.clone();
        big_fmt[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_wav(&big_fmt),
            Err(SoundError::Malformed(_))
        ));
        // Short fmt chunk.
        let mut short_fmt = good.clone();
        short_fmt[16..20].copy_from_slice(&4u32.to_le_bytes());
        assert!(decode_wav(&short_fmt).is_err());
        // Header only: no data chunk.
        assert!(matches!(
            decode_wav(&good[..36]),
            Err(SoundError::Malformed(_))
        ));
        // data before fmt.
        let mut data_first = b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\x01\x02".to_vec();
        data_first.extend_from_slice(&good[12..36]);
        assert!(matches!(
            decode_wav(&data_first),
            Err(SoundError::Malformed(_))
        ));
        // Stereo, 8-bit, 44.1 kHz, float.
        let mut stereo = good.clone();
        stereo[22] = 2;
        assert!(matches!(
            decode_wav(&stereo),
            Err(SoundError::Unsupported(_))
        ));
        let mut eight_bit = good.clone();
        eight_bit[34] = 8;
        assert!(matches!(
            decode_wav(&eight_bit),
            Err(SoundError::Unsupported(_))
        ));
        assert!(matches!(
            decode_wav(&wav(44100, &[0])),
            Err(SoundError::Unsupported(_))
        ));
        let mut float = good.clone();
        float[20] = 3;
        assert!(matches!(
            decode_wav(&float),
            Err(SoundError::Unsupported(_))
        ));
        // Every truncation of a good file: an error or a prefix, never a panic.
        for n in 0..good.len() {
            let _ = decode_wav(&good[..n]);
        }
    }

    #[test]
    fn sound_uris() {
        assert_eq!(sound_id("sound:digits/1"), Some("digits/1"));
        assert_eq!(sound_id("sound:"), None);
        assert_eq!(sound_id("recording:x"), None);
    }

    #[test]
    fn the_debian_packages_are_indexed_when_installed() {
        let root = PathBuf::from("/usr/share/asterisk/sounds");
        if !root.join("en").is_dir() {
            return;
        }
        let index = index_for(std::slice::from_ref(&root));
        let beep = index.pick("beep", "en", Format::Ulaw).expect("beep");
        let pcm = load(beep).unwrap();
        assert_eq!(pcm.rate, 8000);
        assert!(!pcm.samples.is_empty());
    }
}
