//! `cachelab new NAME`: write NAME.rhai, a lab skeleton that passes as it is (a title, a
//! description, one load, two checks), for an author to change into their own lab.

use std::io::Write;
use std::path::PathBuf;

use crate::output::Printer;

/// The skeleton; `{title}` becomes the lab's name.
const SKELETON: &str = r#"// {title}: what this lab shows, in one line
//
// Say here what the lab demonstrates and why, in a few lines: the report prints
// this under the title. `cachelab api` lists every function and the fields of
// the maps they return.

use_strategy("cache-aside");

// Read 20 users 400 times: after each one's first read, the cache answers.
let r = load(#{path: "/users/{id}", ids: [1, 20], n: 400, c: 4, label: "20 users, read again and again"});

check_eq("every request was answered", r.ok, 400);
check_ge("most reads were cache hits", r.hit_ratio, 0.5);
"#;

pub fn new(name: &str) -> u8 {
    let mut path = PathBuf::from(name);
    if path.extension().is_none_or(|x| x != "rhai") {
        path.set_extension("rhai");
    }
    let title = path
        .file_stem()
        .map(|s| s.to_string_lossy().replace(['-', '_'], " "))
        .unwrap_or_else(|| name.to_string());
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| file.write_all(SKELETON.replace("{title}", &title).as_bytes()));
    match written {
        Ok(()) => {
            Printer::stdout().line(&format!(
                "wrote {0}; run it with: cachelab run {0}",
                path.display()
            ));
            crate::exit::OK
        }
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
                "it exists already; choose another name".to_string()
            } else {
                e.to_string()
            };
            Printer::stderr().line(&format!("error: writing {}: {why}", path.display()));
            crate::exit::ERROR
        }
    }
}
