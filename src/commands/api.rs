//! `cachelab api`: every lab function, grouped, from the same table that registers them.

use crate::output::Printer;

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
    out.line("");
    out.line("Relative paths (\"/users/1\") go to the strategy chosen with use_strategy (default cache-aside).");
    super::exit::OK
}
