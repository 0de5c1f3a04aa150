//! The TOML config (`dpdk_config::Config::parse`): never panics, and every error has a message
//! and a `line:column` inside the text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = dpdk_config::Config::parse(text, Path::new("f.toml")) {
        assert!(!e.message.trim().is_empty(), "empty message: {e}");
        let lines = text.split('\n').count();
        assert!((1..=lines).contains(&e.line) && e.column >= 1, "{e}");
    }
});
