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
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
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

/// Starts `strata dev` and waits until its Kafka port accepts connections.
pub fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["dev", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--catalog-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--cache-disk-mb", "0"])
        // Records here carry 2023 timestamps: the compactor's retention
        // (7 days by default) would delete them mid-test.
        .args(["--compaction", "false"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start strata dev");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "strata dev did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        address: format!("127.0.0.1:{port}"),
        _dir: dir,
    }
}
