//! Whisper's log-mel front end, as faster-whisper's `FeatureExtractor` and
//! `generate_segments` compute one 30 s window, in fixed-order f32 arithmetic.
//!
//! For `n` samples: append 160 zeros; reflect-pad 200 on each side (numpy `reflect`,
//! torch `center=True`); frames of 400 every 160 samples, the last frame dropped, so
//! `F = (n + 160) / 160` frames; each frame times the periodic Hann window
//! `0.5 − 0.5·cos(2πj/400)`; a real DFT as one deterministic matmul against a fixed
//! cos/sin basis (twiddles from a 400-entry table built with `detmath` on the first
//! quadrant, the rest by symmetry); power `fma(re, re, im·im)`; 80 slaney mel filters
//! (librosa's formula, norm "slaney", computed in f32 with `detmath`) by a second
//! matmul; `log10(max(mel, 1e-10))` as `detmath::log(·) · (1/ln 10)`; clamped below at
//! the maximum over all `F` frames minus 8; `(x + 4) / 4`. The window keeps the first
//! `min(F − 1, 3000)` frames (faster-whisper's `content_frames`) and pads with zeros to
//! 3000. Output layout `[80, 3000]`, mel-major.

use havn_exec::cpu::matmul;
use havn_exec::detmath;

/// FFT size.
pub const N_FFT: usize = 400;
/// Hop between frames.
pub const HOP: usize = 160;
/// Mel bins.
pub const N_MELS: usize = 80;
/// Frames in one window (30 s).
pub const N_FRAMES: usize = 3000;
/// Frequency bins of the one-sided spectrum.
pub const N_BINS: usize = N_FFT / 2 + 1;
/// Sample rate the filters are built for.
pub const SAMPLE_RATE: f32 = 16_000.0;

/// The fixed tables of the front end, built once.
#[derive(Debug, Clone)]
pub struct FrontEnd {
    window: Vec<f32>,
    /// `[N_FFT, 2·N_BINS]`: column `2k` is `cos(2πkj/N)`, `2k+1` is `−sin(2πkj/N)`.
    basis: Vec<f32>,
    /// `[N_BINS, N_MELS]`: the filters transposed.
    filters_t: Vec<f32>,
}

impl Default for FrontEnd {
    fn default() -> Self {
        Self::new()
    }
}

/// `cos(2πj/N_FFT)` for `j` in `0..N_FFT`, exact symmetries (quadrants and octants).
fn cos_table() -> Vec<f32> {
    let q = N_FFT / 4;
    let step = std::f32::consts::TAU / N_FFT as f32;
    // First quadrant: cos for angles ≤ π/4, sin of the complement above.
    let quad: Vec<f32> = (0..=q)
        .map(|j| {
            if 2 * j <= q {
                detmath::cos(j as f32 * step)
            } else {
                detmath::sin((q - j) as f32 * step)
            }
        })
        .collect();
    (0..N_FFT)
        .map(|j| match j / q {
            0 => quad[j],
            1 => -quad[2 * q - j],
            2 => -quad[j - 2 * q],
            _ => quad[N_FFT - j],
        })
        .collect()
}

/// The 80 slaney-normalised mel filters over the 201 bins (`[N_MELS, N_BINS]`).
pub fn mel_filters() -> Vec<f32> {
    let max_mel: f32 = 45.245_64;
    let f_sp: f32 = 200.0 / 3.0;
    let min_log_hz: f32 = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = detmath::log(6.4) / 27.0;
    let freqs: Vec<f32> = (0..N_MELS + 2)
        .map(|i| {
            let mel = i as f32 * (max_mel / (N_MELS + 1) as f32);
            if mel >= min_log_mel {
                min_log_hz * detmath::exp(logstep * (mel - min_log_mel))
            } else {
                f_sp * mel
            }
        })
        .collect();
    let mut w = vec![0.0f32; N_MELS * N_BINS];
    for m in 0..N_MELS {
        let (lo, mid, hi) = (freqs[m], freqs[m + 1], freqs[m + 2]);
        let enorm = 2.0 / (hi - lo);
        for k in 0..N_BINS {
            let f = k as f32 * (SAMPLE_RATE / N_FFT as f32);
            let lower = -(lo - f) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            w[m * N_BINS + k] = 0.0f32.max(lower.min(upper)) * enorm;
        }
    }
    w
}

