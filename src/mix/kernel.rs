//! The three arithmetic kernels of a mix tick, each in a scalar reference
//! version and SIMD versions that must agree with it bit for bit.
//!
//! - `accumulate`: `total[i] += frame[i]` (i32, wrapping — the caller bounds
//!   the talker count so it never wraps);
//! - `minus_own`: `out[i] = saturate_i16(total[i] - own[i])`;
//! - `saturate`: `out[i] = saturate_i16(total[i])`.
//!
//! All three process `min` of their slice lengths and never panic.

/// Which implementation a [`super::Mixer`] runs; chosen once, at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain Rust, one sample at a time: the reference.
    Scalar,
    /// Portable SIMD through the `wide` crate (`i32x8`); SSE2 on a baseline
    /// x86-64 build, NEON on aarch64.
    Wide,
    /// AVX2 through `std::arch`, 16 samples per step; x86-64 with AVX2 only.
    Avx2,
}

impl Kernel {
    /// Every kernel, supported here or not.
    pub const ALL: [Kernel; 3] = [Kernel::Scalar, Kernel::Wide, Kernel::Avx2];

    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        if Kernel::Avx2.is_supported() {
            Kernel::Avx2
        } else {
            Kernel::Wide
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Scalar | Kernel::Wide => true,
            Kernel::Avx2 => avx2_available(),
        }
    }

    /// `total[i] += frame[i]`.
    #[inline]
    pub fn accumulate(self, total: &mut [i32], frame: &[i16]) {
        match self {
            Kernel::Scalar => scalar::accumulate(total, frame),
            Kernel::Wide => wide_simd::accumulate(total, frame),
            Kernel::Avx2 => avx2_or_scalar::accumulate(total, frame),
        }
    }

    /// `out[i] = saturate_i16(total[i] - own[i])`.
    #[inline]
    pub fn minus_own(self, total: &[i32], own: &[i16], out: &mut [i16]) {
        match self {
            Kernel::Scalar => scalar::minus_own(total, own, out),
            Kernel::Wide => wide_simd::minus_own(total, own, out),
            Kernel::Avx2 => avx2_or_scalar::minus_own(total, own, out),
        }
    }

    /// `out[i] = saturate_i16(total[i])`.
    #[inline]
    pub fn saturate(self, total: &[i32], out: &mut [i16]) {
        match self {
            Kernel::Scalar => scalar::saturate(total, out),
            Kernel::Wide => wide_simd::saturate(total, out),
            Kernel::Avx2 => avx2_or_scalar::saturate(total, out),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

#[inline]
fn sat(v: i32) -> i16 {
    v.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

mod scalar {
    use super::sat;

    pub fn accumulate(total: &mut [i32], frame: &[i16]) {
        for (t, &s) in total.iter_mut().zip(frame) {
            *t = t.wrapping_add(s as i32);
        }
    }

    pub fn minus_own(total: &[i32], own: &[i16], out: &mut [i16]) {
        for ((o, &t), &s) in out.iter_mut().zip(total).zip(own) {
            *o = sat(t.wrapping_sub(s as i32));
        }
    }

    pub fn saturate(total: &[i32], out: &mut [i16]) {
        for (o, &t) in out.iter_mut().zip(total) {
            *o = sat(t);
        }
    }
}

mod wide_simd {
    use wide::{i16x8, i32x8};

    const W: usize = 8;

    #[inline]
    fn load16(s: &[i16]) -> i16x8 {
        let mut a = [0i16; W];
        a.copy_from_slice(s);
        i16x8::from(a)
    }

    #[inline]
    fn load32(s: &[i32]) -> i32x8 {
        let mut a = [0i32; W];
        a.copy_from_slice(s);
        i32x8::from(a)
    }

    pub fn accumulate(total: &mut [i32], frame: &[i16]) {
        let n = total.len().min(frame.len());
        let (total, frame) = (&mut total[..n], &frame[..n]);
        let mut t_chunks = total.chunks_exact_mut(W);
        let mut f_chunks = frame.chunks_exact(W);
        for (t, f) in (&mut t_chunks).zip(&mut f_chunks) {
            let sum = load32(t) + i32x8::from_i16x8(load16(f));
            t.copy_from_slice(&sum.to_array());
        }
        super::scalar::accumulate(t_chunks.into_remainder(), f_chunks.remainder());
    }

    pub fn minus_own(total: &[i32], own: &[i16], out: &mut [i16]) {
        let n = total.len().min(own.len()).min(out.len());
        let (total, own, out) = (&total[..n], &own[..n], &mut out[..n]);
        let mut o_chunks = out.chunks_exact_mut(W);
        let mut t_chunks = total.chunks_exact(W);
        let mut s_chunks = own.chunks_exact(W);
        for ((o, t), s) in (&mut o_chunks).zip(&mut t_chunks).zip(&mut s_chunks) {
            let diff = load32(t) - i32x8::from_i16x8(load16(s));
            o.copy_from_slice(&i16x8::from_i32x8_saturate(diff).to_array());
        }
        super::scalar::minus_own(
            t_chunks.remainder(),
            s_chunks.remainder(),
            o_chunks.into_remainder(),
        );
    }

    pub fn saturate(total: &[i32], out: &mut [i16]) {
        let n = total.len().min(out.len());
        let (total, out) = (&total[..n], &mut out[..n]);
        let mut o_chunks = out.chunks_exact_mut(W);
        let mut t_chunks = total.chunks_exact(W);
        for (o, t) in (&mut o_chunks).zip(&mut t_chunks) {
            o.copy_from_slice(&i16x8::from_i32x8_saturate(load32(t)).to_array());
        }
        super::scalar::saturate(t_chunks.remainder(), o_chunks.into_remainder());
    }
}

/// Safe entry points for the AVX2 kernels: they check the CPU (a cached
/// atomic load) and fall back to the scalar reference without AVX2.
mod avx2_or_scalar {
    pub fn accumulate(total: &mut [i32], frame: &[i16]) {
        #[cfg(target_arch = "x86_64")]
        if super::avx2_available() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { super::avx2::accumulate(total, frame) };
            return;
        }
        super::scalar::accumulate(total, frame)
    }

    pub fn minus_own(total: &[i32], own: &[i16], out: &mut [i16]) {
        #[cfg(target_arch = "x86_64")]
        if super::avx2_available() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { super::avx2::minus_own(total, own, out) };
            return;
        }
        super::scalar::minus_own(total, own, out)
    }

    pub fn saturate(total: &[i32], out: &mut [i16]) {
        #[cfg(target_arch = "x86_64")]
        if super::avx2_available() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { super::avx2::saturate(total, out) };
            return;
        }
        super::scalar::saturate(total, out)
    }
}

