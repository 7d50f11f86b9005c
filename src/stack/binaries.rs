//! Finding the server binaries the managed stack runs.
//!
//! `redis-server` comes from PATH; PostgreSQL's `postgres` and `initdb` are often off PATH
//! on Debian, so they are also looked up through `pg_config --bindir` and under
//! `/usr/lib/postgresql/*/bin` (newest version first). A missing binary is one clear line
//! naming it and the package that provides it.

use std::path::{Path, PathBuf};

/// A binary the stack needs but could not find, with the package that provides it.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{binary}` not found (looked on PATH{extra}); install it with: apt-get install -y {package}"
)]
pub struct MissingBinary {
    pub binary: &'static str,
    pub package: &'static str,
    extra: &'static str,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Locate `redis-server`.
pub fn redis_server() -> Result<PathBuf, MissingBinary> {
    on_path("redis-server").ok_or(MissingBinary {
        binary: "redis-server",
        package: "redis-server",
        extra: "",
    })
}

/// Locate a PostgreSQL server binary (`postgres` or `initdb`).
pub fn postgres_tool(name: &'static str) -> Result<PathBuf, MissingBinary> {
    let missing = MissingBinary {
        binary: name,
        package: "postgresql",
        extra: ", via pg_config --bindir and under /usr/lib/postgresql/*/bin",
    };
    if let Some(found) = on_path(name) {
        return Ok(found);
    }
    if let Some(bindir) = pg_config_bindir() {
        let candidate = bindir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, entry.path().join("bin").join(name)))
        })
        .filter(|(_, p)| is_executable(p))
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).ok_or(missing)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = std::process::Command::new(on_path("pg_config")?)
        .arg("--bindir")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
