//! Logging through the host's `log` import.

use crate::bindings::eventbus::iac::log::{Level, log};

pub fn debug(msg: &str) {
    log(Level::Debug, msg, &[]);
}

pub fn info(msg: &str, fields: &[(&str, &str)]) {
    with_fields(Level::Info, msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, &str)]) {
    with_fields(Level::Warn, msg, fields);
}

fn with_fields(level: Level, msg: &str, fields: &[(&str, &str)]) {
    let f: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    log(level, msg, &f);
}
