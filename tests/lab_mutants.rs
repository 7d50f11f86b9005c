//! A lab whose lesson is a remedy must fail when the remedy is switched off. Each mutant
//! is a shipped lab with a no-op script function shadowing its remedy's setter (Rhai
//! resolves a script function before a registered one), so the lab runs as written but
//! the remedy stays at its default. The mutants run together in one `cachelab run` of a
//! folder — one managed stack for all of them — and each must show a ✗ on the check that
//! guards its remedy. Its own test binary, like shipped_labs, so the labs' timings do not
//! compete with other tests for the two cores.

mod common;

use common::cachelab;
use std::path::Path;

/// A lab, the setter shadowed, and (part of) the name of the check that must fail.
struct Mutant {
    lab: &'static str,
    shadow: &'static str,
    failing: &'static str,
}

const MUTANTS: &[Mutant] = &[
    Mutant {
        lab: "protection",
        shadow: "fn set_protection(m) {}",
        failing: "singleflight: Postgres is read exactly once",
    },
    Mutant {
        lab: "early-refresh",
        shadow: "fn set_protection(m) {}",
        failing: "xfetch: hot keys seldom expire under their readers",
    },
    Mutant {
        lab: "pool-exhaustion",
        shadow: "fn set_protection(m) {}",
        failing: "singleflight: every answer 200",
    },
    Mutant {
        lab: "avalanche",
        shadow: "fn set_ttl_jitter(p) {}",
        // The relative check: with jitter off both peaks are alike in any build, while the
        // absolute "≤ 200 per 100 ms" one passes whenever the servers cannot read faster
        // than that (a debug build on a busy machine peaked at 141-151).
        failing: "without jitter they come together",
    },
    Mutant {
        lab: "penetration",
        shadow: "fn set_negative_ttl(s) {}",
        failing: "each missing id reads Postgres about once",
    },
    Mutant {
        lab: "consistency-under-load",
        shadow: "fn set_invalidation(m) {}",
        failing: "leases prevent them entirely",
    },
    Mutant {
        lab: "near-cache",
        shadow: "fn set_near_cache(m) {}",
        // With L1 never on, the lab's wait for the tracking link asserts.
        failing: "the near cache's tracking link did not come up",
    },
    Mutant {
        lab: "near-cache-partition",
        // The default heartbeat (500 ms) notices a silent link only after 500-1000 ms.
        shadow: "fn set_near_heartbeat(ms) {}",
        failing: "L1 was dropped within two heartbeats of the link going silent",
    },
    Mutant {
        lab: "write-through-race",
        shadow: "fn set_write_guard(m) {}",
        failing: "with the version guard, every pair left Postgres' row cached",
    },
];

/// The lab's source with `shadow` placed right after its header comment, so the title
/// (line 1) and a `// single-node:` line 2 stay where the runner reads them.
fn mutate(source: &str, shadow: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let header = lines.iter().take_while(|l| l.starts_with("//")).count();
    let mut out = lines[..header].join("\n");
    out.push_str(&format!(
        "\n{shadow}   // mutant: the remedy's setter does nothing\n"
    ));
    out.push_str(&lines[header..].join("\n"));
    out.push('\n');
    out
}

/// The report of one lab in a folder run: from its title line (which names its file) up
/// to the next lab's title line.
fn section<'a>(stdout: &'a str, file: &str) -> Option<&'a str> {
    let start = stdout.find(&format!("{file})"))?;
    let start = stdout[..start].rfind('\n').map_or(0, |i| i + 1);
    let rest = &stdout[start..];
    let end = rest[1..]
        .find(".rhai)  ")
        .and_then(|i| rest[..i + 1].rfind('\n'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[test]
fn every_remedy_lab_fails_with_its_remedy_switched_off() {
    let labs = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs");
    let dir = tempfile::tempdir().unwrap();
    for m in MUTANTS {
        let source = std::fs::read_to_string(labs.join(format!("{}.rhai", m.lab))).unwrap();
        std::fs::write(
            dir.path().join(format!("{}.rhai", m.lab)),
            mutate(&source, m.shadow),
        )
        .unwrap();
    }
    let out = cachelab().arg("run").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for m in MUTANTS {
        let file = format!("{}.rhai", m.lab);
        let report = section(&stdout, &file)
            .unwrap_or_else(|| panic!("{} did not run:\n{stdout}\n{stderr}", m.lab));
        assert!(
            report
                .lines()
                .any(|l| l.trim_start().starts_with('✗') && l.contains(m.failing)),
            "{} with `{}` should fail \"{}\" with a ✗:\n{report}",
            m.lab,
            m.shadow,
            m.failing
        );
    }
}

#[test]
fn a_mutant_keeps_the_header_where_the_runner_reads_it() {
    let source = "// Title\n// single-node: why\n//\n// more\n\nlet x = 1;\n";
    let mutated = mutate(source, "fn set_protection(m) {}");
    let lines: Vec<&str> = mutated.lines().collect();
    assert_eq!(lines[0], "// Title");
    assert_eq!(lines[1], "// single-node: why");
    assert!(lines[4].starts_with("fn set_protection(m) {}"));
    assert_eq!(lines[6], "let x = 1;");
}
