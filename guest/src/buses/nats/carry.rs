//! A stream's consumers carried across its replacement.
//!
//! wfctl replaces a stream as its Delete then its Create, and does nothing for what depends
//! on it: the server drops the stream's consumers with it, wfctl's state still lists them, and
//! its diff cache keeps every later plan from noticing, so they never come back. So a stream's
//! delete remembers its durable consumers' configs, and a create of the same stream on the same
//! broker in this instance puts them back, empty (as any replacement of a stream leaves them).
//! A delete that no create follows leaves only this memory behind, gone with the instance.

use super::{Js, api_error};
use crate::error::Result;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// (broker, stream) -> the durable consumers' configs as the server held them.
    static CARRIED: RefCell<HashMap<(String, String), Vec<Value>>> = RefCell::new(HashMap::new());
}

/// Before the stream is deleted: its durable consumers, as the server has them.
pub fn remember(js: &Js, stream: &str) -> Result<()> {
    let mut configs = Vec::new();
    let mut offset = 0u64;
    loop {
        let page = match js.request(
            &format!("CONSUMER.LIST.{stream}"),
            Some(&json!({"offset": offset})),
        )? {
            Ok(v) => v,
            // No stream, nothing to carry (the delete will say the rest).
            Err(_) => return Ok(()),
        };
        let consumers = page["consumers"].as_array().cloned().unwrap_or_default();
        offset += consumers.len() as u64;
        configs.extend(
            consumers
                .into_iter()
                .map(|c| c["config"].clone())
                .filter(|c| c.get("durable_name").and_then(Value::as_str).is_some()),
        );
        if consumers_done(&page, offset) {
            break;
        }
    }
    CARRIED.with(|c| {
        c.borrow_mut()
            .insert((js.broker.clone(), stream.to_string()), configs)
    });
    Ok(())
}

fn consumers_done(page: &Value, seen: u64) -> bool {
    let total = page["total"].as_u64().unwrap_or(0);
    let got = page["consumers"].as_array().map_or(0, Vec::len);
    got == 0 || seen >= total
}

/// After the stream is created: the consumers its deleted predecessor had, recreated.
/// Returns how many.
pub fn restore(js: &Js, stream: &str) -> Result<usize> {
    let Some(configs) = CARRIED.with(|c| {
        c.borrow_mut()
            .remove(&(js.broker.clone(), stream.to_string()))
    }) else {
        return Ok(0);
    };
    for config in &configs {
        let name = config["durable_name"].as_str().unwrap_or_default();
        let mut body = json!({"stream_name": stream, "config": config});
        if js.version.at_least(2, 10) {
            body["action"] = json!("create");
        }
        if let Err(e) = js.request(&format!("CONSUMER.CREATE.{stream}.{name}"), Some(&body))? {
            return Err(api_error(
                name,
                &format!("recreating consumer {stream}/{name} on the replaced stream"),
                e,
            ));
        }
    }
    Ok(configs.len())
}
