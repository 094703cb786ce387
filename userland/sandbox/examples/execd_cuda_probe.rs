//! Checks the execd sandbox (profile + seccomp policy) against the real CUDA driver
//! on a GPU machine: `execd_cuda_probe launch <none|trap|kill>` starts itself with
//! `Profile::for_daemon(Execd)` and, in the child, installs the execd policy
//! (`trap`: forbidden syscalls are reported and fail with ENOSYS instead of
//! killing; `kill`: the production filter, via `havn_sandbox::enter`), then runs
//! cuInit → context → alloc → PTX JIT load → kernel launch → copy back via
//! `dlopen("libcuda.so.1")`. Prints `cuda ok` on success.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::os::unix::process::ExitStatusExt;

type CuResult = c_int;

const PTX: &CStr = c"
.version 7.0
.target sm_50
.address_size 64
.visible .entry fill(.param .u64 p, .param .u32 v)
{
  .reg .b64 %rd<2>;
  .reg .b32 %r<2>;
  ld.param.u64 %rd1, [p];
  ld.param.u32 %r1, [v];
  cvta.to.global.u64 %rd1, %rd1;
  st.global.u32 [%rd1], %r1;
  ret;
}
";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (
        args.get(1).map(String::as_str),
        args.get(2).map(String::as_str),
    ) {
        (Some("launch"), Some(mode)) => launch(mode),
        (Some("child"), Some(mode)) => child(mode),
        _ => {
            eprintln!("usage: execd_cuda_probe launch <none|trap|kill>");
            std::process::exit(2)
        }
    }
}

fn launch(mode: &str) {
    let exe = std::env::current_exe().expect("exe");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["child", mode]);
    havn_sandbox::Profile::for_daemon(havn_sandbox::DaemonKind::Execd, "nobody")
        .expect("profile")
        .pass_env("LD_LIBRARY_PATH")
        .install(&mut cmd)
        .expect("install");
    let st = cmd.status().expect("spawn");
    println!(
        "child ({mode}): exit {:?} signal {:?}",
        st.code(),
        st.signal()
    );
    std::process::exit(if st.success() { 0 } else { 1 });
}

extern "C" fn on_sigsys(_: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: kernel-provided siginfo for SIGSYS: si_syscall at byte offset 24 on
    // x86_64; ucontext is valid for the handler's duration.
    unsafe {
        let nr = *(info as *const u8).add(24).cast::<c_int>();
        let mut buf = *b"TRAPPED syscall 0000\n";
        let mut n = nr;
        for i in (16..20).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        libc::write(2, buf.as_ptr().cast(), buf.len());
        let uc = ctx.cast::<libc::ucontext_t>();
        (*uc).uc_mcontext.gregs[libc::REG_RAX as usize] = -(libc::ENOSYS as i64);
    }
}

fn child(mode: &str) {
    let st = havn_sandbox::ProcStatus::read_self().expect("status");
    println!(
        "uid {:?} capeff {:x} capbnd {:x} nnp {}",
        st.uid, st.cap_eff, st.cap_bnd, st.no_new_privs
    );
    match mode {
        "none" => {}
        "kill" => havn_sandbox::enter(havn_sandbox::DaemonKind::Execd).expect("enter"),
        "trap" => {
            // SAFETY: installs a SIGSYS handler that only writes and edits ucontext.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigsys as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO;
                libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
            }
            let mut prog = havn_sandbox::program(havn_sandbox::DaemonKind::Execd);
            for i in &mut prog {
                if i.code == 0x06 && i.k == 0x8000_0000 {
                    i.k = 0x0003_0000; // SECCOMP_RET_TRAP
                }
            }
            seccompiler::apply_filter_all_threads(&prog).expect("apply");
        }
        other => panic!("mode {other}"),
    }
    println!("sandbox {mode} installed");
    // SAFETY: FFI into the CUDA driver API with the documented signatures.
    unsafe { cuda() };
}

