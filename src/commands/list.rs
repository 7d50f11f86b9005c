//! `cachelab list [DIR]`: the labs in a folder (and its `app/` folder, the target-mode
//! labs), one entry each: file, title, the first line of its description, and markers
//! (`single-node`: skipped on a Redis Cluster; `app`: a target-mode lab).

use std::path::{Path, PathBuf};

use crate::lab;
use crate::output::Printer;

pub fn list(dir: &Path) -> u8 {
    let mut folders = vec![dir.to_path_buf()];
    let app = dir.join("app");
    if app.is_dir() {
        folders.push(app);
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for folder in &folders {
        match lab::collect_files(std::slice::from_ref(folder)) {
            Ok(found) => files.extend(found),
            Err(e) if folder == dir => {
                Printer::stderr().line(&format!("error: {e:#}"));
                return crate::exit::ERROR;
            }
            Err(_) => {}
        }
    }
    let out = Printer::stdout();
    for file in &files {
        let source = match std::fs::read_to_string(file) {
            Ok(source) => source,
            Err(e) => {
                Printer::stderr().line(&format!("error: reading {}: {e}", file.display()));
                return crate::exit::ERROR;
            }
        };
        let (title, description) = lab::header_of(&source, file);
        let mut markers = Vec::new();
        if lab::single_node_reason(&source).is_some() {
            markers.push("single-node");
        }
        if file
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "app")
        {
            markers.push("app");
        }
        let markers = if markers.is_empty() {
            String::new()
        } else {
            format!("  [{}]", markers.join(", "))
        };
        out.line(&format!(
            "{}  {}{}",
            out.bold(&file.display().to_string()),
            title,
            out.dim(&markers)
        ));
        if let Some(first) = description.lines().map(str::trim).find(|l| !l.is_empty()) {
            out.line(&format!("    {}", out.dim(first)));
        }
    }
    crate::exit::OK
}
