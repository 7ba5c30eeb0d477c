//! Shared by the client's integration tests: the real `strata dev` binary
//! on free ports and a temp dir, killed when dropped.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `strata dev`.
pub struct Server {
    child: Child,
    /// The Kafka listener, `127.0.0.1:<port>`.
    pub address: String,
    /// The catalog's gRPC listener, `127.0.0.1:<port>`.
    pub catalog: String,
    /// The data directory (objects under `objects/`).
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "strata dev of the failed test: catalog {}, data dir {}",
                self.catalog,
                self.dir.path().display()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `strata` binary under test: `$STRATA_BIN` when set (worktrees that
/// share a target directory overwrite each other's build), else cargo's.
pub fn strata_bin() -> std::path::PathBuf {
    std::env::var_os("STRATA_BIN").map_or_else(|| env!("CARGO_BIN_EXE_strata").into(), Into::into)
}

/// Starts `strata dev` and waits until its Kafka port accepts connections.
/// Ports are picked free but can be taken by a parallel test before the
/// server binds them: a server that exits at start is started again on new
/// ports (three tries), and its log is kept for the failure message.
pub fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("strata-dev.log");
    for _ in 0..3 {
        let port = free_port();
        let catalog = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(strata_bin())
            .args(["dev", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--catalog-listen", &catalog])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--cache-disk-mb", "0"])
            // Records here carry 2023 timestamps: the compactor's retention
            // (7 days by default) would delete them mid-test.
            .args(["--compaction", "false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start strata dev");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Server {
                    child,
                    address: format!("127.0.0.1:{port}"),
                    catalog,
                    dir,
                };
            }
            if child.try_wait().unwrap().is_some() {
                break; // exited at start (a port taken meanwhile): try again
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("strata dev did not start listening within 60 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    panic!("strata dev exited at start three times; the last log:\n{log}");
}
