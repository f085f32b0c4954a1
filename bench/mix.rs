//! Softmix kernel: one full 20 ms tick (N talkers accumulated, N "total − own"
//! outputs, one listener mix) per kernel, at 8 and 48 kHz.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbar::mix::{Kernel, Mixer};
use std::hint::black_box;

fn frames(n: usize, len: usize) -> Vec<Vec<i16>> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 48) as i16 / 4
                })
                .collect()
        })
        .collect()
}

fn mix_tick(c: &mut Criterion) {
    for (rate, len) in [(8000, 160usize), (48000, 960)] {
        let mut group = c.benchmark_group(format!("mix_tick_{}k", rate / 1000));
        for n in [3usize, 10, 100, 1000] {
            let inputs = frames(n, len);
            let mut outs = vec![vec![0i16; len]; n];
            let mut listener = vec![0i16; len];
            group.throughput(Throughput::Elements((n * len) as u64));
            for kernel in Kernel::ALL.into_iter().filter(|k| k.is_supported()) {
                let mut mixer = Mixer::with_kernel(len, kernel);
                group.bench_with_input(BenchmarkId::new(format!("{kernel:?}"), n), &n, |b, _| {
                    b.iter(|| {
                        mixer.begin_tick();
                        for f in &inputs {
                            mixer.add_talker(black_box(f)).unwrap();
                        }
                        for (f, o) in inputs.iter().zip(outs.iter_mut()) {
                            mixer.talker_mix(f, o).unwrap();
                        }
                        mixer.listener_mix(&mut listener).unwrap();
                        black_box(&listener);
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, mix_tick);
criterion_main!(benches);
