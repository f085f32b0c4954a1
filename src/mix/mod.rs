//! The softmix kernel: N-1 mixing of signed-linear frames at the bridge rate.
//!
//! Owns the per-bridge accumulator of one mix tick and the arithmetic kernels
//! that fill and read it. A tick goes:
//! 1. [`Mixer::begin_tick`] clears the accumulator;
//! 2. [`Mixer::add_talker`] once per member that talks this tick (not silent,
//!    not muted) adds its frame into the `i32` total;
//! 3. [`Mixer::talker_mix`] gives each talker `saturate_i16(total − own)`, and
//!    [`Mixer::listener_mix`] gives the one mix every non-talker hears,
//!    `saturate_i16(total)`, computed once per tick and encoded once per codec.
//!
//! Invariants:
//! - Every frame of a tick has exactly [`Mixer::frame_len`] samples; a frame of
//!   another length is refused with [`MixError::FrameLength`] and leaves the
//!   tick untouched. Outputs must hold at least `frame_len` samples; only the
//!   first `frame_len` are written.
//! - Sums are exact: at most [`MAX_TALKERS`] talkers per tick (65,536 × 32,768
//!   fits in `i32`); one more is refused with [`MixError::TooManyTalkers`].
//! - Every kernel ([`Kernel::Scalar`], [`Kernel::Wide`], [`Kernel::Avx2`])
//!   produces bit-identical results; [`Kernel::detect`] picks the fastest the
//!   CPU supports once, at start-up, and the tests prove the equality.
//! - No allocation after construction (except [`Mixer::set_frame_len`] to a
//!   length larger than ever before, which is a control-path operation).

mod kernel;

pub use kernel::Kernel;

use std::fmt;

/// Most talkers one tick can sum without overflowing the `i32` accumulator.
pub const MAX_TALKERS: u32 = 65_536;

/// Why a mixing step was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MixError {
    /// A frame (or output) length does not match the mixer's frame length.
    FrameLength {
        /// The mixer's frame length.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// More than [`MAX_TALKERS`] talkers in one tick.
    TooManyTalkers,
}

impl fmt::Display for MixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MixError::FrameLength { expected, got } => {
                write!(f, "frame of {got} samples, mixer expects {expected}")
            }
            MixError::TooManyTalkers => write!(f, "more than {MAX_TALKERS} talkers in one tick"),
        }
    }
}

impl std::error::Error for MixError {}

/// The mixing state of one bridge: its accumulator and the chosen kernel.
#[derive(Clone, Debug)]
pub struct Mixer {
    total: Vec<i32>,
    frame_len: usize,
    talkers: u32,
    kernel: Kernel,
}

impl Mixer {
    /// A mixer for frames of `frame_len` samples (160, 320, 960 for 20 ms at
    /// 8, 16, 48 kHz) using [`Kernel::detect`].
    pub fn new(frame_len: usize) -> Mixer {
        Mixer::with_kernel(frame_len, Kernel::detect())
    }

