//! A deliberately misbehaving binary (Firecracker `examples/seccomp/malicious.rs`
//! style): it installs a daemon's seccomp policy, proves it still works by printing a
//! line, then makes one forbidden system call. The tests expect it killed by SIGSYS.
//!
//! Usage: `havn-sandbox-malicious <attestd|execd|netd> <ptrace|mount|packet-socket|execve|unshare|kill|ok>`
//!        `havn-sandbox-malicious status <policy> [path...]` — `enter(policy)`, print
//!        `/proc/self/status`, then try to open each path for reading and for writing
//!        and print the outcomes.

use havn_sandbox::DaemonKind;
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("status") {
        status(&args[1..]);
        return;
    }
    let (Some(policy), Some(what)) = (args.first().and_then(|p| DaemonKind::parse(p)), args.get(1))
    else {
        eprintln!("usage: havn-sandbox-malicious <attestd|execd|netd> <syscall>");
        std::process::exit(2);
    };
    if let Err(e) = havn_sandbox::apply_seccomp(policy) {
        eprintln!("apply: {e}");
        std::process::exit(3);
    }
    println!("filter installed, still alive");
    let _ = std::io::stdout().flush();
    // SAFETY: each call is made to be refused; arguments are valid or null.
    let r = unsafe {
        match what.as_str() {
            "ptrace" => libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0),
            "mount" => libc::mount(
                c"none".as_ptr(),
                c"/mnt".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) as libc::c_long,
            "packet-socket" => {
                libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0x0300) as libc::c_long
            }
            "execve" => {
                let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null()];
                libc::execve(c"/bin/true".as_ptr(), argv.as_ptr(), envp.as_ptr()) as libc::c_long
            }
            "unshare" => libc::unshare(libc::CLONE_NEWNS) as libc::c_long,
            // Signal 0 to init: a probe only, but the call itself is forbidden.
            "kill" => libc::kill(1, 0) as libc::c_long,
            "ok" => 0,
            other => {
                eprintln!("unknown forbidden call {other}");
                std::process::exit(2);
            }
        }
    };
    println!("survived {what}: returned {r}");
}

fn status(args: &[String]) {
    let Some(kind) = args.first().and_then(|p| DaemonKind::parse(p)) else {
        eprintln!("usage: havn-sandbox-malicious status <policy> [path...]");
        std::process::exit(2);
    };
    if let Err(e) = havn_sandbox::enter(kind) {
        println!("enter refused: {e}");
        std::process::exit(4);
    }
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    print!("{text}");
    let open: Vec<String> = (0..256)
        // SAFETY: F_GETFD only queries the descriptor table.
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
        .map(|fd| fd.to_string())
        .collect();
    println!("fds: {}", open.join(" "));
    let mut env: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    env.sort();
    println!("env: {}", env.join(" "));
    for p in &args[1..] {
        match std::fs::File::open(p) {
            Ok(_) => println!("open {p}: ok"),
            Err(e) => println!("open {p}: errno {}", e.raw_os_error().unwrap_or(-1)),
        }
        match std::fs::OpenOptions::new().append(true).open(p) {
            Ok(_) => println!("write {p}: ok"),
            Err(e) => println!("write {p}: errno {}", e.raw_os_error().unwrap_or(-1)),
        }
    }
}
