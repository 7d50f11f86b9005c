//! The lab API: every function a lab can call, registered from one table.
//!
//! Each group file calls `def!` with the function's signature, a one-line doc and the
//! function itself. `def!` registers the function with the engine and records its doc, so
//! `cachelab api` prints exactly what the engine knows — there is no second list.

pub(crate) mod app;
mod checks;
mod compare;
mod data;
mod database;
mod faults;
mod http;
mod instances;
mod load;
mod model;
mod redis;
mod server;
mod target;
mod time;

use rhai::Engine;

/// One registered function as `cachelab api` shows it.
#[derive(Debug, Clone)]
pub struct FnDoc {
    pub group: &'static str,
    /// `name(arg: type, ...) -> type`
    pub signature: &'static str,
    pub doc: &'static str,
}

impl FnDoc {
    /// The function's name: its signature up to the parenthesis.
    pub fn name(&self) -> &'static str {
        self.signature.split('(').next().unwrap_or(self.signature)
    }
}

/// The engine being filled and the docs of what was registered.
pub struct Registry<'e> {
    pub engine: &'e mut Engine,
    pub docs: Vec<FnDoc>,
}

/// Register a function and its doc in one step:
/// `def!(r, "group", "name(arg: type) -> type", "What it does.", |arg: Dynamic| ...)`.
/// The signature and doc are usually literals; a table (the knob setters) passes
/// `&'static str`s it built once.
macro_rules! def {
    ($registry:expr, $group:literal, $signature:expr, $doc:expr, $function:expr) => {{
        let doc = $crate::lab::api::FnDoc {
            group: $group,
            signature: $signature,
            doc: $doc,
        };
        $registry.engine.register_fn(doc.name(), $function);
        $registry.docs.push(doc);
    }};
}
pub(crate) use def;

/// Register the whole lab API into `engine`; returns the docs in registration order.
pub fn register_all(engine: &mut Engine) -> Vec<FnDoc> {
    let mut registry = Registry {
        engine,
        docs: Vec::new(),
    };
    target::register(&mut registry);
    instances::register(&mut registry);
    http::register(&mut registry);
    app::register(&mut registry);
    load::register(&mut registry);
    model::register(&mut registry);
    server::register(&mut registry);
    redis::register(&mut registry);
    database::register(&mut registry);
    faults::register(&mut registry);
    data::register(&mut registry);
    checks::register(&mut registry);
    compare::register(&mut registry);
    time::register(&mut registry);
    registry.docs
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_documented_function_is_registered_once_per_signature() {
        let mut engine = rhai::Engine::new_raw();
        let docs = super::register_all(&mut engine);
        assert!(docs.len() >= 30, "{}", docs.len());
        let mut signatures: Vec<_> = docs.iter().map(|d| d.signature).collect();
        signatures.sort();
        signatures.dedup();
        assert_eq!(signatures.len(), docs.len(), "a signature is listed twice");
        let names: Vec<String> = engine
            .gen_fn_signatures(false)
            .iter()
            .map(|s| s.split('(').next().unwrap_or_default().to_string())
            .collect();
        for doc in &docs {
            assert!(
                names.iter().any(|n| n == doc.name()),
                "{} is documented but not registered",
                doc.name()
            );
            assert!(!doc.doc.is_empty());
        }
    }
}

#[cfg(test)]
mod shadowing_tests {
    /// A lab function whose name a Rhai built-in already uses must replace it; the only
    /// such name is `sleep` (Rhai's takes seconds and blocks past --timeout).
    #[test]
    fn lab_functions_do_not_collide_with_rhai_builtins_except_sleep_which_replaces_it() {
        let builtins: Vec<String> = rhai::Engine::new()
            .gen_fn_signatures(true)
            .iter()
            .map(|s| {
                s.split('(')
                    .next()
                    .unwrap_or_default()
                    .rsplit("::")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let (engine, docs) = crate::lab::engine();
        for doc in &docs {
            if doc.name() != "sleep" {
                assert!(
                    !builtins.iter().any(|b| b == doc.name()),
                    "{} collides with a Rhai built-in",
                    doc.name()
                );
            }
        }
        for call in ["sleep(1)", "sleep(1.5)"] {
            let err = engine.eval::<()>(call).unwrap_err().to_string();
            assert!(
                err.contains("only be called while a lab runs"),
                "Rhai's own {call} ran: {err}"
            );
        }
    }
}
