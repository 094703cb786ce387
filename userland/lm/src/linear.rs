//! Deterministic linear layers over weights packed once at load time.
//!
//! `y[i, j] = fma chain over k = 0..K of x[i, k] · w[j, k]`, starting from +0, in k order:
//! the rule of havn-exec's matmul (`userland/exec/README.md`), so every output element is
//! the same bits whichever thread computes it, with or without AVX2 (fma is exact).
//! Weights are stored as 16-column panels, `panel[p][k][c] = w[16p + c][k]`, so one
//! output tile streams its weights contiguously; threads split the panels.

use havn_exec::cpu::simd_available;
use rayon::prelude::*;

/// Output columns per panel.
pub const NR: usize = 16;
/// Rows of x per register tile.
pub(crate) const MR: usize = 4;
/// Panels per parallel task.
pub(crate) const PANELS_PER_TASK: usize = 4;

/// A `[n, k]` weight matrix (n outputs of k inputs), packed into panels.
#[derive(Debug, Clone)]
pub struct Packed {
    pub k: usize,
    pub n: usize,
    panels: Vec<f32>,
}

impl Packed {
    /// Packs row-major `w[n][k]` (output-major, as GGUF stores linear weights).
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> Packed {
        assert_eq!(w.len(), n * k, "weight size");
        let np = n.div_ceil(NR);
        let mut panels = vec![0.0f32; np * k * NR];
        for j in 0..n {
            let (p, c) = (j / NR, j % NR);
            let row = &w[j * k..(j + 1) * k];
            let base = p * k * NR;
            for (kk, &v) in row.iter().enumerate() {
                panels[base + kk * NR + c] = v;
            }
        }
        Packed { k, n, panels }
    }

    /// Stacks several matrices with the same k into one (outputs concatenated): each
    /// output column keeps its own fma chain, so the bits are those of separate calls.
    pub fn from_stacked(parts: &[(&[f32], usize)], k: usize) -> Packed {
        let mut all = Vec::new();
        let mut n = 0;
        for (w, rows) in parts {
            all.extend_from_slice(w);
            n += rows;
        }
        Packed::from_rows(&all, n, k)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.panels.len() * 4
    }

    /// Output `j`'s weights `w[j][..]`.
    pub fn row(&self, j: usize) -> Vec<f32> {
        let (p, c) = (j / NR, j % NR);
        let panel = &self.panels[p * self.k * NR..(p + 1) * self.k * NR];
        (0..self.k).map(|kk| panel[kk * NR + c]).collect()
    }

    /// `y = x · wᵀ` for `x[m, k]`, returning `[m, n]`.
    pub fn apply(&self, x: &[f32], m: usize, pool: &rayon::ThreadPool) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "input size");
        let (k, n) = (self.k, self.n);
        let np = n.div_ceil(NR);
        let avx = simd_available();
        let tasks: Vec<usize> = (0..np.div_ceil(PANELS_PER_TASK)).collect();
        let parts: Vec<Vec<f32>> = crate::linear::run_tasks(pool, &tasks, |&t| {
            let p0 = t * PANELS_PER_TASK;
            let p1 = (p0 + PANELS_PER_TASK).min(np);
            let mut out = vec![0.0f32; (p1 - p0) * m * NR];
            for p in p0..p1 {
                let panel = &self.panels[p * k * NR..(p + 1) * k * NR];
                let o = &mut out[(p - p0) * m * NR..(p - p0 + 1) * m * NR];
                row_tiles(o, m, |i, rows, tile| {
                    tile_kernel(avx, &x[i * k..(i + rows) * k], rows, k, panel, tile);
                });
            }
            out
        });
        gather(&parts, m, n)
    }
}

