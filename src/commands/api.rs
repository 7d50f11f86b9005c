//! `cachelab api`: every lab function, grouped, from the same table that registers them
//! (the knob setters with their ranges and defaults, from the knob table); then the names
//! labs pass to them and read back — strategies (from the registry), remedy modes (from
//! the knob table), X-Cache values and counters — each from the one place it is defined.

use crate::counters::Counter;
use crate::knobs::{Range, KNOBS};
use crate::output::Printer;
use crate::strategy::StrategyKind;
use crate::xcache::XCache;

pub fn api() -> u8 {
    let (_, docs) = crate::lab::engine();
    let out = Printer::stdout();
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
