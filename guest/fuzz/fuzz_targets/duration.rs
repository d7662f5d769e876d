//! Durations: `parse` never panics, never yields a negative value, and `format` of what it
//! yields parses back to the same nanoseconds; `format` of any non-negative i64 parses back.
#![no_main]

use eventbus_guest::config::duration::{format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(ns) = parse(text)
    {
        assert!(ns >= 0, "{text:?} parsed to {ns}");
        let shown = format(ns);
        assert_eq!(parse(&shown), Ok(ns), "{text:?} -> {ns} -> {shown:?}");
    }
    if let Some(bytes) = data.get(..8) {
        let ns = i64::from_le_bytes(bytes.try_into().unwrap());
        let shown = format(ns);
        if ns >= 0 {
            assert_eq!(parse(&shown), Ok(ns), "{ns} -> {shown:?}");
        } else {
            assert!(shown.starts_with('-'), "{ns} -> {shown:?}");
        }
    }
});
