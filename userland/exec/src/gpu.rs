//! CUDA backend (cudarc, dynamically loaded; kernels compiled by NVRTC with
//! `--fmad=false --prec-div=true --prec-sqrt=true --ftz=false`). Every kernel computes
//! each output element with exactly the operation sequence of `cpu.rs`.

use crate::cpu::{self, OpCtx};
use crate::detmath;
use crate::error::{ExecError, Result};
use crate::ops::Op;
use crate::tensor::{numel, Tensor};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::CompileOptions;
use std::sync::Arc;

const KERNELS: &str = r#"
#define TM 128
#define TN 128
#define TK 8
extern "C" __global__ void __launch_bounds__(256) matmul_f32(const float* __restrict__ A, const float* __restrict__ B,
        const float* __restrict__ bias, float* __restrict__ C, int M, int N, int K, int has_bias) {
    // 128x128 output tile per block, 8x8 outputs per thread, K in steps of 8 with a
    // register-staged double buffer. Each output is still one fmaf chain in k order.
    __shared__ float As[2][TK][TM];
    __shared__ float Bs[2][TK][TN];
    int tid = threadIdx.x;
    int tx = tid % 16, ty = tid / 16;
    int row0 = blockIdx.y * TM, col0 = blockIdx.x * TN;
    float acc[8][8];
    #pragma unroll
    for (int i = 0; i < 8; i++)
        #pragma unroll
        for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;
    float ra[4], rb[4];
    #pragma unroll
    for (int l = 0; l < 4; l++) {
        int e = tid + l * 256; int m = e / TK, kk = e % TK;
        int gm = row0 + m;
        ra[l] = (gm < M && kk < K) ? A[(size_t)gm * K + kk] : 0.0f;
        int kb = e / TN, n = e % TN; int gn = col0 + n;
        rb[l] = (kb < K && gn < N) ? B[(size_t)kb * N + gn] : 0.0f;
    }
    #pragma unroll
    for (int l = 0; l < 4; l++) {
        int e = tid + l * 256;
        As[0][e % TK][e / TK] = ra[l];
        Bs[0][e / TN][e % TN] = rb[l];
    }
    __syncthreads();
    int buf = 0;
    for (int k0 = 0; k0 < K; k0 += TK) {
        int nk = k0 + TK;
        if (nk < K) {
            #pragma unroll
            for (int l = 0; l < 4; l++) {
                int e = tid + l * 256; int m = e / TK, kk = e % TK;
                int gm = row0 + m, gk = nk + kk;
                ra[l] = (gm < M && gk < K) ? A[(size_t)gm * K + gk] : 0.0f;
                int kb = e / TN, n = e % TN; int gn = col0 + n, gkb = nk + kb;
                rb[l] = (gkb < K && gn < N) ? B[(size_t)gkb * N + gn] : 0.0f;
            }
        }
        int kmax = K - k0 < TK ? K - k0 : TK;
        if (kmax == TK) {
            #pragma unroll
            for (int kk = 0; kk < TK; kk++) {
                float a[8], b[8];
                #pragma unroll
                for (int i = 0; i < 4; i++) { a[i] = As[buf][kk][ty * 4 + i]; a[i + 4] = As[buf][kk][64 + ty * 4 + i]; }
                #pragma unroll
                for (int j = 0; j < 4; j++) { b[j] = Bs[buf][kk][tx * 4 + j]; b[j + 4] = Bs[buf][kk][64 + tx * 4 + j]; }
                #pragma unroll
                for (int i = 0; i < 8; i++)
                    #pragma unroll
                    for (int j = 0; j < 8; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
        } else {
            for (int kk = 0; kk < kmax; kk++) {
                float a[8], b[8];
                #pragma unroll
                for (int i = 0; i < 4; i++) { a[i] = As[buf][kk][ty * 4 + i]; a[i + 4] = As[buf][kk][64 + ty * 4 + i]; }
                #pragma unroll
                for (int j = 0; j < 4; j++) { b[j] = Bs[buf][kk][tx * 4 + j]; b[j + 4] = Bs[buf][kk][64 + tx * 4 + j]; }
                #pragma unroll
                for (int i = 0; i < 8; i++)
                    #pragma unroll
                    for (int j = 0; j < 8; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
        }
        if (nk < K) {
            #pragma unroll
            for (int l = 0; l < 4; l++) {
                int e = tid + l * 256;
                As[buf ^ 1][e % TK][e / TK] = ra[l];
                Bs[buf ^ 1][e / TN][e % TN] = rb[l];
            }
        }
        __syncthreads();
        buf ^= 1;
    }
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        int r = row0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
        if (r >= M) continue;
        #pragma unroll
        for (int j = 0; j < 8; j++) {
            int c = col0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
            if (c < N) C[(size_t)r * N + c] = has_bias ? acc[i][j] + bias[c] : acc[i][j];
        }
    }
}

// Same chain, 64x64 tiles and 4x4 outputs per thread: more blocks for mid-size matrices.
extern "C" __global__ void __launch_bounds__(256) matmul_f32_64(const float* __restrict__ A, const float* __restrict__ B,
        const float* __restrict__ bias, float* __restrict__ C, int M, int N, int K, int has_bias) {
    __shared__ float As[2][TK][64];
    __shared__ float Bs[2][TK][64];
    int tid = threadIdx.x;
    int tx = tid % 16, ty = tid / 16;
    int row0 = blockIdx.y * 64, col0 = blockIdx.x * 64;
    float acc[4][4];
    #pragma unroll
    for (int i = 0; i < 4; i++)
        #pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    float ra[2], rb[2];
    #pragma unroll
    for (int l = 0; l < 2; l++) {
        int e = tid + l * 256; int m = e / TK, kk = e % TK;
        int gm = row0 + m;
        ra[l] = (gm < M && kk < K) ? A[(size_t)gm * K + kk] : 0.0f;
        int kb = e / 64, n = e % 64; int gn = col0 + n;
        rb[l] = (kb < K && gn < N) ? B[(size_t)kb * N + gn] : 0.0f;
    }
    #pragma unroll
    for (int l = 0; l < 2; l++) {
        int e = tid + l * 256;
        As[0][e % TK][e / TK] = ra[l];
        Bs[0][e / 64][e % 64] = rb[l];
    }
    __syncthreads();
    int buf = 0;
    for (int k0 = 0; k0 < K; k0 += TK) {
        int nk = k0 + TK;
        if (nk < K) {
            #pragma unroll
            for (int l = 0; l < 2; l++) {
                int e = tid + l * 256; int m = e / TK, kk = e % TK;
                int gm = row0 + m, gk = nk + kk;
                ra[l] = (gm < M && gk < K) ? A[(size_t)gm * K + gk] : 0.0f;
                int kb = e / 64, n = e % 64; int gn = col0 + n, gkb = nk + kb;
                rb[l] = (gkb < K && gn < N) ? B[(size_t)gkb * N + gn] : 0.0f;
            }
        }
        int kmax = K - k0 < TK ? K - k0 : TK;
        if (kmax == TK) {
            #pragma unroll
            for (int kk = 0; kk < TK; kk++) {
                float a[4], b[4];
                #pragma unroll
                for (int i = 0; i < 4; i++) { a[i] = As[buf][kk][ty * 4 + i]; b[i] = Bs[buf][kk][tx * 4 + i]; }
                #pragma unroll
                for (int i = 0; i < 4; i++)
                    #pragma unroll
                    for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
        } else {
            for (int kk = 0; kk < kmax; kk++) {
                float a[4], b[4];
                #pragma unroll
                for (int i = 0; i < 4; i++) { a[i] = As[buf][kk][ty * 4 + i]; b[i] = Bs[buf][kk][tx * 4 + i]; }
                #pragma unroll
                for (int i = 0; i < 4; i++)
                    #pragma unroll
                    for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
        }
        if (nk < K) {
            #pragma unroll
            for (int l = 0; l < 2; l++) {
                int e = tid + l * 256;
                As[buf ^ 1][e % TK][e / TK] = ra[l];
                Bs[buf ^ 1][e / 64][e % 64] = rb[l];
            }
        }
        __syncthreads();
        buf ^= 1;
    }
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        int r = row0 + ty * 4 + i;
        if (r >= M) continue;
        #pragma unroll
        for (int j = 0; j < 4; j++) {
            int c = col0 + tx * 4 + j;
            if (c < N) C[(size_t)r * N + c] = has_bias ? acc[i][j] + bias[c] : acc[i][j];
        }
    }
}

extern "C" __global__ void quantize_rows(const float* x, int* q, float* sx, int M, int K) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M) return;
    const float* r = x + (size_t)i * K;
    float amax = 0.0f;
    for (int k = 0; k < K; k++) { float a = fabsf(r[k]); if (a > amax) amax = a; }
    float s = amax == 0.0f ? 1.0f : amax / 127.0f;
    for (int k = 0; k < K; k++) {
        float v = rintf(r[k] / s);
        v = fminf(fmaxf(v, -127.0f), 127.0f);
        q[(size_t)i * K + k] = (int)v;
    }
    sx[i] = s;
}

extern "C" __global__ void qmatmul(const int* q, const signed char* w, const float* sx, const float* ws, float* out, int M, int N, int K) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= M * N) return;
    int i = idx / N, j = idx % N;
    int acc = 0;
    for (int k = 0; k < K; k++) acc += q[(size_t)i * K + k] * (int)w[(size_t)k * N + j];
    out[idx] = (float)acc * (sx[i] * ws[j]);
}

