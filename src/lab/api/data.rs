//! The seed data labs walk over.

use rhai::{Array, Dynamic};

use super::{def, Registry};
use crate::lab::convert::{to_dynamic, LabResult};

pub fn register(r: &mut Registry) {
    def!(
        r,
        "data",
        "users() -> array",
        "The records of users.json: an array of #{id, name, email}.",
        || -> LabResult<Array> {
            Ok(crate::seed::users()
                .iter()
                .map(to_dynamic)
                .collect::<Vec<Dynamic>>())
        }
    );
}
