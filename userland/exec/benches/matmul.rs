//! Deterministic matmul throughput: CPU vs the `matrixmultiply` crate's sgemm, and (when a
//! GPU is present) the NVRTC kernel vs cuBLAS sgemm. Prints a table.
//! Usage: `cargo bench -p havn-exec --bench matmul [-- --sizes 128,256,512,1024 --gpu-sizes 1024,2048,4096 --no-workloads]`
//! Besides the table, each size prints `BENCH matmul_{cpu,gpu}_n<N> value GFLOP/s baseline ratio`.

use std::time::Instant;

fn arg(name: &str, default: &str) -> Vec<usize> {
    let args: Vec<String> = std::env::args().collect();
    let v = args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string());
    v.split(',').filter_map(|s| s.parse().ok()).collect()
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    let s = havn_exec::rng::Stream {
        seed: 99,
        node: seed,
    };
    (0..n as u64).map(|i| s.uniform(i) - 0.5).collect()
}

/// Best-of-reps seconds for one call of `f`.
fn time(mut f: impl FnMut(), min_secs: f64) -> f64 {
    f();
    let mut best = f64::MAX;
    let start = Instant::now();
    let mut reps = 0;
    while reps < 3 || (start.elapsed().as_secs_f64() < min_secs && reps < 50) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
    }
    best
}

