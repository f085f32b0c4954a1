//! The `transcode` scenario: like `relay`, but the two legs of each call are
//! in different formats (`--pair pcmu-pcma` or `pcmu-opus`), so crossbar
//! bridges them with `simple_bridge`: decode → resample → encode, one packet
//! out per packet in. The payload changes, so latency pairs the i-th packet
//! of the server's outgoing stream with the i-th packet the peer sent.
//! Opus needs the tools' `opus` feature (libopus through crossbar's codec).

use crossbar::media::Format;

use crate::opts::MediaOptions;
use crate::relay;
use crate::report::RunReport;

pub fn run(o: &MediaOptions, progress: bool) -> Result<Vec<RunReport>, String> {
    let b = match o.pair.as_str() {
        "opus" if !Format::Opus.is_available() => {
            return Err(
                "--pair pcmu-opus needs crossbar-load built with the `opus` feature (cargo build -p crossbar-tools --features opus)"
                    .into(),
            )
        }
        "opus" => Format::Opus,
        _ => Format::Alaw,
    };
    relay::run(o, "transcode", b, progress)
}