extern "C" __global__ void elementwise(int kind, const float* a, const float* b, int bl, float factor, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = a[i];
    float y;
    if (kind == 0) y = x + b[i % bl];
    else if (kind == 1) y = x * b[i % bl];
    else if (kind == 2) y = x * factor;
    else if (kind == 3) y = d_silu(x);
    else y = d_gelu(x);
    out[i] = y;
}

extern "C" __global__ void softmax_rows(const float* x, float* out, int rows, int d) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* xr = x + (size_t)r * d; float* o = out + (size_t)r * d;
    float m = -__int_as_float(0x7f800000);
    for (int j = 0; j < d; j++) if (xr[j] > m) m = xr[j];
    float sum = 0.0f;
    for (int j = 0; j < d; j++) { o[j] = d_exp(xr[j] - m); sum += o[j]; }
    for (int j = 0; j < d; j++) o[j] /= sum;
}

extern "C" __global__ void norm_rows(int layer, const float* x, const float* w, const float* b, float eps, float* out, int rows, int d) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* xr = x + (size_t)r * d; float* o = out + (size_t)r * d;
    if (!layer) {
        float ss = 0.0f;
        for (int j = 0; j < d; j++) ss = fmaf(xr[j], xr[j], ss);
        float rr = d_rsqrt(ss / (float)d + eps);
        for (int j = 0; j < d; j++) o[j] = xr[j] * rr * w[j];
    } else {
        float s = 0.0f;
        for (int j = 0; j < d; j++) s += xr[j];
        float mean = s / (float)d;
        float acc = 0.0f;
        for (int j = 0; j < d; j++) { float t = xr[j] - mean; acc = fmaf(t, t, acc); }
        float rr = d_rsqrt(acc / (float)d + eps);
        for (int j = 0; j < d; j++) o[j] = fmaf((xr[j] - mean) * rr, w[j], b[j]);
    }
}

