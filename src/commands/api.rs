//! `cachelab api`: every lab function, grouped, from the same table that registers them
//! (the knob setters with their ranges and defaults, from the knob table); then the names
//! labs pass to them and read back — strategies (from the registry), remedy modes (from
//! the knob table), X-Cache values and counters — each from the one place it is defined —
//! and the fields, with units, of every map a function returns. `--json` prints the same
//! as one JSON document.

use crate::counters::Counter;
use crate::knobs::{Range, KNOBS};
use crate::lab::api::returns::RETURNS;
use crate::output::Printer;
use crate::strategy::StrategyKind;
use crate::xcache::XCache;

pub fn api(json: bool) -> u8 {
    let (_, docs) = crate::lab::engine();
    let out = Printer::stdout();
    if json {
        let document = serde_json::json!({
            "functions": docs.iter().map(|d| serde_json::json!({
                "group": d.group, "name": d.name(), "signature": d.signature, "doc": d.doc,
            })).collect::<Vec<_>>(),
            "returns": RETURNS,
            "strategies": StrategyKind::ALL.iter().map(|k| serde_json::json!({
                "name": k.name(), "port_offset": k.port_offset(), "summary": k.summary(),
            })).collect::<Vec<_>>(),
            "modes": KNOBS.iter().filter_map(|knob| match knob.range {
                Range::Names(names) => Some(serde_json::json!({
                    "setter": knob.setters[0].name, "flag": knob.flag.long, "names": names,
                })),
                _ => None,
            }).collect::<Vec<_>>(),
            "xcache": XCache::ALL.iter().map(|x| serde_json::json!({
                "value": x.as_str(), "counter": x.counter().name(), "doc": x.doc(),
            })).collect::<Vec<_>>(),
            "counters": Counter::ALL.iter().map(|c| serde_json::json!({
                "name": c.name(), "doc": c.doc(),
            })).collect::<Vec<_>>(),
        });
        match serde_json::to_string_pretty(&document) {
            Ok(text) => out.line(&text),
            Err(e) => {
                Printer::stderr().line(&format!("error: {e}"));
                return crate::exit::ERROR;
            }
        }
        return crate::exit::OK;
    }
    let mut group = "";
    for doc in &docs {
        if doc.group != group {
            group = doc.group;
            out.line(&format!("\n{}", out.bold(group)));
        }
        out.line(&format!("  {}\n      {}", doc.signature, doc.doc));
    }
    out.line(&format!(
        "\n{}",
        out.bold(
            "strategies (use_strategy, --strategy; serve --port P puts each on P + its place)"
        )
    ));
    for kind in StrategyKind::ALL {
        out.line(&format!(
            "  {:<14} P+{}  {}",
            kind.name(),
            kind.port_offset(),
            kind.summary()
        ));
    }
    out.line(&format!("\n{}", out.bold("modes")));
    for knob in KNOBS {
        if let Range::Names(names) = knob.range {
            let spelled = format!("{} / --{}:", knob.setters[0].name, knob.flag.long);
            out.line(&format!("  {spelled:<35} {}", names.join(", ")));
        }
    }
    out.line(&format!(
        "\n{}",
        out.bold("maps functions return (field, unit, what it holds)")
    ));
    for returned in RETURNS {
        out.line(&format!("  {}", out.bold(returned.map)));
        for field in returned.fields {
            out.line(&format!(
                "    {:<14} {:<10} {}",
                field.name, field.unit, field.doc
            ));
        }
    }
    out.line("  stats() / stats(name)\n    one field per counter (below), a count each");
    out.line(&format!(
        "\n{}",
        out.bold("X-Cache (http_*().cache, load().cache)")
    ));
    for value in XCache::ALL {
        out.line(&format!("  {:<10} {}", value.as_str(), value.doc()));
    }
    out.line(&format!(
        "\n{}",
        out.bold("counters (stats(), load() deltas, /metrics as cachelab_<name>_total)")
    ));
    for counter in Counter::ALL {
        out.line(&format!("  {:<21} {}", counter.name(), counter.doc()));
    }
    out.line("");
    out.line("Relative paths (\"/users/1\") go to the strategy chosen with use_strategy (default cache-aside).");
    crate::exit::OK
}
