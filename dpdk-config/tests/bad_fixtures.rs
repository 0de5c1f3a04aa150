//! `tests/bad/*.toml` are broken configurations; each `.expected` sibling holds the error message
//! without the path prefix (`line:column: message`, no trailing newline), so a CLI test can check
//! that stderr contains it.

use std::ffi::OsStr;
use std::path::Path;

use dpdk_config::Config;

#[test]
fn bad_fixtures_fail_with_expected_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension() != Some(OsStr::new("toml")) {
            continue;
        }
        let expected_path = path.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|err| panic!("{}: {err}", expected_path.display()));
        let err = Config::load(&path).expect_err("fixture should be rejected");
        assert_eq!(
            err.to_string(),
            format!("{}:{}", path.display(), expected),
            "fixture {}",
            path.display()
        );
        count += 1;
    }
    assert!(count >= 5, "expected at least 5 fixtures, found {count}");
}
