//! Codecs per 20 ms frame (encode and decode), the resampler, and the
//! two-party transcoder.

use criterion::{criterion_group, criterion_main, Criterion};
use crossbar::codec::{g711, g722, l16, opus, Resampler, Transcoder};
use crossbar::media::Format;
use std::hint::black_box;

fn tone(rate: u32, len: usize) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let t = n as f64 / rate as f64;
            (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 1700.0 * t).sin()) as i16
        })
        .collect()
}

fn codecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec_20ms");
    let pcm8 = tone(8000, 160);
    let pcm16 = tone(16000, 320);
    let pcm48 = tone(48000, 960);
    let mut bytes = vec![0u8; 4000];
    let mut pcm = vec![0i16; 5760];

    g.bench_function("ulaw_encode", |b| {
        b.iter(|| g711::encode_ulaw(black_box(&pcm8), &mut bytes).unwrap())
    });
    g711::encode_ulaw(&pcm8, &mut bytes).unwrap();
    let ulaw = bytes[..160].to_vec();
    g.bench_function("ulaw_decode", |b| {
        b.iter(|| g711::decode_ulaw(black_box(&ulaw), &mut pcm).unwrap())
    });
    g.bench_function("alaw_encode", |b| {
        b.iter(|| g711::encode_alaw(black_box(&pcm8), &mut bytes).unwrap())
    });
    g.bench_function("alaw_decode", |b| {
        b.iter(|| g711::decode_alaw(black_box(&ulaw), &mut pcm).unwrap())
    });
    g.bench_function("slin48_encode", |b| {
        b.iter(|| l16::encode(black_box(&pcm48), &mut bytes).unwrap())
    });
    l16::encode(&pcm48, &mut bytes).unwrap();
    let slin48 = bytes[..1920].to_vec();
    g.bench_function("slin48_decode", |b| {
        b.iter(|| l16::decode(black_box(&slin48), &mut pcm).unwrap())
    });

    let mut g722e = g722::G722Encoder::new();
    g.bench_function("g722_encode", |b| {
        b.iter(|| g722e.encode(black_box(&pcm16), &mut bytes).unwrap())
    });
    let n = g722::G722Encoder::new().encode(&pcm16, &mut bytes).unwrap();
    let g722_payload = bytes[..n].to_vec();
    let mut g722d = g722::G722Decoder::new();
    g.bench_function("g722_decode", |b| {
        b.iter(|| g722d.decode(black_box(&g722_payload), &mut pcm).unwrap())
    });

    let mut opus_enc = opus::OpusEncoder::new(opus::DEFAULT_BITRATE).unwrap();
    g.bench_function("opus_encode", |b| {
        b.iter(|| opus_enc.encode(black_box(&pcm48), &mut bytes).unwrap())
    });
    let mut enc = opus::OpusEncoder::new(opus::DEFAULT_BITRATE).unwrap();
    let mut packet = Vec::new();
    for _ in 0..10 {
        let n = enc.encode(&pcm48, &mut bytes).unwrap();
        packet = bytes[..n].to_vec();
    }
    let mut opus_dec = opus::OpusDecoder::new().unwrap();
    g.bench_function("opus_decode", |b| {
        b.iter(|| opus_dec.decode(black_box(&packet), &mut pcm).unwrap())
    });
    g.bench_function("opus_plc", |b| {
        b.iter(|| opus_dec.conceal(&mut pcm[..960]).unwrap())
    });
    g.finish();
}

fn resampler(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample_20ms");
    let mut out = vec![0i16; 5760];
    for (from, to) in [
        (8000, 16000),
        (16000, 8000),
        (8000, 48000),
        (48000, 8000),
        (16000, 48000),
        (48000, 16000),
    ] {
        let input = tone(from, from as usize / 50);
        let mut r = Resampler::new(from, to).unwrap();
        g.bench_function(format!("{}k_to_{}k", from / 1000, to / 1000), |b| {
            b.iter(|| r.process(black_box(&input), &mut out).unwrap())
        });
    }
    g.finish();
}

fn transcoder(c: &mut Criterion) {
    let mut g = c.benchmark_group("transcode_20ms");
    let mut out = vec![0u8; 4000];
    for (from, to) in [
        (Format::Ulaw, Format::Alaw),
        (Format::Ulaw, Format::Opus),
        (Format::Opus, Format::Ulaw),
        (Format::Ulaw, Format::G722),
    ] {
        let mut enc = crossbar::codec::Encoder::new(from).unwrap();
        let pcm = tone(from.sample_rate(), from.sample_rate() as usize / 50);
        let mut payload = vec![0u8; 4000];
        let n = enc.encode(&pcm, &mut payload).unwrap();
        payload.truncate(n);
        let mut t = Transcoder::new(from, to).unwrap();
        g.bench_function(format!("{from}_to_{to}"), |b| {
            b.iter(|| t.transcode(black_box(&payload), &mut out).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, codecs, resampler, transcoder);
criterion_main!(benches);
