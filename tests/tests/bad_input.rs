//! Bad input gets a clear error and changes nothing: broken config files (file:line:column),
//! a shared-memory segment of another layout, a dataplane that is not running.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use swqos_tests::{bin, swqos, workspace, Scratch};

#[test]
fn broken_configs_fail_with_file_line_column() {
    let dir = workspace().join("dpdk-config/tests/bad");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let expected = fs::read_to_string(path.with_extension("expected")).unwrap();
        let want = format!("{}:{}", path.display(), expected.trim_end());
        let out = Command::new(bin("swqos-dataplane"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", path.display());
        assert!(
            err.contains(&want),
            "{}:\n want {want}\n got {err}",
            path.display()
        );

        let out = swqos(&["submit", "--config", path.to_str().unwrap(), "-"], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "swqos {}: {err}",
            path.display()
        );
        assert!(err.contains(&want), "swqos {}: {err}", path.display());
        checked += 1;
    }
    assert!(
        checked >= 8,
        "only {checked} fixtures found in {}",
        dir.display()
    );
}

/// A relay lane's TCP segments fill the port's MTU: mbufs that cannot hold a full frame are a
/// config error at `--check`, not segments cut short (or dropped) at run time.
#[test]
fn relay_lanes_are_size_checked_against_the_port() {
    let scratch = Scratch::new("relay-sizes");
    let config = scratch.path("small.toml");
    let text = "[eal]\nlcores = \"0-1\"\nhugepages = \"off\"\n\n[shm]\npath = \"/dev/shm/swqos-sizes/s\"\n\n\
                [[mempool]]\nname = \"small\"\nmbufs = 1023\ndata_room = 1500\n\n\
                [[port]]\nname = \"p0\"\ndevice = \"net_null0\"\nmempool = \"small\"\n\n\
                [[lcore]]\nid = 1\nrole = \"tx\"\nqueues = [{ port = \"p0\", queue = 0 }]\n\n\
                [[lane]]\nname = \"jito\"\nkind = \"http\"\nport = \"p0\"\nprovider = \"jito\"\n\
                dst_ip = \"10.0.0.2\"\ntoken = \"t\"\n";
    fs::write(&config, text).unwrap();
    let out = Command::new(bin("swqos-dataplane"))
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "lane jito: mempool small has data_room 1500, but the relay lane's TCP segments on \
             port p0 (MTU 1500) need 1642"
        ),
        "{err}"
    );
    // With room for a full frame it passes.
    fs::write(
        &config,
        text.replace("data_room = 1500", "data_room = 1642"),
    )
    .unwrap();
    let out = Command::new(bin("swqos-dataplane"))
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let out = Command::new(bin("swqos-dataplane"))
        .args(["--config", "/nonexistent/swqos.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/swqos.toml: cannot read"));
}

fn config_with_shm(scratch: &Scratch, shm: &std::path::Path) -> std::path::PathBuf {
    let config = scratch.path("c.toml");
    fs::write(
        &config,
        format!(
            "[eal]\nlcores = \"0-1\"\n[shm]\npath = \"{}\"\n[[port]]\nname = \"p0\"\ndevice = \"net_null0\"\n",
            shm.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_segment_of_another_layout_is_refused() {
    let scratch = Scratch::new("layout");
    // A private directory and a 0600 file, as a data plane makes them: only the contents differ.
    let dir = scratch.path("shm");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let shm = dir.join("segment");
    // A segment header with the right magic and a future layout version.
    let mut bytes = vec![0u8; 1 << 16];
    bytes[..8].copy_from_slice(b"SWQOSSHM");
    bytes[8..12].copy_from_slice(&(swqos_shm::layout::LAYOUT_VERSION + 1).to_le_bytes());
    fs::write(&shm, &bytes).unwrap();
    fs::set_permissions(&shm, fs::Permissions::from_mode(0o600)).unwrap();
    let config = config_with_shm(&scratch, &shm);
    let out = swqos(
        &["submit", "--config", config.to_str().unwrap(), "-"],
        b"AQ==\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("layout version"), "{err}");
    assert_eq!(
        fs::read(&shm).unwrap(),
        bytes,
        "the segment was not touched"
    );

    // And something that is not a segment at all.
    fs::write(&shm, b"hello").unwrap();
    let out = swqos(
        &["submit", "--config", config.to_str().unwrap(), "-"],
        b"AQ==\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a swqos segment"), "{err}");
}

#[test]
fn no_running_dataplane_is_a_clear_error() {
    let scratch = Scratch::new("nodp");
    let config = config_with_shm(&scratch, &scratch.path("absent"));
    let out = swqos(
        &["submit", "--config", config.to_str().unwrap(), "-"],
        b"AQ==\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is swqos-dataplane running"), "{err}");
}
