//! The shape of the code (DESIGN "Shape of the code"): no two source files import each
//! other, directly or round a longer loop, and no two top-level modules do either. Read
//! from the sources themselves: every `crate::` path in a file is an arrow from that
//! file to the file that defines the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each source file by its module path (`lab::api::load`), with its text.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            // main.rs is the binary's edge; lib.rs only declares the modules.
            if parts == ["main"] || parts == ["lib"] {
                return None;
            }
            Some((parts.join("::"), std::fs::read_to_string(&path).unwrap()))
        })
        .collect()
}

/// The text without comments, so a path in a doc line is no arrow.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path a file names after `crate::`, expanding `use crate::{a, b::{c, d}}`.
fn named_paths(text: &str) -> Vec<String> {
    named_paths_in("", text)
}

/// The same for the file of module `module`, whose `super::` paths are read too.
fn named_paths_in(module: &str, text: &str) -> Vec<String> {
    let code = code_only(text);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        out.extend(expand("", tail));
        rest = tail;
    }
    let mut rest = code.as_str();
    while let Some(at) = rest.find("super::") {
        let mut tail = &rest[at..];
        let mut base: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
        while let Some(next) = tail.strip_prefix("super::") {
            base.pop();
            tail = next;
        }
        out.extend(expand(&base.join("::"), tail));
        rest = tail;
    }
    out
}

/// The paths one `crate::` occurrence names: `a::b::C` or a brace group.
fn expand(prefix: &str, tail: &str) -> Vec<String> {
    let mut path = prefix.to_string();
    let mut chars = tail.char_indices().peekable();
    let mut segment = String::new();
    while let Some((i, c)) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            segment.push(c);
        } else if tail[i..].starts_with("::") {
            if !segment.is_empty() {
                if !path.is_empty() {
                    path.push_str("::");
                }
                path.push_str(&segment);
                segment.clear();
            }
            chars.next();
            if tail[i + 2..].starts_with('{') {
                let group = &tail[i + 3..];
                return split_group(group)
                    .into_iter()
                    .flat_map(|item| expand(&path, &item))
                    .collect();
            }
        } else {
            break;
        }
    }
    if !segment.is_empty() {
        if !path.is_empty() {
            path.push_str("::");
        }
        path.push_str(&segment);
    }
    vec![path]
}

/// The top-level items of a brace group `a, b::{c, d}}`, up to its closing brace; each
/// item ends with `::` so `expand` reads it as a path.
fn split_group(group: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in group.chars() {
        match c {
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' if depth == 0 => break,
            '}' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    items.push(current);
    items
        .into_iter()
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty() && i != "self")
        .map(|i| format!("{i} "))
        .collect()
}

/// The file a path lands in: its longest prefix that is a source file.
fn file_of<'a>(path: &str, files: &'a BTreeSet<String>) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .find_map(|n| files.get(&parts[..n].join("::")))
}

/// Arrows between files: from each file to every other file it names, leaving out the
/// files of the modules that enclose it (a child using its parent's items is how Rust
/// nests modules, not an arrow back up).
fn file_arrows() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let files: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(file, text)| {
            let targets = named_paths_in(file, text)
                .iter()
                .filter_map(|p| file_of(p, &files))
                .filter(|t| *t != file && !file.starts_with(&format!("{t}::")))
                .cloned()
                .collect();
            (file.clone(), targets)
        })
        .collect()
}

/// Every loop in a graph, each as the nodes of one strongly connected component.
fn loops(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|n| (n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in graph.keys() {
        if done.contains(n) || !reachable[n].contains(n) {
            continue;
        }
        let component: Vec<String> = graph
            .keys()
            .filter(|m| reachable[n].contains(*m) && reachable[*m].contains(n))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        out.push(component);
    }
    out
}

/// For a message: the arrows inside one loop.
fn arrows_within(graph: &BTreeMap<String, BTreeSet<String>>, nodes: &[String]) -> String {
    let mut lines = Vec::new();
    for from in nodes {
        for to in graph.get(from).into_iter().flatten() {
            if nodes.contains(to) {
                lines.push(format!("    {from} -> {to}"));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn no_two_source_files_import_each_other_round_any_loop() {
    let arrows = file_arrows();
    assert!(
        arrows.len() > 50,
        "read only {} source files: the walk is broken",
        arrows.len()
    );
    let found = loops(&arrows);
    let shown: Vec<String> = found
        .iter()
        .map(|nodes| format!("  {}:\n{}", nodes.join(", "), arrows_within(&arrows, nodes)))
        .collect();
    assert!(
        found.is_empty(),
        "import loops between files:\n{}",
        shown.join("\n")
    );
}

#[test]
fn no_two_top_level_modules_import_each_other_round_any_loop() {
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, targets) in file_arrows() {
        let from = file.split("::").next().unwrap().to_string();
        let entry = modules.entry(from.clone()).or_default();
        for to in targets {
            let to = to.split("::").next().unwrap().to_string();
            if to != from {
                entry.insert(to);
            }
        }
    }
    let found = loops(&modules);
    let shown: Vec<String> = found
        .iter()
        .map(|nodes| {
            format!(
                "  {}:\n{}",
                nodes.join(", "),
                arrows_within(&modules, nodes)
            )
        })
        .collect();
    assert!(
        found.is_empty(),
        "import loops between top-level modules:\n{}",
        shown.join("\n")
    );
}

#[test]
fn the_path_reader_sees_nested_use_groups() {
    let text = "use crate::a::{b::{C, d}, e};\nlet x = crate::f::g();\n// crate::h in a comment\n";
    assert_eq!(
        named_paths(text),
        vec!["a::b::C", "a::b::d", "a::e", "f::g"]
    );
    let text = "use super::worker::Progress;\nuse super::super::x::{Y, z};\n";
    assert_eq!(
        named_paths_in("load::engine", text),
        vec!["load::worker::Progress", "x::Y", "x::z"]
    );
}
