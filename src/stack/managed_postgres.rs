//! A throw-away PostgreSQL cluster on a free loopback port.
//!
//! `initdb` is the slow part of a start (seconds), so the first start initialises a
//! template cluster under the user's cache dir and every start copies it (tens of ms).
//! The cluster runs with fsync off and no unix socket. As root, postgres runs as the
//! unprivileged `postgres` (or `nobody`) system user, because postgres refuses root.

use anyhow::{bail, Context};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::managed_redis::log_tail;
use super::{binaries, child::ManagedChild, ports};

/// The superuser the managed cluster is initialised with.
const SUPERUSER: &str = "cachelab";

/// Which OS user owns and runs the cluster.
#[derive(Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A `postgres` this process started and will end; it can be stopped and started again
/// on the same port and data (tests use that to simulate an outage).
pub struct ManagedPostgres {
    child: Option<ManagedChild>,
    binary: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
}

impl ManagedPostgres {
    /// Create a cluster under `dir` (from the cached template when there is one) and start it.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = binaries::postgres_tool("postgres")?;
        let initdb = binaries::postgres_tool("initdb")?;
        let run_as = unprivileged_user()?;
        let data = dir.join("pgdata");
        let from_template = template_dir(&binary).and_then(|template| {
            let copied = ensure_template(&initdb, &template, run_as).and_then(|()| {
                copy_tree(&template, &data)
                    .with_context(|| format!("copying the template cluster {}", template.display()))
            });
            // No usable cache dir (a read-only or missing HOME): initdb every time instead.
            copied
                .inspect_err(|e| tracing::info!("not using a cached template cluster: {e:#}"))
                .ok()
        });
        if from_template.is_none() {
            let _ = std::fs::remove_dir_all(&data);
            run_initdb(&initdb, &data, run_as)?;
        }
        if let Some(user) = run_as {
            chown_tree(dir, user)?;
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
        let mut last_error = None;
        for _ in 0..3 {
            let mut pg = Self {
                child: None,
                binary: binary.clone(),
                data: data.clone(),
                log: dir.join("postgres.log"),
                port: ports::free_port()?,
                run_as,
            };
            match pg.start_again() {
                Ok(()) => return Ok(pg),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Start the server on its port and wait until it accepts connections.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
        let mut command = Command::new(&self.binary);
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .args(["-c", "shared_buffers=32MB"])
            .args(["-c", "log_min_messages=warning"]);
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        // SIGINT is postgres's fast shutdown; SIGQUIT its immediate one.
        let mut child =
            ManagedChild::spawn("postgres", command, &self.log, libc::SIGINT, libc::SIGQUIT)
                .with_context(|| format!("starting postgres on port {}", self.port))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if is_ready(&self.data)
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                self.child = Some(child);
                return Ok(());
            }
            if child.has_exited() {
                bail!(
                    "postgres on port {} exited during start-up: {}",
                    self.port,
                    log_tail(&self.log)
                );
            }
            if Instant::now() > deadline {
                bail!("postgres on port {} was not ready within 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The server's process id while it runs (for SIGSTOP/SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(ManagedChild::pid)
    }

    /// Is the postmaster running (not stopped, not crashed)?
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| !c.has_exited())
    }

    /// Kill the postmaster without warning, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Stop the server (fast shutdown); `start_again` brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop();
        }
    }

    /// The superuser's URL (set-up and the per-lab reset only).
    pub fn url(&self) -> String {
        self.url_as(SUPERUSER)
    }

    /// The URL for another role of this cluster.
    pub fn url_as(&self, role: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/postgres", self.port)
    }
}

/// postgres writes "ready" on line 8 of postmaster.pid once it accepts connections.
fn is_ready(data: &Path) -> bool {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .map(|pid_file| pid_file.lines().nth(7).map(str::trim) == Some("ready"))
        .unwrap_or(false)
}

/// As root, the system user postgres will run as; otherwise `None` (run as ourselves).
fn unprivileged_user() -> anyhow::Result<Option<RunAs>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        // getpwnam_r underneath: safe from any thread.
        if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
            return Ok(Some(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }));
        }
    }
    bail!("running as root, but there is no `postgres` or `nobody` user to run postgres as (postgres refuses root); install postgresql or run as a normal user")
}

/// Where the template cluster for this postgres version lives, if there is a cache dir.
fn template_dir(postgres: &Path) -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let out = Command::new(postgres).arg("--version").output().ok()?;
    // "postgres (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)" -> "15.19"
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version: String = text
        .split_whitespace()
        .nth(2)?
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    Some(
        cache
            .join("cachelab")
            .join(format!("pg-template-{version}")),
    )
}

/// Initialise the template once. initdb runs in a temp dir the postgres user can reach
/// (a root user's home usually is not), and the result is copied into the cache and
/// renamed into place, so concurrent first runs race harmlessly.
fn ensure_template(initdb: &Path, template: &Path, run_as: Option<RunAs>) -> anyhow::Result<()> {
    if template.join("PG_VERSION").exists() {
        return Ok(());
    }
    let parent = template.parent().expect("template has a parent");
    std::fs::create_dir_all(parent)
        .with_context(|| format!("creating cache dir {}", parent.display()))?;
    let building = tempfile::Builder::new()
        .prefix("cachelab-initdb-")
        .tempdir_in(super::scratch_dir())?;
    super::reaper::track_dir(building.path().to_path_buf());
    let data = building.path().join("data");
    let built = run_initdb(initdb, &data, run_as).and_then(|()| {
        let staging = tempfile::Builder::new()
            .prefix(".pg-template-")
            .tempdir_in(parent)?;
        copy_tree(&data, staging.path())?;
        let staged = staging.keep();
        if std::fs::rename(&staged, template).is_err() {
            let _ = std::fs::remove_dir_all(&staged);
            if !template.join("PG_VERSION").exists() {
                bail!(
                    "could not store the template cluster at {}",
                    template.display()
                );
            }
        }
        Ok(())
    });
    super::reaper::untrack_dir(building.path());
    built
}

fn run_initdb(initdb: &Path, data: &Path, run_as: Option<RunAs>) -> anyhow::Result<()> {
    let mut command = Command::new(initdb);
    command.arg("-D").arg(data).args([
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    if let Some(user) = run_as {
        if let Some(parent) = data.parent() {
            chown_tree(parent, user)?;
        }
        command.uid(user.uid).gid(user.gid);
    }
    let out = command.output().context("running initdb")?;
    if !out.status.success() {
        bail!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, user: RunAs) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .with_context(|| format!("handing {} to the postgres user", path.display()))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), user)?;
        }
    }
    Ok(())
}
