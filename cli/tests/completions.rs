//! `swqos completions SHELL` and `swqos man` run as the real binary: each script and page names
//! every subcommand users script against.

use std::process::{Command, Output};

const SUBCOMMANDS: [&str; 5] = ["submit", "stats", "control", "bench", "doctor"];

fn swqos(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_swqos"))
        .args(args)
        .output()
        .expect("run swqos");
    assert!(
        out.status.success(),
        "swqos {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn completions_for_every_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = String::from_utf8(swqos(&["completions", shell]).stdout).unwrap();
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
        // Options of subcommands are completed too (fish spells them `-l config`).
        assert!(
            script.contains("--config") || script.contains("-l config"),
            "{shell}: no --config"
        );
    }
    let bash = String::from_utf8(swqos(&["completions", "bash"]).stdout).unwrap();
    assert!(bash.contains("complete -F _swqos"), "{bash}");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_swqos"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_page_is_roff_naming_every_subcommand() {
    let page = String::from_utf8(swqos(&["man"]).stdout).unwrap();
    assert!(page.contains(".TH swqos 1"), "{page}");
    assert!(page.contains(".SH NAME"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "man page lacks {sub}");
    }
}

#[test]
fn man_out_dir_writes_a_page_per_subcommand() {
    let dir = std::env::temp_dir().join(format!("swqos-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    swqos(&["man", "--out-dir", dir.to_str().unwrap()]);
    for page in [
        "swqos.1",
        "swqos-submit.1",
        "swqos-control.1",
        "swqos-doctor.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.starts_with(".ie"), "{page}: {text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
