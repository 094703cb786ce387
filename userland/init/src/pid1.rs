//! What only PID 1 does: mount the kernel filesystems, and power off at the end.

use nix::mount::{mount, MsFlags};
use std::path::Path;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;
const TMPFS_MAGIC: i64 = 0x0102_1994; // devtmpfs reports tmpfs's magic
const SECURITYFS_MAGIC: i64 = 0x7363_6673;

// `f_type` is `long` on glibc and `unsigned long` on musl (the appliance build).
#[allow(clippy::unnecessary_cast)]
fn fs_type(path: &str) -> Option<i64> {
    nix::sys::statfs::statfs(path)
        .ok()
        .map(|s| s.filesystem_type().0 as i64)
}

/// Mounts /proc, /sys, /dev (devtmpfs) and /sys/kernel/security (securityfs, for the
/// TPM event log) where they are not mounted yet. Failures are logged, not fatal:
/// the daemons report what they miss.
pub fn mount_early_filesystems() {
    let table: [(&str, &str, i64, MsFlags); 4] = [
        (
            "/proc",
            "proc",
            PROC_SUPER_MAGIC,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        ),
        (
            "/sys",
            "sysfs",
            SYSFS_MAGIC,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        ),
        ("/dev", "devtmpfs", TMPFS_MAGIC, MsFlags::MS_NOSUID),
        (
            "/sys/kernel/security",
            "securityfs",
            SECURITYFS_MAGIC,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        ),
    ];
    for (target, fstype, magic, flags) in table {
        if fs_type(target) == Some(magic) {
            continue;
        }
        if !Path::new(target).exists() {
            let _ = std::fs::create_dir_all(target);
        }
        match mount(Some(fstype), target, Some(fstype), flags, None::<&str>) {
            Ok(()) => tracing::info!(target, fstype, "mounted"),
            Err(e) => tracing::warn!(target, fstype, error = %e, "mount failed"),
        }
    }
}

/// PID 1 must not exit (the kernel panics): flush and power off.
pub fn power_off() {
    nix::unistd::sync();
    tracing::info!("powering off");
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
}
