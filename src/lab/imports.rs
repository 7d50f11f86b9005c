//! `import "helpers" as h;` in a lab resolves relative to the lab's own folder, and only
//! there: a lab shared by a stranger cannot import (and so read) a file elsewhere on the
//! machine, whether by an absolute path, `..`, or a symlink that leads out.

use rhai::module_resolvers::FileModuleResolver;
use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Shared};
use std::path::{Path, PathBuf};

/// Resolves imports to `.rhai` files inside one folder.
pub struct LabFolder {
    folder: Option<PathBuf>,
    files: FileModuleResolver,
}

impl LabFolder {
    pub fn new(folder: &Path) -> Self {
        let folder = folder
            .canonicalize()
            .ok()
            .or_else(|| std::env::current_dir().ok());
        let files = match &folder {
            Some(f) => FileModuleResolver::new_with_path(f),
            None => FileModuleResolver::new(),
        };
        Self { folder, files }
    }
}

impl ModuleResolver for LabFolder {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let refuse = |why: &str| {
            Box::new(EvalAltResult::ErrorInModule(
                path.to_string(),
                Box::new(EvalAltResult::ErrorRuntime(why.into(), pos)),
                pos,
            ))
        };
        let Some(folder) = &self.folder else {
            return Err(refuse("the lab's folder cannot be found"));
        };
        let file = folder.join(format!("{path}.rhai"));
        let inside = file
            .canonicalize()
            .is_ok_and(|real| real.starts_with(folder) && real.is_file());
        if !inside {
            return Err(refuse(&format!(
                "labs may import only .rhai files from their own folder ({})",
                folder.display()
            )));
        }
        self.files.resolve(engine, None, path, pos)
    }
}
