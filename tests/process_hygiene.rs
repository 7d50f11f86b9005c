//! cachelab ends everything it starts: after Ctrl-C, SIGTERM or a start-up error no
//! redis-server or postgres is left running and no temp dir is left behind. Each test runs
//! the real binary with its own TMPDIR, so leftovers are easy to see.

mod common;

use common::{
    assert_nothing_left, cachelab, entries, free_port_block, private_tmpdir, processes_mentioning,
    Serve,
};
use std::time::{Duration, Instant};

fn stop_serve_with(signal: i32) {
    let tmp = private_tmpdir();
    let port = free_port_block();
    let serve = Serve::start(tmp.path(), &["--port", &port.to_string()]);
    let lines = &serve.lines;
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(common::get(&format!("http://127.0.0.1:{port}/users/1")));
    assert_eq!(answer.json()["id"], 1);
    let (status, stderr) = serve.signal(signal);
    assert_eq!(status.code(), Some(0), "a clean shutdown exits 0: {stderr}");
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
    let port = free_port_block();
    let mut serve = Serve::start(tmp.path(), &["--port", &port.to_string()]);
    assert!(processes_mentioning(tmp.path()).len() >= 2);
    serve.child.kill().unwrap(); // SIGKILL: no handler, no destructor, no atexit runs
    serve.child.wait().unwrap();
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
