//! cachelab ends everything it starts: after Ctrl-C, SIGTERM or a start-up error no
//! redis-server or postgres is left running and no temp dir is left behind. Each test runs
//! the real binary with its own TMPDIR, so leftovers are easy to see.

mod common;

use common::{cachelab, entries, free_port_pair, private_tmpdir, processes_mentioning};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `cachelab serve` that is killed if the test fails before stopping it, so a
/// failing test leaves nothing running either.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Start `cachelab serve` and wait for the line that says it is ready.
fn start_serve(tmp: &std::path::Path, port: u16) -> (Serve, Vec<String>) {
    let mut child = cachelab()
        .args(["serve", "--port", &port.to_string()])
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let ready = line.starts_with("try:");
            lines.push(line);
            if ready {
                return (Serve(child), lines);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve did not become ready: {lines:?}");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "cachelab did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_nothing_left(tmp: &std::path::Path) {
    let left = processes_mentioning(tmp);
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert!(
        entries(tmp).is_empty(),
        "temp files left behind: {:?}",
        entries(tmp)
    );
}

fn stop_serve_with(signal: i32) {
    let tmp = private_tmpdir();
    let port = free_port_pair();
    let (mut serve, lines) = start_serve(tmp.path(), port);
    let child = &mut serve.0;
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("http://127.0.0.1:{port}"))),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("redis-cli -p ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("psql postgres://")),
        "{lines:?}"
    );
    let running = processes_mentioning(tmp.path());
    assert!(
        running.len() >= 2,
        "redis-server and postgres run under the test's TMPDIR: {running:?}"
    );
    let answer = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/users/1")])
        .output();
    if let Ok(out) = answer {
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"id\":1"));
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let status = wait_exit(child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0");
    assert_nothing_left(tmp.path());
}

#[test]
fn ctrl_c_on_serve_ends_redis_and_postgres_and_removes_the_temp_dir() {
    stop_serve_with(libc::SIGINT);
}

#[test]
fn sigterm_on_serve_ends_redis_and_postgres_and_removes_the_temp_dir() {
    stop_serve_with(libc::SIGTERM);
}

#[test]
fn an_error_during_start_up_exits_2_and_leaves_nothing_behind() {
    let tmp = private_tmpdir();
    // The stack starts, then binding the server fails: the port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = cachelab()
        .args(["serve", "--port", &port.to_string()])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error:") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
    assert_nothing_left(tmp.path());
}

#[test]
fn a_missing_server_binary_is_one_line_naming_it_and_its_package() {
    let tmp = private_tmpdir();
    let empty_path = private_tmpdir();
    let out = cachelab()
        .args(["serve", "--port", "0"])
        .env("TMPDIR", tmp.path())
        .env("PATH", empty_path.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("redis-server") && stderr.contains("apt-get install -y redis-server"),
        "{stderr}"
    );
    assert_nothing_left(tmp.path());
}

#[test]
fn even_a_sigkilled_cachelab_takes_redis_and_postgres_with_it() {
    let tmp = private_tmpdir();
    let port = free_port_pair();
    let (mut serve, _) = start_serve(tmp.path(), port);
    assert!(processes_mentioning(tmp.path()).len() >= 2);
    serve.0.kill().unwrap(); // SIGKILL: no handler, no destructor, no atexit runs
    serve.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(tmp.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}",
            processes_mentioning(tmp.path())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The temp dir cannot be removed by a SIGKILLed process; the next start sweeps it.
    assert_eq!(entries(tmp.path()).len(), 1, "{:?}", entries(tmp.path()));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = cachelab()
        .args([
            "serve",
            "--port",
            &taken.local_addr().unwrap().port().to_string(),
        ])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_nothing_left(tmp.path());
}