extern "C" __global__ void rope(const float* x, const float* inv, float* out, int T, int heads, int hd) {
    int half = hd / 2;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T * heads * half) return;
    int i = idx % half; int h = (idx / half) % heads; int t = idx / (half * heads);
    int d = heads * hd;
    float ang = (float)t * inv[i];
    float c = d_cos(ang), s = d_sin(ang);
    float x0 = x[(size_t)t * d + h * hd + i], x1 = x[(size_t)t * d + h * hd + i + half];
    out[(size_t)t * d + h * hd + i] = x0 * c - x1 * s;
    out[(size_t)t * d + h * hd + i + half] = x0 * s + x1 * c;
}

"#;

/// Attention kernel kept separate for readability.
const ATTN: &str = r#"
extern "C" __global__ void attention2(const float* q, const float* k, const float* v, float* out, float* scratch, int T, int heads, int hd, float scale) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T * heads) return;
    int i = idx / heads, h = idx % heads;
    int d = heads * hd, off = h * hd;
    float* p = scratch + (size_t)idx * T;
    float m = -__int_as_float(0x7f800000);
    for (int j = 0; j <= i; j++) {
        float acc = 0.0f;
        for (int e = 0; e < hd; e++) acc = fmaf(q[(size_t)i * d + off + e], k[(size_t)j * d + off + e], acc);
        float s = acc * scale;
        if (s > m) m = s;
        p[j] = s;
    }
    float sum = 0.0f;
    for (int j = 0; j <= i; j++) { p[j] = d_exp(p[j] - m); sum += p[j]; }
    for (int e = 0; e < hd; e++) {
        float acc = 0.0f;
        for (int j = 0; j <= i; j++) acc = fmaf(p[j], v[(size_t)j * d + off + e], acc);
        out[(size_t)i * d + off + e] = acc / sum;
    }
}