/// Index into `0..n` of position `i` of numpy's `reflect` extension of a length-`n` array.
fn reflect(i: isize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let per = 2 * (n as isize - 1);
    let m = i.rem_euclid(per);
    (if m < n as isize { m } else { per - m }) as usize
}

impl FrontEnd {
    /// Builds the window, DFT basis and filters.
    pub fn new() -> FrontEnd {
        let cos = cos_table();
        let window: Vec<f32> = cos.iter().map(|&c| 0.5 - 0.5 * c).collect();
        let mut basis = vec![0.0f32; N_FFT * 2 * N_BINS];
        for j in 0..N_FFT {
            for k in 0..N_BINS {
                let t = (k * j) % N_FFT;
                basis[j * 2 * N_BINS + 2 * k] = cos[t];
                // −sin(θ) = cos(θ + π/2).
                basis[j * 2 * N_BINS + 2 * k + 1] = cos[(t + N_FFT / 4) % N_FFT];
            }
        }
        let f = mel_filters();
        let mut filters_t = vec![0.0f32; N_BINS * N_MELS];
        for m in 0..N_MELS {
            for k in 0..N_BINS {
                filters_t[k * N_MELS + m] = f[m * N_BINS + k];
            }
        }
        FrontEnd {
            window,
            basis,
            filters_t,
        }
    }

    /// Frames computed for `n` samples (before faster-whisper drops the last one).
    pub fn frames(n: usize) -> usize {
        (n + HOP) / HOP
    }

    /// The normalised log-mel features of `samples` in `[F, N_MELS]` (frame-major), all
    /// `F` frames (the maximum of the clamp is taken over these).
    pub fn log_mel_frames(&self, samples: &[f32], threads: usize) -> Vec<f32> {
        let n = samples.len() + HOP;
        let f = Self::frames(samples.len());
        let at = |i: usize| samples.get(i).copied().unwrap_or(0.0);
        let mut frames = vec![0.0f32; f * N_FFT];
        for (fi, row) in frames.chunks_exact_mut(N_FFT).enumerate() {
            for (j, (o, &w)) in row.iter_mut().zip(&self.window).enumerate() {
                let i = (fi * HOP + j) as isize - (N_FFT / 2) as isize;
                *o = at(reflect(i, n)) * w;
            }
        }
        let spec = matmul(&frames, &self.basis, None, f, N_FFT, 2 * N_BINS, threads);
        let power: Vec<f32> = spec
            .chunks_exact(2)
            .map(|c| detmath::fma(c[0], c[0], c[1] * c[1]))
            .collect();
        let mel = matmul(&power, &self.filters_t, None, f, N_BINS, N_MELS, threads);
        let inv_ln10 = 1.0 / std::f32::consts::LN_10;
        let mut logs: Vec<f32> = mel
            .iter()
            .map(|&x| detmath::log(x.max(1e-10)) * inv_ln10)
            .collect();
        let mx = logs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut logs {
            *v = (v.max(mx - 8.0) + 4.0) / 4.0;
        }
        logs
    }

    /// The encoder input for `samples` (at most 30 s): `[N_MELS, N_FRAMES]`.
    pub fn log_mel(&self, samples: &[f32], threads: usize) -> Vec<f32> {
        let all = self.log_mel_frames(samples, threads);
        let keep = (Self::frames(samples.len()) - 1).min(N_FRAMES);
        let mut out = vec![0.0f32; N_MELS * N_FRAMES];
        for (t, row) in all.chunks_exact(N_MELS).take(keep).enumerate() {
            for (m, &v) in row.iter().enumerate() {
                out[m * N_FRAMES + t] = v;
            }
        }
        out
    }
}