fn main() {
    let sizes = arg("--sizes", "128,256,512,1024");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "CPU deterministic matmul vs matrixmultiply::sgemm (GFLOP/s, best of reps; AVX2+FMA: {})",
        havn_exec::cpu::simd_available()
    );
    println!(
        "{:>6} | {:>10} | {:>14} | {:>6} | {:>12}",
        "n",
        "det 1T",
        "mm::sgemm 1T",
        "ratio",
        format!("det {threads}T")
    );
    let mut bench_lines = Vec::new();
    for &n in &sizes {
        let a = data(n * n, 1);
        let b = data(n * n, 2);
        let flops = 2.0 * (n as f64).powi(3);
        let det1 = time(
            || {
                drop(std::hint::black_box(havn_exec::cpu::matmul(
                    &a, &b, None, n, n, n, 1,
                )))
            },
            0.5,
        );
        let detn = time(
            || {
                drop(std::hint::black_box(havn_exec::cpu::matmul(
                    &a, &b, None, n, n, n, threads,
                )))
            },
            0.5,
        );
        let mut c = vec![0.0f32; n * n];
        let mm = time(
            || {
                // SAFETY: a, b, c are n×n row-major buffers matching the strides given.
                unsafe {
                    matrixmultiply::sgemm(
                        n,
                        n,
                        n,
                        1.0,
                        a.as_ptr(),
                        n as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
                std::hint::black_box(&c);
            },
            0.5,
        );
        let g = |t: f64| flops / t / 1e9;
        println!(
            "{:>6} | {:>10.1} | {:>14.1} | {:>6.2} | {:>12.1}",
            n,
            g(det1),
            g(mm),
            mm / det1,
            g(detn)
        );
        bench_lines.push(format!(
            "BENCH matmul_cpu_n{n} {:.2} GFLOP/s {:.2} {:.3}",
            g(det1),
            g(mm),
            mm / det1
        ));
    }
    gpu(&arg("--gpu-sizes", "1024,2048,4096"), &mut bench_lines);
    if !std::env::args().any(|a| a == "--no-workloads") {
        workloads();
    }
    for l in bench_lines {
        println!("{l}");
    }
}

/// Wall time of each shipped workload at the Large preset, CPU vs CUDA (when present),
/// and whether their runtime hashes agree.
fn workloads() {
    use havn_exec::exec::{preflight, Job, RunOptions};
    use havn_exec::workloads::{build, Size, NAMES};
    let cuda = havn_exec::Executor::with_backend(havn_exec::BackendKind::Cuda, 0).ok();
    println!("Workloads (Large preset): wall ms");
    println!(
        "{:>10} | {:>6} | {:>9} | {:>9} | hashes",
        "workload", "nodes", "cpu", "cuda"
    );
    for name in NAMES {
        let Ok(wl) = build(name, Size::Large) else {
            continue;
        };
        let mut reg = havn_exec::ManifestRegistry::new();
        let checksum = reg.register(&wl.manifest);
        let job = Job {
            checksum,
            manifest: wl.manifest,
            weights: wl.weights,
            inputs_cid: havn_proto::Cid::of_bytes(&wl.default_inputs),
            inputs: wl.default_inputs,
            seed: 1,
        };
        let Ok(p) = preflight(&reg, &job) else {
            continue;
        };
        let t = Instant::now();
        let Ok(c) = havn_exec::Executor::cpu(0).execute(&p, &RunOptions::default()) else {
            continue;
        };
        let tc = t.elapsed().as_secs_f64() * 1e3;
        let (tg, same) = match &cuda {
            Some(g) => {
                let t = Instant::now();
                match g.execute(&p, &RunOptions::default()) {
                    Ok(r) => (
                        format!("{:.0}", t.elapsed().as_secs_f64() * 1e3),
                        if r.runtime_hash == c.runtime_hash {
                            "identical"
                        } else {
                            "DIFFER"
                        },
                    ),
                    Err(e) => (format!("err {e}"), "-"),
                }
            }
            None => ("-".into(), "-"),
        };
        println!(
            "{:>10} | {:>6} | {:>9.0} | {:>9} | {}",
            name,
            c.node_ids.len(),
            tc,
            tg,
            same
        );
    }
}

#[cfg(feature = "cuda")]
fn gpu(sizes: &[usize], bench_lines: &mut Vec<String>) {
    use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
    let g = match havn_exec::gpu_backend() {
        Ok(g) => g,
        Err(reason) => {
            println!("GPU: skipping: no CUDA driver ({reason})");
            return;
        }
    };
    println!(
        "GPU {}: deterministic NVRTC matmul vs cuBLAS sgemm (GFLOP/s)",
        g.name
    );
    // SAFETY: only tries to dlopen libcublas.
    let blas = if unsafe { cudarc::cublas::sys::is_culib_present() } {
        std::panic::catch_unwind(|| CudaBlas::new(g.stream().clone()))
            .ok()
            .and_then(|r| r.ok())
    } else {
        None
    };
    if blas.is_none() {
        println!("(cuBLAS not loadable: only the deterministic kernel is timed)");
    }
    println!(
        "{:>6} | {:>10} | {:>10} | {:>6} | det == CPU (bits)",
        "n", "det", "cuBLAS", "ratio"
    );
    let s = g.stream();
    for &n in sizes {
        let ha = data(n * n, 3);
        let hb = data(n * n, 4);
        let (Ok(a), Ok(b), Ok(mut c)) = (
            s.clone_htod(&ha),
            s.clone_htod(&hb),
            s.alloc_zeros::<f32>(n * n),
        ) else {
            println!("{n}: allocation failed");
            continue;
        };
        let flops = 2.0 * (n as f64).powi(3);
        let tdet = time(
            || {
                let _ = g.matmul_dev(&a, &b, None, &mut c, n, n, n);
                let _ = s.synchronize();
            },
            1.0,
        );
        // Bit check against the CPU for moderate sizes (the CPU side is slow for big n).
        let same = if n <= 2048 {
            let gpu_c = s.clone_dtoh(&c).unwrap_or_default();
            let cpu_c = havn_exec::cpu::matmul(
                &ha,
                &hb,
                None,
                n,
                n,
                n,
                std::thread::available_parallelism()
                    .map(|x| x.get())
                    .unwrap_or(1),
            );
            if gpu_c
                .iter()
                .zip(&cpu_c)
                .all(|(x, y)| x.to_bits() == y.to_bits())
            {
                "identical"
            } else {
                "DIFFERS"
            }
        } else {
            "not checked"
        };
        let tblas = blas.as_ref().map(|bl| {
            time(
                || {
                    let cfg = GemmConfig {
                        transa: cublasOperation_t::CUBLAS_OP_N,
                        transb: cublasOperation_t::CUBLAS_OP_N,
                        m: n as i32,
                        n: n as i32,
                        k: n as i32,
                        alpha: 1.0f32,
                        lda: n as i32,
                        ldb: n as i32,
                        beta: 0.0f32,
                        ldc: n as i32,
                    };
                    // SAFETY: column-major C^T = B^T·A^T on n×n device buffers.
                    let _ = unsafe { bl.gemm(cfg, &b, &a, &mut c) };
                    let _ = s.synchronize();
                },
                1.0,
            )
        });
        let gf = |t: f64| flops / t / 1e9;
        bench_lines.push(match tblas {
            Some(tb) => format!(
                "BENCH matmul_gpu_n{n} {:.1} GFLOP/s {:.1} {:.3}",
                gf(tdet),
                gf(tb),
                tb / tdet
            ),
            None => format!("BENCH matmul_gpu_n{n} {:.1} GFLOP/s nan nan", gf(tdet)),
        });
        match tblas {
            Some(tb) => println!(
                "{:>6} | {:>10.0} | {:>10.0} | {:>6.2} | {}",
                n,
                gf(tdet),
                gf(tb),
                tb / tdet,
                same
            ),
            None => println!(
                "{:>6} | {:>10.0} | {:>10} | {:>6} | {}",
                n,
                gf(tdet),
                "-",
                "-",
                same
            ),
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn gpu(_: &[usize], _: &mut Vec<String>) {
    println!("GPU: skipping: built without the `cuda` feature");
}
