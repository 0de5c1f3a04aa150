//! The segment's file is the data plane's own: a foreign file at `[shm] path` is refused and left
//! alone, a stale copy does not block start, a truncated segment stops the data plane in order
//! (no SIGBUS) and does not kill the control plane, and no hugepage file outlives the process.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use swqos_shm::layout::{LaneInfo, LaneKind, Layout, State};
use swqos_shm::Segment;
use swqos_tests::{
    bin, config_text, free_port, have_root, remove_segment, two_lanes, DataplaneProcess, Scratch,
};

/// A net_null config for test `tag` in `scratch`, with `hugepages` and a private metrics port.
fn write_config(scratch: &Scratch, tag: &str, hugepages: &str) -> (PathBuf, PathBuf) {
    let text = format!(
        "{}\n[control]\nmetrics_listen = \"127.0.0.1:{}\"\n",
        config_text(tag, "net_null0", hugepages, 2, &two_lanes()),
        free_port()
    );
    let path = scratch.path("dp.toml");
    fs::write(&path, text).unwrap();
    let shm = dpdk_config::Config::load(&path).unwrap().shm.path;
    (path, shm)
}

fn check(config: &Path) -> std::process::Output {
    Command::new(bin("swqos-dataplane"))
        .args(["--check", "--config"])
        .arg(config)
        .output()
        .expect("run swqos-dataplane --check")
}

/// Runs the data plane on `config` to its end (it must refuse to start).
fn start_refused(config: &Path) -> std::process::Output {
    Command::new(bin("swqos-dataplane"))
        .args(["--stats-interval", "0", "--config"])
        .arg(config)
        .output()
        .expect("run swqos-dataplane")
}

#[test]
fn a_file_that_is_not_its_segment_is_refused_and_left_alone() {
    let name = "a_file_that_is_not_its_segment_is_refused_and_left_alone";
    if !have_root(name) {
        return;
    }
    let scratch = Scratch::new("seg-foreign");
    let passwd = fs::read("/etc/passwd").unwrap();
    // 1. `path = <a copy of /etc/passwd>` where it lives: a directory others may read (0755).
    let shared = scratch.path("etc");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, Permissions::from_mode(0o755)).unwrap();
    let copy = shared.join("passwd");
    fs::write(&copy, &passwd).unwrap();
    fs::set_permissions(&copy, Permissions::from_mode(0o644)).unwrap();
    // 2. The same copy in a private directory, mode 0600: only its contents give it away.
    let private = scratch.path("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, Permissions::from_mode(0o700)).unwrap();
    let hidden = private.join("passwd");
    fs::write(&hidden, &passwd).unwrap();
    fs::set_permissions(&hidden, Permissions::from_mode(0o600)).unwrap();

    let (config, _) = write_config(&scratch, "seg-foreign", "off");
    let text = fs::read_to_string(&config).unwrap();
    for (target, why) in [
        (&copy, "directory has mode 0755"),
        (&hidden, "is not a swqos segment"),
    ] {
        let moved = scratch.path("foreign.toml");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for l in &mut lines {
            if l.starts_with("path = ") {
                *l = format!("path = \"{}\"", target.display());
            }
        }
        fs::write(&moved, lines.join("\n")).unwrap();
        for out in [check(&moved), start_refused(&moved)] {
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains(why), "{err}");
            assert!(err.contains(&target.display().to_string()), "{err}");
        }
        assert_eq!(fs::read(target).unwrap(), passwd, "file left untouched");
    }
    assert_eq!(
        fs::metadata(&shared).unwrap().mode() & 0o7777,
        0o755,
        "a directory it did not create is never changed"
    );
}