    /// A mixer that uses `kernel`; an unsupported kernel falls back to
    /// [`Kernel::detect`].
    pub fn with_kernel(frame_len: usize, kernel: Kernel) -> Mixer {
        let kernel = if kernel.is_supported() {
            kernel
        } else {
            Kernel::detect()
        };
        Mixer {
            total: vec![0; frame_len],
            frame_len,
            talkers: 0,
            kernel,
        }
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Talkers added since the last [`Mixer::begin_tick`].
    pub fn talkers(&self) -> u32 {
        self.talkers
    }

    /// Changes the frame length (bridge rate or ptime changed) and clears the
    /// tick. Allocates only when `frame_len` exceeds every earlier length.
    pub fn set_frame_len(&mut self, frame_len: usize) {
        self.total.resize(frame_len, 0);
        self.frame_len = frame_len;
        self.begin_tick();
    }

    /// Starts a tick: the total becomes silence.
    pub fn begin_tick(&mut self) {
        self.total.fill(0);
        self.talkers = 0;
    }

    /// Adds one talking member's frame to the total.
    pub fn add_talker(&mut self, frame: &[i16]) -> Result<(), MixError> {
        self.check(frame.len())?;
        if self.talkers >= MAX_TALKERS {
            return Err(MixError::TooManyTalkers);
        }
        self.talkers += 1;
        self.kernel.accumulate(&mut self.total, frame);
        Ok(())
    }

    /// Writes what talker `own` hears: `saturate_i16(total − own)`.
    pub fn talker_mix(&self, own: &[i16], out: &mut [i16]) -> Result<(), MixError> {
        self.check(own.len())?;
        let out = self.output(out)?;
        self.kernel.minus_own(&self.total, own, out);
        Ok(())
    }

    /// Writes what every non-talker hears: `saturate_i16(total)`.
    pub fn listener_mix(&self, out: &mut [i16]) -> Result<(), MixError> {
        let out = self.output(out)?;
        self.kernel.saturate(&self.total, out);
        Ok(())
    }

    fn check(&self, len: usize) -> Result<(), MixError> {
        if len == self.frame_len {
            Ok(())
        } else {
            Err(MixError::FrameLength {
                expected: self.frame_len,
                got: len,
            })
        }
    }

    fn output<'a>(&self, out: &'a mut [i16]) -> Result<&'a mut [i16], MixError> {
        let got = out.len();
        out.get_mut(..self.frame_len).ok_or(MixError::FrameLength {
            expected: self.frame_len,
            got,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn random_frame(rng: &mut SmallRng, len: usize) -> Vec<i16> {
        (0..len)
            .map(|_| match rng.random_range(0..8) {
                0 => i16::MAX,
                1 => i16::MIN,
                2 => 0,
                _ => rng.random(),
            })
            .collect()
    }

    fn mix_with(kernel: Kernel, frames: &[Vec<i16>], talking: &[bool]) -> Vec<Vec<i16>> {
        let len = frames[0].len();
        let mut mixer = Mixer::with_kernel(len, kernel);
        assert_eq!(mixer.kernel(), kernel);
        mixer.begin_tick();
        for (f, _) in frames.iter().zip(talking).filter(|(_, t)| **t) {
            mixer.add_talker(f).unwrap();
        }
        let mut outs = Vec::new();
        for (f, &t) in frames.iter().zip(talking) {
            let mut out = vec![0i16; len];
            if t {
                mixer.talker_mix(f, &mut out).unwrap();
            } else {
                mixer.listener_mix(&mut out).unwrap();
            }
            outs.push(out);
        }
        outs
    }

    #[test]
    fn every_kernel_equals_scalar_bit_for_bit() {
        let mut rng = SmallRng::seed_from_u64(0x5eed);
        let kernels: Vec<Kernel> = Kernel::ALL
            .into_iter()
            .filter(|k| k.is_supported())
            .collect();
        for round in 0..300 {
            let len = match round % 5 {
                0 => 160,
                1 => 960,
                _ => rng.random_range(1..200),
            };
            let n = if round < 64 {
                round + 1
            } else {
                rng.random_range(1..=64)
            };
            let frames: Vec<Vec<i16>> = (0..n).map(|_| random_frame(&mut rng, len)).collect();
            let talking: Vec<bool> = (0..n).map(|_| rng.random_range(0..4) != 0).collect();
            let reference = mix_with(Kernel::Scalar, &frames, &talking);
            for &k in &kernels {
                assert_eq!(
                    mix_with(k, &frames, &talking),
                    reference,
                    "{k:?} n={n} len={len}"
                );
            }
        }
    }

    #[test]
    fn saturates_at_the_extremes() {
        for k in Kernel::ALL.into_iter().filter(|k| k.is_supported()) {
            let mut m = Mixer::with_kernel(19, k);
            let loud = [i16::MAX; 19];
            let quiet = [i16::MIN; 19];
            m.add_talker(&loud).unwrap();
            m.add_talker(&loud).unwrap();
            m.add_talker(&quiet).unwrap();
            let mut out = [0i16; 19];
            m.listener_mix(&mut out).unwrap();
            assert_eq!(out, [i16::MAX - 1; 19]); // 32767 + 32767 - 32768
            m.talker_mix(&quiet, &mut out).unwrap();
            assert_eq!(out, [i16::MAX; 19]); // 65534 saturates
            m.talker_mix(&loud, &mut out).unwrap();
            assert_eq!(out, [-1; 19]);
            m.begin_tick();
            m.add_talker(&quiet).unwrap();
            m.add_talker(&quiet).unwrap();
            m.listener_mix(&mut out).unwrap();
            assert_eq!(out, [i16::MIN; 19]);
        }
    }

    #[test]
    fn a_lone_talker_hears_silence_and_listeners_hear_it() {
        let mut m = Mixer::new(8);
        let voice = [100, -200, 300, -400, 500, -600, 700, -800];
        m.add_talker(&voice).unwrap();
        let mut out = [1i16; 8];
        m.talker_mix(&voice, &mut out).unwrap();
        assert_eq!(out, [0; 8]);
        m.listener_mix(&mut out).unwrap();
        assert_eq!(out, voice);
    }

    #[test]
    fn wrong_lengths_are_refused_without_side_effects() {
        let mut m = Mixer::new(160);
        assert_eq!(
            m.add_talker(&[0; 159]),
            Err(MixError::FrameLength {
                expected: 160,
                got: 159
            })
        );
        assert_eq!(m.talkers(), 0);
        let mut short = [0i16; 10];
        assert!(m.listener_mix(&mut short).is_err());
        assert!(m.talker_mix(&[0; 160], &mut short).is_err());
        let mut long = [7i16; 200];
        m.listener_mix(&mut long).unwrap();
        assert!(long[..160].iter().all(|&s| s == 0));
        assert!(long[160..].iter().all(|&s| s == 7));
        m.set_frame_len(320);
        assert_eq!(m.frame_len(), 320);
        assert!(m.add_talker(&[0; 320]).is_ok());
    }

    #[test]
    fn talker_limit() {
        let mut m = Mixer::new(1);
        for _ in 0..MAX_TALKERS {
            m.add_talker(&[i16::MIN]).unwrap();
        }
        assert_eq!(m.add_talker(&[0]), Err(MixError::TooManyTalkers));
        let mut out = [0i16];
        m.listener_mix(&mut out).unwrap();
        assert_eq!(out, [i16::MIN]);
    }
}
