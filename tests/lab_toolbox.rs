//! The lab author's toolbox as a user meets it: `cachelab list`, `cachelab new` (a
//! skeleton that passes), `cachelab run --filter`, `cachelab api --json` (which documents
//! every field `load()` really returns), and errors on nested maps that name the map.

mod common;

use common::{cachelab, run, Labs};
use serde_json::Value;

fn stdout_of(args: &[&str], dir: &std::path::Path) -> (Option<i32>, String, String) {
    let out = cachelab().args(args).current_dir(dir).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_shows_each_labs_file_title_first_description_line_and_markers() {
    let dir = tempfile::tempdir().unwrap();
    let labs = dir.path().join("labs");
    std::fs::create_dir_all(labs.join("app")).unwrap();
    std::fs::write(
        labs.join("alpha.rhai"),
        "// Alpha shows things\n//\n// The first line of what it shows.\n// A second line.\ncheck(\"x\", true);\n",
    )
    .unwrap();
    std::fs::write(
        labs.join("beta.rhai"),
        "// Beta on one node\n// single-node: it reads one Redis\n// Why beta.\ncheck(\"x\", true);\n",
    )
    .unwrap();
    std::fs::write(
        labs.join("app/gamma.rhai"),
        "// Gamma against your app\ncheck(\"x\", true);\n",
    )
    .unwrap();
    let (code, out, err) = stdout_of(&["list"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("labs/alpha.rhai  Alpha shows things"), "{out}");
    assert!(
        out.contains("    The first line of what it shows."),
        "{out}"
    );
    assert!(!out.contains("A second line"), "{out}");
    assert!(out.contains("Beta on one node  [single-node]"), "{out}");
    assert!(out.contains("    Why beta."), "{out}");
    assert!(
        out.contains("labs/app/gamma.rhai  Gamma against your app  [app]"),
        "{out}"
    );

    let (code, _, err) = stdout_of(&["list", "nowhere"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn new_writes_a_skeleton_that_passes_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = stdout_of(&["new", "my-first-lab"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("wrote my-first-lab.rhai"), "{out}");
    let file = dir.path().join("my-first-lab.rhai");
    let source = std::fs::read_to_string(&file).unwrap();
    assert!(source.starts_with("// my first lab: "), "{source}");
    assert_eq!(source.matches("load(").count(), 1);

    let r = run(&[], &[&file]);
    assert_eq!(
        r.code, 0,
        "the skeleton passes:\n{}\n{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stdout
            .contains("1 lab: 1 passed, 0 failed · 2 checks: 2 passed, 0 failed"),
        "{}",
        r.stdout
    );

    let (code, _, err) = stdout_of(&["new", "my-first-lab"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("exists already"), "{err}");
}

#[test]
fn run_filter_runs_only_the_labs_whose_name_or_title_matches() {
    let labs = Labs::new();
    labs.add(
        "one-stampede.rhai",
        "// First\ncheck(\"first ran\", true);\n",
    );
    labs.add(
        "two.rhai",
        "// Second about a Stampede\ncheck(\"second ran\", true);\n",
    );
    labs.add("three.rhai", "// Third\ncheck(\"third ran\", true);\n");
    let folder = labs.dir.path();
    let r = run(&["--filter", "STAMPEDE"], &[folder]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("first ran") && r.stdout.contains("second ran"));
    assert!(!r.stdout.contains("third ran"), "{}", r.stdout);
    let r = run(&["--filter", "nothing-like-it"], &[folder]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no lab"), "{}", r.stderr);
}

/// The names `api --json` documents for the map `map`, and the words of their docs.
fn documented(api: &Value, map: &str) -> (Vec<String>, String) {
    let entry = api["returns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["map"] == map)
        .unwrap_or_else(|| panic!("{map} is not documented"));
    let fields = entry["fields"].as_array().unwrap();
    let names = fields
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let docs = fields
        .iter()
        .map(|f| f["doc"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    (names, docs)
}

#[test]
fn api_json_documents_every_field_load_returns() {
    let out = cachelab().args(["api", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let api: Value = serde_json::from_slice(&out.stdout).expect("api --json is JSON");
    assert!(api["functions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "load" && f["group"] == "load"));
    for map in ["load().consistency", "redis_nodes()[]", "load().events[]"] {
        documented(&api, map);
    }
    let counters: Vec<&str> = api["counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();

    let labs = Labs::new();
    let lab = labs.add(
        "keys.rhai",
        r#"// The fields load() returns
let r = load(#{path: "/users/{id}", n: 50, c: 2, mix: #{get: 80, put: 20}, history: true, trace: true});
let rows = [["key"]];
for k in r.keys() { rows.push([k]); }
table("load", rows);
let rows = [["key"]];
for k in r.timeline[0].keys() { rows.push([k]); }
table("timeline", rows);
check("ran", r.requests == 50);
"#,
    );
    let json_path = labs.dir.path().join("r.json");
    let r = run(&["--json", json_path.to_str().unwrap()], &[&lab]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let keys = |title: &str| -> Vec<String> {
        report["labs"][0]["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "table" && e["title"] == title)
            .unwrap()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[0].as_str().unwrap().to_string())
            .collect()
    };
    for (map, real) in [
        ("load() / stampede() / load_wait()", keys("load")),
        ("load().timeline[]", keys("timeline")),
    ] {
        let (names, docs) = documented(&api, map);
        for key in real {
            assert!(
                names.contains(&key) || docs.contains(&key) || counters.contains(&key.as_str()),
                "{map}: field `{key}` is not documented by `cachelab api`"
            );
        }
    }
}

#[test]
fn errors_on_nested_maps_name_the_map_they_read() {
    let labs = Labs::new();
    let cases = [
        (
            "consistency.rhai",
            "let r = load(#{path: \"/users/{id}\", n: 20, c: 2, mix: #{get: 50, put: 50}, history: true});\nlet x = r.consistency.stale;\n",
            &["r.consistency.stale: no such field", "load().consistency has: ", "stale_reads"][..],
            "load() returns has",
        ),
        (
            "timeline.rhai",
            "let r = load(#{path: \"/users/{id}\", n: 20, c: 2});\nlet x = r.timeline[0].db_read;\n",
            &["did you mean `db_reads`?", "load().timeline[] has: "],
            "load() returns has",
        ),
        (
            "status.rhai",
            "let r = load(#{path: \"/users/{id}\", n: 20, c: 2});\nlet x = r.status[200];\n",
            &["keys are strings", "status[\"200\"]"],
            "Data type incorrect",
        ),
    ];
    for (name, source, wanted, unwanted) in cases {
        let file = labs.add(name, &format!("// {name}\n{source}"));
        let r = run(&[], &[&file]);
        assert_eq!(r.code, 2, "{}", r.stdout);
        for w in wanted {
            assert!(r.stdout.contains(w), "{w:?} missing:\n{}", r.stdout);
        }
        assert!(!r.stdout.contains(unwanted), "{}", r.stdout);
    }
}
