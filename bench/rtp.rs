//! The relay's per-packet work: RTP parse, and parse + in-place header
//! rewrite with a leg's `OutStream` (what `native_rtp` does to every packet
//! before sending it from the same buffer).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbar::rtp::packet::Header;
use crossbar::rtp::{OutStream, Pt, RtpPacket, RtpPacketMut, RtpTimestamp, SeqNo, Ssrc};
use std::hint::black_box;
use std::time::Instant;

fn packet() -> Vec<u8> {
    let mut p = vec![0u8; 12 + 160];
    Header {
        marker: false,
        pt: Pt(0),
        seq: SeqNo(1000),
        timestamp: RtpTimestamp(160_000),
        ssrc: Ssrc(0x1234_5678),
    }
    .write(&mut p)
    .unwrap();
    p
}

fn rtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("rtp");
    group.throughput(Throughput::Elements(1));
    let p = packet();
    group.bench_function("parse", |b| {
        b.iter(|| {
            let v = RtpPacket::parse(black_box(&p)).unwrap();
            black_box((v.seq(), v.timestamp(), v.ssrc(), v.payload().len()))
        })
    });
    let mut buf = packet();
    let mut out = OutStream::new(Ssrc(42), SeqNo(7), RtpTimestamp(99), 8000);
    let now = Instant::now();
    let mut seq = 1000u16;
    group.bench_function("parse_and_rewrite", |b| {
        b.iter(|| {
            // A new input packet each time: seq and ts advance.
            seq = seq.wrapping_add(1);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            let mut p = RtpPacketMut::parse(black_box(&mut buf)).unwrap();
            black_box(out.rewrite(now, &mut p))
        })
    });
    group.finish();
}

criterion_group!(benches, rtp);
criterion_main!(benches);