extern "C" __global__ void conv2d(const float* x, const float* w, const float* b, float* out,
        int C, int H, int W, int O, int KH, int KW, int OH, int OW, int stride, int pad) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= O * OH * OW) return;
    int xo = idx % OW; int y = (idx / OW) % OH; int o = idx / (OW * OH);
    float acc = 0.0f;
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < KH; ky++) {
            int iy = y * stride + ky - pad;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < KW; kx++) {
                int ix = xo * stride + kx - pad;
                if (ix < 0 || ix >= W) continue;
                acc = fmaf(x[((size_t)c * H + iy) * W + ix], w[(((size_t)o * C + c) * KH + ky) * KW + kx], acc);
            }
        }
    out[idx] = acc + b[o];
}
"#;

/// The CUDA backend: one context, one stream, the compiled module.
pub struct CudaBackend {
    pub name: String,
    pub vram_bytes: u64,
    pub device_count: usize,
    /// Streaming multiprocessors on device 0.
    pub sms: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("name", &self.name)
            .field("vram_bytes", &self.vram_bytes)
            .finish()
    }
}

fn ce<E: std::fmt::Debug>(e: E) -> ExecError {
    ExecError::Cuda(format!("{e:?}"))
}

/// Full kernel source handed to NVRTC.
pub fn kernel_source() -> String {
    format!(
        "{}{}{}{}",
        detmath::cuda_constants(),
        detmath::CUDA_PRELUDE,
        KERNELS,
        ATTN
    )
}

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(128).max(1) as u32, 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaBackend {
    /// Initialises device 0 and compiles the kernels. Returns the reason on failure;
    /// callers wrap this in `catch_unwind` (cudarc panics on missing symbols).
    pub fn new() -> std::result::Result<Self, String> {
        // SAFETY: only tries to dlopen libcuda and reports whether it loaded.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("libcuda.so.1 not loadable".into());
        }
        // SAFETY: as above, for libnvrtc.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err("libnvrtc.so.13 not loadable".into());
        }
        let n = CudaContext::device_count().map_err(|e| format!("cuDeviceGetCount: {e:?}"))?;
        if n < 1 {
            return Err("CUDA driver present but no GPU".into());
        }
        let ctx = CudaContext::new(0).map_err(|e| format!("cuCtxCreate: {e:?}"))?;
        let name = ctx.name().map_err(|e| format!("{e:?}"))?;
        let vram_bytes = ctx.total_mem().map_err(|e| format!("{e:?}"))? as u64;
        // PTX for the device's own architecture where we know it (faster JIT, better code);
        // the arithmetic is IEEE either way.
        let arch = match ctx.compute_capability() {
            Ok((8, 0)) => Some("compute_80"),
            Ok((8, 6)) => Some("compute_86"),
            Ok((8, 9)) => Some("compute_89"),
            Ok((9, 0)) => Some("compute_90"),
            _ => None,
        };
        let opts = CompileOptions {
            arch,
            ftz: Some(false),
            prec_sqrt: Some(true),
            prec_div: Some(true),
            fmad: Some(false),
            use_fast_math: Some(false),
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(kernel_source(), opts)
            .map_err(|e| format!("NVRTC: {e:?}"))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| format!("load_module: {e:?}"))?;
        let stream = ctx.default_stream();
        let sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .unwrap_or(1) as usize;
        Ok(CudaBackend {
            name,
            vram_bytes,
            device_count: n as usize,
            sms,
            ctx,
            stream,
            module,
        })
    }

    fn f(&self, name: &str) -> Result<CudaFunction> {
        self.module.load_function(name).map_err(ce)
    }

    /// The stream (for benchmarks).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The context (for benchmarks).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Device-resident deterministic matmul `c = a·b (+bias)` (benchmarks use this).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_dev(
        &self,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        bias: Option<&CudaSlice<f32>>,
        c: &mut CudaSlice<f32>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<()> {
        // Big grids: 128×128 tiles; otherwise 64×64 tiles to fill the SMs. Same bits.
        let big = m.div_ceil(128) * n.div_ceil(128) >= self.sms.max(1);
        let (f, t) = if big {
            (self.f("matmul_f32")?, 128)
        } else {
            (self.f("matmul_f32_64")?, 64)
        };
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(t) as u32, m.div_ceil(t) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (mi, ni, ki) = (m as i32, n as i32, k as i32);
        let hb: i32 = i32::from(bias.is_some());
        let mut lb = self.stream.launch_builder(&f);
        lb.arg(a)
            .arg(b)
            .arg(bias.unwrap_or(a))
            .arg(c)
            .arg(&mi)
            .arg(&ni)
            .arg(&ki)
            .arg(&hb);
        // SAFETY: argument list matches the kernel signature; buffers hold m*k, k*n, n and
        // m*n floats as the kernel indexes them (bounds-checked on m, n, k).
        unsafe { lb.launch(cfg) }.map_err(ce)?;
        Ok(())
    }

    /// Runs one non-host op on the GPU (upload, launch, download).
    pub fn run_op(
        &self,
        op: &Op,
        ins: &[&Tensor],
        out_shape: &[usize],
        ctx: &OpCtx<'_>,
    ) -> Result<Tensor> {
        let node = ctx.node;
        let s = &self.stream;
        let n_out = numel(out_shape);
        if n_out == 0 {
            return Tensor::f32(out_shape.to_vec(), Vec::new());
        }
        let up = |i: usize| -> Result<CudaSlice<f32>> {
            let t = ins
                .get(i)
                .ok_or_else(|| ExecError::node(node, op.name(), "missing input"))?;
            s.clone_htod(t.as_f32(node)?).map_err(ce)
        };
        let shape =
            |i: usize| -> Vec<usize> { ins.get(i).map(|t| t.shape.clone()).unwrap_or_default() };
        let mut out = s.alloc_zeros::<f32>(n_out).map_err(ce)?;
        let last = out_shape.last().copied().unwrap_or(1).max(1);
        let rows = (n_out / last) as i32;
        let li = last as i32;
        match op {
            Op::MatMul => {
                let (a, b) = (up(0)?, up(1)?);
                let bias = if ins.len() == 3 { Some(up(2)?) } else { None };
                let (m, k, n) = (shape(0)[0], shape(0)[1], shape(1)[1]);
                self.matmul_dev(&a, &b, bias.as_ref(), &mut out, m, k, n)?;
            }
            Op::QMatMul => {
                let x = up(0)?;
                let w = s.clone_htod(ins[1].as_i8(node)?).map_err(ce)?;
                let ws = up(2)?;
                let (m, k, n) = (shape(0)[0], shape(0)[1], shape(1)[1]);
                let mut q = s.alloc_zeros::<i32>(m * k).map_err(ce)?;
                let mut sx = s.alloc_zeros::<f32>(m).map_err(ce)?;
                let (mi, ni, ki) = (m as i32, n as i32, k as i32);
                let f = self.f("quantize_rows")?;
                let mut lb = s.launch_builder(&f);
                lb.arg(&x).arg(&mut q).arg(&mut sx).arg(&mi).arg(&ki);
                // SAFETY: signature matches; x has m*k, q m*k, sx m elements.
                unsafe { lb.launch(grid(m)) }.map_err(ce)?;
                let f = self.f("qmatmul")?;
                let mut lb = s.launch_builder(&f);
                lb.arg(&q)
                    .arg(&w)
                    .arg(&sx)
                    .arg(&ws)
                    .arg(&mut out)
                    .arg(&mi)
                    .arg(&ni)
                    .arg(&ki);
                // SAFETY: signature matches; sizes as declared by the shapes.
                unsafe { lb.launch(grid(m * n)) }.map_err(ce)?;
            }
            Op::Add | Op::Mul | Op::Scale { .. } | Op::Silu | Op::Gelu => {
                let a = up(0)?;
                let b = if ins.len() > 1 { up(1)? } else { up(0)? };
                let bl = ins.get(1).map(|t| t.len()).unwrap_or(1) as i32;
                let (kind, factor) = match op {
                    Op::Add => (0i32, 0.0f32),
                    Op::Mul => (1, 0.0),
                    Op::Scale { factor } => (2, *factor),
                    Op::Silu => (3, 0.0),
                    _ => (4, 0.0),
                };
                let n = n_out as i32;
                let f = self.f("elementwise")?;
                let mut lb = s.launch_builder(&f);
                lb.arg(&kind)
                    .arg(&a)
                    .arg(&b)
                    .arg(&bl)
                    .arg(&factor)
                    .arg(&mut out)
                    .arg(&n);
                // SAFETY: signature matches; a and out have n elements, b has bl (≥1).
                unsafe { lb.launch(grid(n_out)) }.map_err(ce)?;
            }
            Op::Softmax => {
                let x = up(0)?;
                let f = self.f("softmax_rows")?;
                let mut lb = s.launch_builder(&f);
                lb.arg(&x).arg(&mut out).arg(&rows).arg(&li);
                // SAFETY: signature matches; rows*last elements.
                unsafe { lb.launch(grid(rows as usize)) }.map_err(ce)?;
            }
            Op::RmsNorm { eps } | Op::LayerNorm { eps } => {
                let x = up(0)?;
                let w = up(1)?;
                let layer = i32::from(ins.len() == 3);
                let b = if ins.len() == 3 { up(2)? } else { up(1)? };
                let f = self.f("norm_rows")?;
                let mut lb = s.launch_builder(&f);
                lb.arg(&layer)
                    .arg(&x)
                    .arg(&w)
                    .arg(&b)
                    .arg(eps)
                    .arg(&mut out)
                    .arg(&rows)
                    .arg(&li);
                // SAFETY: signature matches; x/out rows*d, w and b d elements.
                unsafe { lb.launch(grid(rows as usize)) }.map_err(ce)?;
            }
            Op::Rope { heads, base } => {
                let x = up(0)?;
                let hd = last / heads;
                let inv = s.clone_htod(&cpu::rope_inv_freq(hd, *base)).map_err(ce)?;
                let (t, h, hdi) = (rows, *heads as i32, hd as i32);
                let f = self.f("rope")?;
                let mut lb = s.launch_builder(&f);
                lb.arg(&x).arg(&inv).arg(&mut out).arg(&t).arg(&h).arg(&hdi);
                // SAFETY: signature matches; x/out T*d, inv hd/2 elements.
                unsafe { lb.launch(grid(rows as usize * heads * (hd / 2))) }.map_err(ce)?;
            }
            Op::Attention { heads } => {
                let (q, k, v) = (up(0)?, up(1)?, up(2)?);
                let t = rows as usize;
                let hd = last / heads;
                let mut scratch = s.alloc_zeros::<f32>((t * heads * t).max(1)).map_err(ce)?;
                let scale = cpu::attn_scale(hd);
                let (ti, h, hdi) = (t as i32, *heads as i32, hd as i32);
                let f = self.f("attention2")?;
                let mut lb = s.launch_builder(&f);
                lb.arg(&q)
                    .arg(&k)
                    .arg(&v)
                    .arg(&mut out)
                    .arg(&mut scratch)
                    .arg(&ti)
                    .arg(&h)
                    .arg(&hdi)
                    .arg(&scale);
                // SAFETY: signature matches; q/k/v/out T*d, scratch T*heads*T elements.
                unsafe { lb.launch(grid(t * heads)) }.map_err(ce)?;
            }
            Op::Conv2d { stride, pad } => {
                let (x, w, b) = (up(0)?, up(1)?, up(2)?);
                let (xs, ws) = (shape(0), shape(1));
                // [C,H,W] or [1,C,H,W]: the last three dims.
                let xs = &xs[xs.len() - 3..];
                let os = &out_shape[out_shape.len() - 2..];
                let dims: [i32; 12] = [
                    xs[0] as i32,
                    xs[1] as i32,
                    xs[2] as i32,
                    ws[0] as i32,
                    ws[2] as i32,
                    ws[3] as i32,
                    os[0] as i32,
                    os[1] as i32,
                    *stride as i32,
                    *pad as i32,
                    0,
                    0,
                ];
                let f = self.f("conv2d")?;
                let mut lb = s.launch_builder(&f);
                lb.arg(&x).arg(&w).arg(&b).arg(&mut out);
                for d in &dims[..10] {
                    lb.arg(d);
                }
                // SAFETY: signature matches (4 pointers, 10 ints); sizes from the shapes.
                unsafe { lb.launch(grid(n_out)) }.map_err(ce)?;
            }
            // Ops without a CUDA kernel yet (the network ops of imported ONNX graphs) run
            // their CPU kernel on the host: the same bits by construction.
            other => return cpu::run_op(other, ins, out_shape, ctx),
        }
        let v = s.clone_dtoh(&out).map_err(ce)?;
        Tensor::f32(out_shape.to_vec(), v)
    }
}
