//! A tokio server workload shaped like havn-netd (multi-thread runtime, TCP accept,
//! per-connection tasks, timers, durable file writes with fsync + rename,
//! `spawn_blocking`), run under the netd seccomp policy by the tests to check that
//! the policy admits what such a server needs.
//!
//! Usage: `netd_workload <state-dir> [--no-sandbox]`; prints `ok` and exits 0.

use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("state dir"));
    if args.next().as_deref() != Some("--no-sandbox") {
        havn_sandbox::apply_seccomp(havn_sandbox::Policy::Netd).expect("apply netd policy");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(serve(dir));
    println!("ok");
}

async fn serve(dir: PathBuf) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        for _ in 0..4 {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.expect("read");
                s.write_all(buf.get(..n).unwrap_or_default())
                    .await
                    .expect("write");
            });
        }
    });
    for i in 0..4u8 {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        c.write_all(&[i; 16]).await.expect("send");
        let mut back = [0u8; 16];
        c.read_exact(&mut back).await.expect("recv");
        assert_eq!(back, [i; 16]);
    }
    server.await.expect("server task");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Durable queue shape: write, fsync, rename, fsync the directory.
    let tmp = dir.join("queue.tmp");
    let mut f = tokio::fs::File::create(&tmp).await.expect("create");
    f.write_all(b"ticket").await.expect("write file");
    f.sync_all().await.expect("fsync");
    drop(f);
    tokio::fs::rename(&tmp, dir.join("queue"))
        .await
        .expect("rename");
    let d = dir.clone();
    tokio::task::spawn_blocking(move || std::fs::File::open(d)?.sync_all())
        .await
        .expect("join")
        .expect("dir fsync");
    let back = tokio::fs::read(dir.join("queue")).await.expect("read back");
    assert_eq!(back, b"ticket");
    let _ = tokio::fs::metadata(dir.join("queue")).await.expect("stat");
}