#[test]
fn a_copied_segment_with_a_live_pid_and_a_stale_heartbeat_does_not_block_start() {
    let name = "a_copied_segment_with_a_live_pid_and_a_stale_heartbeat_does_not_block_start";
    if !have_root(name) {
        return;
    }
    let scratch = Scratch::new("seg-stale");
    let (config, shm) = write_config(&scratch, "seg-stale", "off");
    // A segment as a copy would leave it: pid 1 (always alive), state Running, heartbeat stale.
    let old = Segment::create(&shm, Layout::new(2, 256, 1, 1).unwrap(), &[], &["p0"], 1).unwrap();
    old.set_state(State::Running);
    old.header().dataplane_pid.store(1, Ordering::Relaxed);
    old.header().heartbeat_ns.store(1, Ordering::Relaxed);
    std::mem::forget(old); // keep the file, as the copy would be
    let out = check(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dp = DataplaneProcess::start(&scratch, &config);
    let seg = Segment::attach(&shm).unwrap();
    assert_ne!(seg.header().dataplane_pid.load(Ordering::Relaxed), 1);
    drop(seg);
    let done = dp.stop(libc::SIGTERM);
    assert!(!done.stderr.contains("in use"), "{}", done.stderr);
    assert!(!shm.exists());
    remove_segment(&shm);
}

/// `swqos control` on `config`, logging to `log`.
fn start_control(config: &Path, log: &Path) -> Child {
    Command::new(bin("swqos"))
        .args(["control", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn swqos control")
}

fn wait_for_log(log: &Path, what: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no `{what}` within {within:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn truncate(path: &Path) {
    // What any process of the segment's user can do.
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .expect("truncate the segment");
}

#[test]
fn truncating_the_segment_stops_the_dataplane_in_order() {
    let name = "truncating_the_segment_stops_the_dataplane_in_order";
    if !have_root(name) {
        return;
    }
    let scratch = Scratch::new("seg-truncate");
    let (config, shm) = write_config(&scratch, "seg-truncate", "off");
    let dp = DataplaneProcess::start(&scratch, &config);
    // A client keeps its ring leased while the file is cut (and must survive it too).
    swqos_shm::guard::install().unwrap();
    let client = swqos_shm::Client::attach(&shm).unwrap();
    truncate(&shm);
    let done = dp.wait(Duration::from_secs(30));
    assert_eq!(
        done.status.signal(),
        None,
        "killed by a signal:\n{}",
        done.stderr
    );
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    let msg = format!(
        "shared-memory segment {} was truncated by another process; stopping",
        shm.display()
    );
    assert!(done.stderr.contains(&msg), "{}", done.stderr);
    assert!(
        done.stdout.contains(&format!("FAILED: {msg}")),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("lane udp-a"),
        "report printed:\n{}",
        done.stdout
    );
    assert!(!shm.exists(), "segment file removed");
    assert!(!shm.parent().unwrap().exists(), "its directory removed");
    drop(client);
}

/// Reads `/metrics` from the control plane.
fn scrape(port: u16) -> String {
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
}

#[test]
fn truncating_the_segment_does_not_kill_the_control_plane() {
    let name = "truncating_the_segment_does_not_kill_the_control_plane";
    if !have_root(name) {
        return;
    }
    swqos_shm::guard::install().unwrap();
    let scratch = Scratch::new("seg-truncate-control");
    let (config, shm) = write_config(&scratch, "seg-truncate-control", "off");
    let port = dpdk_config::Config::load(&config)
        .unwrap()
        .control
        .metrics_listen
        .port();
    // This test plays the data plane (no DPDK needed for the control plane's side).
    let lanes = [LaneInfo::new("udp-a", LaneKind::Udp)];
    let seg =
        Segment::create(&shm, Layout::new(2, 256, 1, 1).unwrap(), &lanes, &["p0"], 1).unwrap();
    seg.set_state(State::Running);
    let log = scratch.path("control.err");
    let mut control = start_control(&config, &log);
    wait_for_log(&log, "attached to", Duration::from_secs(20));
    assert!(scrape(port).contains("swqos_dataplane_up"));
    truncate(&shm);
    // Each scrape reads the whole segment: without the guard the first one is a SIGBUS.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("truncated by another process; detaching")
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        scrape(port);
        assert_eq!(control.try_wait().unwrap(), None, "swqos control died");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(control.try_wait().unwrap(), None, "swqos control died");
    // A new data plane's segment is attached again.
    drop(seg);
    let seg =
        Segment::create(&shm, Layout::new(2, 256, 1, 1).unwrap(), &lanes, &["p0"], 1).unwrap();
    seg.set_state(State::Running);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(&log)
        .unwrap()
        .matches("attached to")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        scrape(port);
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill with our own child's pid.
    unsafe { libc::kill(control.id() as i32, libc::SIGTERM) };
    let status = control.wait().unwrap();
    assert!(status.success(), "{status:?}");
    drop(seg);
    remove_segment(&shm);
}

/// The hugetlbfs mount points of this host.
fn hugetlbfs_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        .filter_map(|l| l.split_whitespace().nth(1).map(PathBuf::from))
        .collect()
}

fn meminfo(field: &str) -> u64 {
    fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Hugepage files DPDK made for EAL file prefix `prefix` (`<prefix>map_<n>`).
fn hugepage_files(prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in hugetlbfs_mounts() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}map_"))
            {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn no_hugepage_file_outlives_the_dataplane() {
    let name = "no_hugepage_file_outlives_the_dataplane";
    if !have_root(name) {
        return;
    }
    // 256 MiB of 2 MiB pages, as the config asks; scripts/setup.sh reserves 512 pages.
    let (free, total) = (meminfo("HugePages_Free:"), meminfo("HugePages_Total:"));
    if hugetlbfs_mounts().is_empty() || free < 128 {
        let expected = total > 0 && !hugetlbfs_mounts().is_empty();
        let why = format!(
            "{name}: needs 128 free 2 MiB hugepages and a hugetlbfs mount (free {free}, total \
             {total}, mounts {:?})",
            hugetlbfs_mounts()
        );
        assert!(
            std::env::var_os("CI").is_none() || !expected,
            "{why}; scripts/setup.sh reserved hugepages here, so CI expects them"
        );
        eprintln!("SKIPPED: {why}");
        return;
    }
    let scratch = Scratch::new("seg-huge");
    let (config, _) = write_config(&scratch, "seg-huge", "required");
    let prefix = dpdk_config::Config::load(&config).unwrap().eal.file_prefix;
    let dp = DataplaneProcess::start(&scratch, &config);
    let during = hugepage_files(&prefix);
    let done = dp.stop(libc::SIGTERM);
    let after = hugepage_files(&prefix);
    for f in &after {
        let _ = fs::remove_file(f); // do not leak 256 MiB when this fails
    }
    assert_eq!(
        after,
        Vec::<PathBuf>::new(),
        "hugepage files left after a clean exit"
    );
    assert_eq!(during, Vec::<PathBuf>::new(), "unlinked as soon as mapped");
    let args = done
        .stderr
        .lines()
        .find(|l| l.contains("EAL arguments:"))
        .unwrap_or_default()
        .to_string();
    assert!(!args.contains("--no-huge"), "ran on hugepages: {args}");
    assert!(args.contains("--huge-unlink"), "{args}");
}
