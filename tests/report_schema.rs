//! Both JSON reports, `cachelab run --json` and `cachelab load --json`, are what
//! `docs/report.schema.json` says, and every figure's name carries its unit.

mod common;

use common::{answering_server, cachelab, run, Labs};
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/report.schema.json"
    ))
    .unwrap();
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

fn assert_valid(validator: &jsonschema::Validator, json: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not as the schema says: {errors:#?}");
}

/// Names that used to go without their unit; none may appear anywhere.
const UNITLESS: [&str; 9] = [
    "p50",
    "p90",
    "p99",
    "p999",
    "max",
    "average",
    "fastest",
    "total_s",
    "slowest_ms",
];

fn assert_units(json: &Value, path: &str) {
    match json {
        Value::Object(map) => {
            for (key, value) in map {
                assert!(
                    !UNITLESS.contains(&key.as_str()),
                    "{path}.{key} has no unit in its name"
                );
                assert_units(value, &format!("{path}.{key}"));
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| assert_units(v, &format!("{path}[{i}]"))),
        _ => {}
    }
}

#[test]
fn run_json_with_every_kind_of_event_is_valid_against_the_schema() {
    let labs = Labs::new();
    let lab = labs.add(
        "all.rhai",
        r#"// Every event
check("one", true);
check_eq("two", 2, 2);
note("n");
table("t", ["a", "b"], [[1, "x"]]);
chart("c", #{series: #{"s": [[0, 1.0], [1, 2.0]]}});
let h = load_async(#{path: "/users/{id}", duration_ms: 400, c: 2, mix: #{get: 80, put: 20}, history: true, label: "mixed"});
sleep(150);
fault("redis", "down");
heal("redis");
set_ttl(30);
load_wait(h);
stampede("/users/7", 5);
"#,
    );
    let json_path = labs.dir.path().join("report.json");
    let r = run(&["--json", json_path.to_str().unwrap()], &[&lab]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_valid(&validator(), &json);
    assert_units(&json, "run");
    let kinds: Vec<&str> = json["labs"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["check", "check", "note", "table", "chart", "load", "load"]
    );
    let mixed = &json["labs"][0]["events"][5];
    assert!(mixed["consistency"]["reads"].as_u64().unwrap() > 0);
    let kinds: Vec<&str> = mixed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["fault", "heal", "knob"], "{mixed}");
}

#[test]
fn load_json_is_valid_against_the_schema() {
    let url = answering_server();
    let out = cachelab()
        .args([
            "load",
            &format!("{url}/users/{{id}}"),
            "-n",
            "30",
            "-c",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid(&validator(), &json);
    assert_units(&json, "load");
    assert_eq!(json["requests"], 30);
    assert_eq!(json["cache"]["HIT"], 30);

    // A wrong name is caught: the schema is not a rubber stamp.
    let mut renamed = json.clone();
    let p50 = renamed["p50_ms"].take();
    renamed.as_object_mut().unwrap().remove("p50_ms");
    renamed["p50"] = p50;
    assert!(!validator().is_valid(&renamed));
}