#[cfg(target_arch = "x86_64")]
#[deny(unsafe_op_in_unsafe_fn)]
mod avx2 {
    use std::arch::x86_64::*;

    /// 16 samples per step: one 256-bit load of i16, two of i32.
    const W: usize = 16;

    /// Widens 16 i16 at `p` to two vectors of 8 i32.
    ///
    /// # Safety
    /// AVX2 available; `p..p+16` readable.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn widen(p: *const i16) -> (__m256i, __m256i) {
        // SAFETY: the caller guarantees 16 readable i16 at `p` (unaligned load).
        let v = unsafe { _mm256_loadu_si256(p as *const __m256i) };
        (
            _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v)),
            _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(v)),
        )
    }

    /// Saturating pack of two i32x8 into 16 i16 in order, stored at `p`.
    ///
    /// # Safety
    /// AVX2 available; `p..p+16` writable.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn pack_store(p: *mut i16, lo: __m256i, hi: __m256i) {
        // packs works per 128-bit lane: [lo0-3 hi0-3 lo4-7 hi4-7]; restore order.
        let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(lo, hi));
        // SAFETY: the caller guarantees 16 writable i16 at `p` (unaligned store).
        unsafe { _mm256_storeu_si256(p as *mut __m256i, packed) };
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn accumulate(total: &mut [i32], frame: &[i16]) {
        let n = total.len().min(frame.len());
        let body = n - n % W;
        let mut i = 0;
        while i < body {
            // SAFETY: i + 16 <= n, which bounds both slices; loads and stores
            // are unaligned.
            unsafe {
                let (lo, hi) = widen(frame.as_ptr().add(i));
                let t = total.as_mut_ptr().add(i) as *mut __m256i;
                _mm256_storeu_si256(t, _mm256_add_epi32(_mm256_loadu_si256(t), lo));
                let t = t.add(1);
                _mm256_storeu_si256(t, _mm256_add_epi32(_mm256_loadu_si256(t), hi));
            }
            i += W;
        }
        super::scalar::accumulate(&mut total[body..n], &frame[body..n]);
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn minus_own(total: &[i32], own: &[i16], out: &mut [i16]) {
        let n = total.len().min(own.len()).min(out.len());
        let body = n - n % W;
        let mut i = 0;
        while i < body {
            // SAFETY: i + 16 <= n, which bounds all three slices; loads and
            // stores are unaligned.
            unsafe {
                let (lo, hi) = widen(own.as_ptr().add(i));
                let t = total.as_ptr().add(i) as *const __m256i;
                let d0 = _mm256_sub_epi32(_mm256_loadu_si256(t), lo);
                let d1 = _mm256_sub_epi32(_mm256_loadu_si256(t.add(1)), hi);
                pack_store(out.as_mut_ptr().add(i), d0, d1);
            }
            i += W;
        }
        super::scalar::minus_own(&total[body..n], &own[body..n], &mut out[body..n]);
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn saturate(total: &[i32], out: &mut [i16]) {
        let n = total.len().min(out.len());
        let body = n - n % W;
        let mut i = 0;
        while i < body {
            // SAFETY: i + 16 <= n, which bounds both slices; loads and stores
            // are unaligned.
            unsafe {
                let t = total.as_ptr().add(i) as *const __m256i;
                let lo = _mm256_loadu_si256(t);
                let hi = _mm256_loadu_si256(t.add(1));
                pack_store(out.as_mut_ptr().add(i), lo, hi);
            }
            i += W;
        }
        super::scalar::saturate(&total[body..n], &mut out[body..n]);
    }
}
