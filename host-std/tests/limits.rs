//! Process limits of `seguro serve`.

mod common;

use common::*;

/// The soft and hard "Max open files" of a running process, from /proc.
#[cfg(target_os = "linux")]
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files line in {limits}"));
    let mut fields = line["Max open files".len()..].split_whitespace();
    let soft = fields.next().unwrap().to_owned();
    let hard = fields.next().unwrap().to_owned();
    (soft, hard)
}

#[cfg(target_os = "linux")]
#[test]
fn serve_raises_its_open_files_limit_to_the_hard_limit() {
    let dir = TempDir::new("nofile");
    // Started with a soft limit of 64, below any hard limit a test machine has.
    let server = Server::start_soft_nofile(&dir, 64);
    let (soft, hard) = open_files_limits(server.child.id());
    assert_eq!(soft, hard, "soft limit not raised to the hard limit");
    let l = server.err.wait_for("open files limit: ");
    assert!(l.contains(&format!("open files limit: {soft} ")), "{l}");
}