/// One tile: `rows` (≤ MR) rows of x against one panel.
fn tile_kernel(
    avx: bool,
    x: &[f32],
    rows: usize,
    k: usize,
    panel: &[f32],
    tile: &mut [[f32; NR]; MR],
) {
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: avx2 and fma were detected at run time; the kernel checks the sizes
        // of the slices it reads.
        unsafe { tile_avx(x, rows, k, panel, tile) };
        return;
    }
    let _ = avx;
    for r in 0..rows {
        let xr = &x[r * k..(r + 1) * k];
        for (kk, &xv) in xr.iter().enumerate() {
            let wrow = &panel[kk * NR..(kk + 1) * NR];
            for c in 0..NR {
                tile[r][c] = xv.mul_add(wrow[c], tile[r][c]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx(x: &[f32], rows: usize, k: usize, panel: &[f32], tile: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    assert!(rows <= MR && x.len() >= rows * k && panel.len() >= k * NR);
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let wp = panel.as_ptr();
    let xp = x.as_ptr();
    // Rows beyond `rows` read row 0 again (their results are discarded).
    let off: [usize; MR] = std::array::from_fn(|r| if r < rows { r * k } else { 0 });
    for kk in 0..k {
        // SAFETY: kk < k and the panel holds k·NR floats (asserted above).
        let (w0, w1) = unsafe {
            (
                _mm256_loadu_ps(wp.add(kk * NR)),
                _mm256_loadu_ps(wp.add(kk * NR + 8)),
            )
        };
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: off[r] + kk < rows·k ≤ x.len() (asserted above).
            let xv = _mm256_set1_ps(unsafe { *xp.add(off[r] + kk) });
            a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
            a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
        }
    }
    for (r, a) in acc.iter().enumerate().take(rows) {
        // SAFETY: each tile row holds NR = 16 floats: two 8-lane stores.
        unsafe {
            _mm256_storeu_ps(tile[r].as_mut_ptr(), a[0]);
            _mm256_storeu_ps(tile[r].as_mut_ptr().add(8), a[1]);
        }
    }
}

/// Fills one panel's output `o` (`[m, NR]`) tile by tile: `f(first_row, rows, tile)`
/// computes up to [`MR`] rows.
pub(crate) fn row_tiles<F>(o: &mut [f32], m: usize, mut f: F)
where
    F: FnMut(usize, usize, &mut [[f32; NR]; MR]),
{
    let mut i = 0;
    while i < m {
        let rows = MR.min(m - i);
        let mut tile = [[0.0f32; NR]; MR];
        f(i, rows, &mut tile);
        for (r, t) in tile.iter().enumerate().take(rows) {
            o[(i + r) * NR..(i + r + 1) * NR].copy_from_slice(t);
        }
        i += rows;
    }
}

/// Row-major `y[m, n]` from the tasks' panel-major outputs ([`PANELS_PER_TASK`] panels
/// of `[m, NR]` each, in task order).
pub(crate) fn gather(parts: &[Vec<f32>], m: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    for (t, part) in parts.iter().enumerate() {
        for pl in 0..part.len() / (m * NR) {
            let j0 = (t * PANELS_PER_TASK + pl) * NR;
            let w = NR.min(n - j0);
            for i in 0..m {
                let src = &part[(pl * m + i) * NR..(pl * m + i) * NR + w];
                y[i * n + j0..i * n + j0 + w].copy_from_slice(src);
            }
        }
    }
    y
}

/// Runs `f` on every task: on this thread when the pool has one thread (no hand-off
/// to a worker and back for each matmul), else spread over the pool. Results are in
/// task order either way.
pub(crate) fn run_tasks<F>(pool: &rayon::ThreadPool, tasks: &[usize], f: F) -> Vec<Vec<f32>>
where
    F: Fn(&usize) -> Vec<f32> + Sync + Send,
{
    if pool.current_num_threads() <= 1 {
        tasks.iter().map(f).collect()
    } else {
        pool.install(|| tasks.par_iter().map(f).collect())
    }
}

/// A rayon pool of exactly `threads` threads (0 = all cores).
pub fn pool(threads: usize) -> std::io::Result<rayon::ThreadPool> {
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("havn-lm-{i}"))
        .build()
        .map_err(std::io::Error::other)
}