macro_rules! sym {
    ($lib:expr, $name:literal, $ty:ty) => {{
        let p = libc::dlsym($lib, concat!($name, "\0").as_ptr().cast());
        assert!(!p.is_null(), "missing {}", $name);
        std::mem::transmute::<*mut c_void, $ty>(p)
    }};
}

unsafe fn cuda() {
    // SAFETY: the whole function is raw driver API calls with valid pointers.
    unsafe {
        let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW);
        if lib.is_null() {
            println!("no libcuda.so.1: skipped");
            return;
        }
        let check = |what: &str, r: CuResult| {
            println!("{what}: {r}");
            if r != 0 {
                std::process::exit(5);
            }
        };
        let cu_init = sym!(lib, "cuInit", extern "C" fn(c_uint) -> CuResult);
        let count = sym!(
            lib,
            "cuDeviceGetCount",
            extern "C" fn(*mut c_int) -> CuResult
        );
        let dev_get = sym!(
            lib,
            "cuDeviceGet",
            extern "C" fn(*mut c_int, c_int) -> CuResult
        );
        let ctx_create = sym!(
            lib,
            "cuCtxCreate_v2",
            extern "C" fn(*mut *mut c_void, c_uint, c_int) -> CuResult
        );
        let alloc = sym!(
            lib,
            "cuMemAlloc_v2",
            extern "C" fn(*mut u64, usize) -> CuResult
        );
        let dtoh = sym!(
            lib,
            "cuMemcpyDtoH_v2",
            extern "C" fn(*mut c_void, u64, usize) -> CuResult
        );
        let load = sym!(
            lib,
            "cuModuleLoadData",
            extern "C" fn(*mut *mut c_void, *const c_void) -> CuResult
        );
        let getf = sym!(
            lib,
            "cuModuleGetFunction",
            extern "C" fn(*mut *mut c_void, *mut c_void, *const c_char) -> CuResult
        );
        let launch = sym!(
            lib,
            "cuLaunchKernel",
            extern "C" fn(
                *mut c_void,
                c_uint,
                c_uint,
                c_uint,
                c_uint,
                c_uint,
                c_uint,
                c_uint,
                *mut c_void,
                *mut *mut c_void,
                *mut *mut c_void,
            ) -> CuResult
        );
        let sync = sym!(lib, "cuCtxSynchronize", extern "C" fn() -> CuResult);
        let free = sym!(lib, "cuMemFree_v2", extern "C" fn(u64) -> CuResult);
        let destroy = sym!(
            lib,
            "cuCtxDestroy_v2",
            extern "C" fn(*mut c_void) -> CuResult
        );
        check("cuInit", cu_init(0));
        let mut n = 0;
        check("cuDeviceGetCount", count(&mut n));
        println!("devices: {n}");
        let mut dev = 0;
        check("cuDeviceGet", dev_get(&mut dev, 0));
        let mut ctx = std::ptr::null_mut();
        check("cuCtxCreate", ctx_create(&mut ctx, 0, dev));
        let mut dptr = 0u64;
        check("cuMemAlloc", alloc(&mut dptr, 4));
        let mut module = std::ptr::null_mut();
        check(
            "cuModuleLoadData (PTX JIT)",
            load(&mut module, PTX.as_ptr().cast()),
        );
        let mut f = std::ptr::null_mut();
        check(
            "cuModuleGetFunction",
            getf(&mut f, module, c"fill".as_ptr()),
        );
        let mut v: u32 = 0xC0FFEE;
        let mut params = [
            (&mut dptr as *mut u64).cast::<c_void>(),
            (&mut v as *mut u32).cast(),
        ];
        check(
            "cuLaunchKernel",
            launch(
                f,
                1,
                1,
                1,
                1,
                1,
                1,
                0,
                std::ptr::null_mut(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            ),
        );
        check("cuCtxSynchronize", sync());
        let mut out: u32 = 0;
        check("cuMemcpyDtoH", dtoh((&mut out as *mut u32).cast(), dptr, 4));
        assert_eq!(out, 0xC0FFEE, "kernel result");
        check("cuMemFree", free(dptr));
        check("cuCtxDestroy", destroy(ctx));
        println!("cuda ok");
    }
}
