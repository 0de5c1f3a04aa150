//! Real-time tuning is applied at start with one line per step saying what took effect and what
//! did not; a failing step stops the start only when `[tuning] required = true`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use swqos_tests::{bin, config_text, free_port, have_root, two_lanes, DataplaneProcess, Scratch};

#[test]
fn dataplane_reports_each_tuning_step() {
    if !have_root("dataplane_reports_each_tuning_step") {
        return;
    }
    let scratch = Scratch::new("tuning-dp");
    let mut text = config_text("tuning", "net_null0", "off", 1, &two_lanes());
    text.push_str("\n[tuning]\nmlockall = true\nlcore_policy = \"fifo\"\nlcore_priority = 10\n");
    let config = scratch.path("t.toml");
    std::fs::write(&config, text).unwrap();
    let dp = DataplaneProcess::start(&scratch, &config);
    let done = dp.stop(libc::SIGINT);
    assert!(
        done.stderr.contains("tuning: mlockall: ok"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("tuning: lcore 1: SCHED_FIFO priority 10: ok"),
        "{}",
        done.stderr
    );
    assert!(
        done.stdout.contains("main-lcore wake-up latency: max"),
        "{}",
        done.stdout
    );
}

fn control_config(scratch: &Scratch, tuning: &str) -> std::path::PathBuf {
    let mut text = config_text("tuning-ctl", "net_null0", "off", 1, &two_lanes());
    text.push_str(&format!(
        "\n[control]\nmetrics_listen = \"127.0.0.1:{}\"\n[tuning]\n{tuning}",
        free_port()
    ));
    let config = scratch.path("c.toml");
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn control_plane_stops_on_a_required_step_that_fails() {
    // No DPDK here: the control plane needs no root for this.
    let scratch = Scratch::new("tuning-req");
    let config = control_config(&scratch, "control_cpus = \"1000\"\nrequired = true\n");
    let out = Command::new(bin("swqos"))
        .args(["control", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tuning: control plane: pin to CPUs 1000: FAILED")
            && err.contains("none of these CPUs is online"),
        "{err}"
    );
    assert!(err.contains("required = true"), "{err}");
}

#[test]
fn control_plane_warns_and_runs_when_a_step_fails_unrequired() {
    let scratch = Scratch::new("tuning-warn");
    let config = control_config(&scratch, "control_cpus = \"1000\"\n");
    let mut child = Command::new(bin("swqos"))
        .args(["control", "--config", config.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "control exited");
    // SAFETY: kill with our child's pid and a standard signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(Instant::now() < deadline, "control ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("pin to CPUs 1000: FAILED"), "{err}");
    assert!(err.contains("wake-up latency monitor: ok"), "{err}");
}
