//! Media vocabulary shared by the control plane and the data plane: the audio
//! formats a leg can carry, as ARI names them.

use std::fmt;

/// An audio format of a leg, named as ARI's `format` parameter names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// G.711 µ-law, 8 kHz (PCMU, payload type 0).
    Ulaw,
    /// G.711 A-law, 8 kHz (PCMA, payload type 8).
    Alaw,
    /// Signed linear 16-bit big-endian, 8 kHz.
    Slin,
    /// Signed linear 16-bit big-endian, 16 kHz.
    Slin16,
    /// Signed linear 16-bit big-endian, 48 kHz.
    Slin48,
    /// G.722, 16 kHz audio on an 8 kHz RTP clock.
    G722,
    /// Opus, 48 kHz RTP clock.
    Opus,
}

impl Format {
    /// Every format, in the order api-docs lists them.
    pub const ALL: [Format; 7] = [
        Format::Ulaw,
        Format::Alaw,
        Format::Slin,
        Format::Slin16,
        Format::Slin48,
        Format::G722,
        Format::Opus,
    ];

    /// Whether this build can encode and decode the format (Opus needs the
    /// `opus` cargo feature).
    pub fn is_available(self) -> bool {
        self != Format::Opus || cfg!(feature = "opus")
    }

    /// The formats this build carries.
    pub fn available() -> impl Iterator<Item = Format> {
        Format::ALL.into_iter().filter(|f| f.is_available())
    }

    /// The ARI name (`ulaw`, `slin16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Ulaw => "ulaw",
            Format::Alaw => "alaw",
            Format::Slin => "slin",
            Format::Slin16 => "slin16",
            Format::Slin48 => "slin48",
            Format::G722 => "g722",
            Format::Opus => "opus",
        }
    }

    /// Parses an ARI format name.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The RTP payload type crossbar uses for this format (static types where
    /// RFC 3551 defines one, Asterisk's dynamic choices otherwise).
    pub fn payload_type(self) -> u8 {
        match self {
            Format::Ulaw => 0,
            Format::Alaw => 8,
            Format::G722 => 9,
            Format::Slin => 118,
            Format::Slin16 => 119,
            Format::Slin48 => 120,
            Format::Opus => 111,
        }
    }

    /// The audio sample rate in Hz (G.722 is 16 kHz audio).
    pub fn sample_rate(self) -> u32 {
        match self {
            Format::Ulaw | Format::Alaw | Format::Slin => 8000,
            Format::Slin16 | Format::G722 => 16000,
            Format::Slin48 | Format::Opus => 48000,
        }
    }

    /// The RTP clock rate in Hz (G.722 keeps 8 kHz for historical reasons).
    pub fn clock_rate(self) -> u32 {
        match self {
            Format::G722 => 8000,
            other => other.sample_rate(),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
