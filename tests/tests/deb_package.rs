//! The Debian package, end to end: builds it (`scripts/package.sh`: release build, man pages and
//! completions, `cargo deb`), checks what it holds (`dpkg-deb`), installs it with apt in a plain
//! Debian 12 container (the project's own debootstrap base image, `docker/make-local-base.sh`;
//! apt fetches the DPDK runtime it depends on from Debian's mirror), then runs what the systemd
//! units run: the units' own command lines, as their `User=`, with their
//! `AmbientCapabilities=`, on a private hugetlbfs mounted as `dev-hugepages-swqos.mount` mounts
//! it. systemd itself does not run in the container: the test reads each unit file the package
//! installed and executes its `ExecStartPre=`/`ExecStart=` lines with `setpriv` (see
//! docs/operations.md). Checks `swqos doctor`, `swqos stats` and a submission as the `swqos`
//! user, the control plane's metrics, and that SIGTERM stops both with exit 0.
//!
//! `SWQOS_DEB=path.deb` tests a package built beforehand instead of building one.
//! Needs root and Docker; skipped (loudly) without them, a failure when `CI` is set.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use swqos_tests::{have_root, samples, workspace, Scratch};

/// The plain Debian 12 image the package is installed into (made locally, no registry).
const BASE_IMAGE: &str = "swqos-local/debian:bookworm-slim";

/// Capabilities the container engine grants beyond its defaults: at least every one the units'
/// `AmbientCapabilities=` name (checked). RLIMIT_MEMLOCK (`LimitMEMLOCK=infinity`) cannot be
/// raised here (the engine lacks CAP_SYS_RESOURCE); CAP_IPC_LOCK makes it moot for mlock.
const GRANTED: [&str; 5] = ["IPC_LOCK", "SYS_NICE", "NET_ADMIN", "NET_RAW", "SYS_RAWIO"];

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have_docker(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    swqos_tests::require(
        test,
        (!ok).then(|| {
            "no usable docker here (docker version failed); the Debian package was NOT \
             installed or tested"
                .to_string()
        }),
    )
}

/// The package under test: `$SWQOS_DEB`, or one built now by scripts/package.sh.
fn package() -> PathBuf {
    if let Some(deb) = std::env::var_os("SWQOS_DEB") {
        let deb = PathBuf::from(deb);
        assert!(deb.is_file(), "SWQOS_DEB={} is no file", deb.display());
        return deb;
    }
    let t0 = Instant::now();
    let mut cmd = Command::new(workspace().join("scripts/package.sh"));
    cmd.current_dir(workspace());
    // Without the CARGO_PKG_*/CARGO_MANIFEST_* variables cargo sets for this test: build
    // scripts that watch them would rebuild the release binaries when the script runs again
    // from a shell.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR" {
            cmd.env_remove(key);
        }
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "scripts/package.sh failed:\n{}",
        text(&out)
    );
    let deb = workspace().join(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        deb.is_file(),
        "scripts/package.sh printed no package:\n{}",
        text(&out)
    );
    eprintln!(
        "{}package built in {:.0} s",
        String::from_utf8_lossy(&out.stderr),
        t0.elapsed().as_secs_f64()
    );
    deb
}

/// What `dpkg-deb` says the package holds.
fn check_contents(deb: &Path) {
    let listing = run_ok(Command::new("dpkg-deb").arg("--contents").arg(deb));
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let mode_of = |path: &str| {
        listing
            .lines()
            .find(|l| l.split_whitespace().nth(5) == Some(path))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"))
            .to_string()
    };
    for bin in ["./usr/bin/swqos", "./usr/bin/swqos-dataplane"] {
        assert_eq!(mode_of(bin), "-rwxr-xr-x", "{bin}");
    }
    for path in [
        "./usr/lib/systemd/system/swqos-dataplane.service",
        "./usr/lib/systemd/system/swqos-control.service",
        "./usr/lib/systemd/system/dev-hugepages-swqos.mount",
        "./usr/lib/tmpfiles.d/swqos.conf",
        "./etc/swqos/swqos.toml",
        "./usr/share/man/man1/swqos.1.gz",
        "./usr/share/man/man1/swqos-control.1.gz",
        "./usr/share/man/man1/swqos-doctor.1.gz",
        "./usr/share/bash-completion/completions/swqos",
        "./usr/share/zsh/vendor-completions/_swqos",
        "./usr/share/fish/vendor_completions.d/swqos.fish",
        "./usr/share/doc/swqos/operations.md",
        "./usr/share/doc/swqos/examples/production.toml",
    ] {
        assert_eq!(mode_of(path), "-rw-r--r--", "{path}");
    }
    assert!(
        !files.iter().any(|f| f.contains("swqos-bench")),
        "swqos-bench (reqwest, tokio) must not ship in the production package:\n{listing}"
    );

    // The config is a conffile (kept across upgrades); the maintainer scripts are there.
    let conffiles = run_ok(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(deb)
            .arg("conffiles"),
    );
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/swqos/swqos.toml"),
        "conffiles: {conffiles}"
    );
    let postinst = run_ok(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(deb)
            .arg("postinst"),
    );
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(
        postinst.contains("install -d -m 0700 -o swqos -g swqos"),
        "the segment's directory: {postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start") && !postinst.contains("systemctl start"),
        "installing must start nothing:\n{postinst}"
    );

    // Depends: the DPDK libraries the binaries link (dpkg-shlibdeps) and the plugins they load.
    let depends = run_ok(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(deb)
            .arg("Depends"),
    );
    for dep in [
        "librte-eal23",
        "librte-ethdev23",
        "librte-net-null23",
        "librte-mempool-ring23",
        "adduser",
        "libc6",
    ] {
        assert!(depends.contains(dep), "Depends lacks {dep}: {depends}");
    }
}

/// The `Key=` values of a unit file, in order (comments skipped).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
        .collect()
}

fn unit_value(unit: &str, key: &str) -> String {
    let mut values = unit_values(unit, key);
    assert_eq!(values.len(), 1, "one {key}= expected in\n{unit}");
    values.remove(0)
}

/// The container the package runs in, removed (with the hugetlbfs and the image) on drop.
struct Rig {
    container: String,
    image: String,
    huge: PathBuf,
}

impl Rig {
    fn exec(&self, args: &[&str]) -> Output {
        run(Command::new("docker")
            .args(["exec", &self.container])
            .args(args))
    }

    fn sh(&self, script: &str) -> Output {
        self.exec(&["bash", "-c", script])
    }

    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "`{script}` failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A detached command in the container; its pid (in the container) lands in `pidfile`.
    fn spawn(&self, pidfile: &str, command: &str, log: &Path) -> Child {
        let script = format!("echo $$ >{pidfile}; exec {command}");
        Command::new("docker")
            .args(["exec", &self.container, "bash", "-c", &script])
            .stdin(Stdio::null())
            .stdout(fs::File::create(log).expect("log file"))
            .stderr(Stdio::from(
                fs::OpenOptions::new().append(true).open(log).expect("log"),
            ))
            .spawn()
            .expect("docker exec")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.container])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
        let _ = Command::new("umount").arg(&self.huge).output();
        let _ = fs::remove_dir(&self.huge);
    }
}

/// Waits for `child` (at most `secs`) and returns its exit code.
fn wait_exit(child: &mut Child, secs: u64, log: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "no exit within {secs} s:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn deb_package_installs_and_runs() {
    let name = "deb_package_installs_and_runs";
    if !have_root(name) || !have_docker(name) {
        return;
    }
    // The data plane's config wants 256 MiB of hugepages (scripts/setup.sh reserves 1 GiB).
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let free_mib = field("HugePages_Free:") * field("Hugepagesize:") / 1024;
    if !swqos_tests::require(
        name,
        (free_mib < 256).then(|| {
            format!("{free_mib} MiB of hugepages free, 256 needed (scripts/setup.sh reserves them)")
        }),
    ) {
        return;
    }
    let deb = package();
    check_contents(&deb);

    let base = run(&mut Command::new(
        workspace().join("docker/make-local-base.sh"),
    ));
    assert!(
        base.status.success(),
        "docker/make-local-base.sh failed:\n{}",
        text(&base)
    );

    let scratch = Scratch::new("deb-package");
    let pid = std::process::id();
    let image = format!("swqos-local/deb-test:{pid}");
    let installer = format!("swqos-deb-install-{pid}");
    fs::copy(&deb, scratch.path("swqos.deb")).expect("copy the package");

    // 1. apt installs it into plain Debian 12 (fetching the DPDK runtime from Debian's mirror);
    //    the postinst made the user and the segment's directory.
    let t0 = Instant::now();
    let install = run(Command::new("docker")
        .args(["run", "--name", &installer, "-v"])
        .arg(format!("{}:/pkg:ro", scratch.dir.display()))
        .args([
            BASE_IMAGE,
            "bash",
            "-c",
            "set -e; apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             /pkg/swqos.deb >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }; \
             dpkg-query -W -f='${Status} ${Version}\\n' swqos; \
             getent passwd swqos; stat -c 'shm %a %U %G' /dev/shm/swqos",
        ]));
    let committed = install.status.success()
        && run(Command::new("docker").args(["commit", &installer, &image]))
            .status
            .success();
    let _ = run(Command::new("docker").args(["rm", "-f", &installer]));
    assert!(
        committed,
        "apt-get install of the package failed:\n{}",
        text(&install)
    );
    let installed = String::from_utf8_lossy(&install.stdout).into_owned();
    eprintln!(
        "installed in {:.0} s:\n{installed}",
        t0.elapsed().as_secs_f64()
    );
    assert!(installed.contains("install ok installed"), "{installed}");
    assert!(
        installed.contains("/nonexistent:/usr/sbin/nologin"),
        "a system user: {installed}"
    );
    assert!(installed.contains("shm 700 swqos swqos"), "{installed}");

    // 2. The hugetlbfs of dev-hugepages-swqos.mount, made on the host (a container may not
    //    mount) with the unit's options, the user given by number (the host has no swqos).
    let huge = PathBuf::from(format!("/var/tmp/swqos-hugepages-test-{pid}"));
    let rig = Rig {
        container: format!("swqos-deb-test-{pid}"),
        image: image.clone(),
        huge: huge.clone(),
    };
    let ids = run_ok(Command::new("docker").args([
        "run",
        "--rm",
        &image,
        "bash",
        "-c",
        "id -u swqos; id -g swqos; cat /usr/lib/systemd/system/dev-hugepages-swqos.mount",
    ]));
    let mut lines = ids.lines();
    let (uid, gid) = (
        lines.next().unwrap().to_string(),
        lines.next().unwrap().to_string(),
    );
    let mount_unit: String = lines.collect::<Vec<_>>().join("\n");
    assert_eq!(unit_value(&mount_unit, "Where"), "/dev/hugepages/swqos");
    assert_eq!(unit_value(&mount_unit, "Type"), "hugetlbfs");
    let options = unit_value(&mount_unit, "Options")
        .replace("uid=swqos", &format!("uid={uid}"))
        .replace("gid=swqos", &format!("gid={gid}"));
    fs::create_dir_all(&huge).expect("mount point");
    run_ok(
        Command::new("mount")
            .args(["-t", "hugetlbfs", "-o", &options, "hugetlbfs"])
            .arg(&huge),
    );

    // 3. A container as a booted host would be: the package's capabilities granted to the
    //    engine, the swqos hugetlbfs at its place, tmpfiles.d applied to the new /dev/shm.
    let samples_file = scratch.path("valid.jsonl");
    let valid: String = samples()
        .iter()
        .filter(|s| s.invalid.is_none())
        .map(|s| format!("{}\n", s.line))
        .collect();
    fs::write(&samples_file, &valid).unwrap();
    run_ok(
        Command::new("docker")
            .args(["run", "-d", "--name", &rig.container])
            .args(GRANTED.iter().flat_map(|cap| ["--cap-add", cap]))
            .arg("-v")
            .arg(format!("{}:/dev/hugepages/swqos", huge.display()))
            .arg("-v")
            .arg(format!("{}:/samples:ro", scratch.dir.display()))
            .args([&image, "sleep", "infinity"]),
    );
    let tmpfiles = rig.sh_ok("cat /usr/lib/tmpfiles.d/swqos.conf");
    let line: Vec<&str> = tmpfiles
        .lines()
        .find(|l| l.starts_with("d "))
        .expect("a d line")
        .split_whitespace()
        .collect();
    assert_eq!(
        &line[..5],
        ["d", "/dev/shm/swqos", "0700", "swqos", "swqos"]
    );
    rig.sh_ok("install -d -m 0700 -o swqos -g swqos /dev/shm/swqos");

    // 4. The data plane's unit, as systemd would run it.
    let unit = rig.sh_ok("cat /usr/lib/systemd/system/swqos-dataplane.service");
    let user = unit_value(&unit, "User");
    assert_eq!(user, "swqos");
    assert_eq!(unit_value(&unit, "Group"), "swqos");
    let caps = unit_value(&unit, "AmbientCapabilities");
    let caps: Vec<String> = caps
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert!(caps.contains(&"+ipc_lock".to_string()), "{caps:?}");
    for cap in &caps {
        assert!(
            GRANTED
                .iter()
                .any(|g| format!("+{}", g.to_lowercase()) == *cap),
            "the unit's {cap} is not granted to the test container"
        );
    }
    let caps = caps.join(",");
    assert_eq!(unit_value(&unit, "LimitMEMLOCK"), "infinity");
    let as_user = format!(
        "setpriv --reuid={user} --regid={user} --init-groups --inh-caps={caps} \
         --ambient-caps={caps} --bounding-set=-all,{caps} --no-new-privs --"
    );
    let plain_user = format!("setpriv --reuid={user} --regid={user} --init-groups --");

    // ExecStartPre: swqos doctor, logged, its result not blocking the start ("-").
    let pre = unit_value(&unit, "ExecStartPre");
    let pre = pre
        .strip_prefix('-')
        .expect("ExecStartPre=- (a failed check does not block)");
    assert!(pre.starts_with("/usr/bin/swqos doctor"), "{pre}");
    let doctor = rig.sh(&format!("{as_user} {pre}"));
    let report = text(&doctor);
    eprintln!("swqos doctor in the container:\n{report}");
    assert!(doctor.status.success(), "doctor found a failure:\n{report}");
    for check in [
        "pass  dpdk",
        "pass  hugetlbfs",
        "pass  memlock",
        "pass  capabilities",
    ] {
        assert!(report.contains(check), "doctor: no `{check}`:\n{report}");
    }

    let exec_start = unit_value(&unit, "ExecStart");
    assert!(exec_start.starts_with("/usr/bin/swqos-dataplane --config /etc/swqos/swqos.toml"));
    let dp_log = scratch.path("dataplane.log");
    let mut dataplane = rig.spawn(
        "/run/dataplane.pid",
        &format!("{as_user} {exec_start}"),
        &dp_log,
    );

    // 5. `swqos stats`, as the data plane's user, sees it running.
    let stats_cmd =
        format!("{plain_user} swqos stats --config /etc/swqos/swqos.toml --json --interval 0.2");
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let out = rig.sh(&stats_cmd);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if let Some(status) = dataplane.try_wait().unwrap() {
            panic!(
                "the data plane exited ({status}):\n{}",
                fs::read_to_string(&dp_log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "swqos stats saw no running data plane within 60 s:\n{}\n{}",
            text(&out),
            fs::read_to_string(&dp_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let stats: serde_json::Value = serde_json::from_str(stats.trim()).expect("stats JSON");
    assert_eq!(stats["dataplane"]["state"], "running", "{stats}");
    assert_eq!(stats["dataplane"]["up"], true, "{stats}");
    // The segment is the data plane's user's, private, in the directory the package made.
    let seg = rig.sh_ok("stat -c '%a %U' /dev/shm/swqos /dev/shm/swqos/segment");
    assert_eq!(seg, "700 swqos\n600 swqos\n");
    let log = fs::read_to_string(&dp_log).unwrap_or_default();
    assert!(
        log.contains("--huge-dir /dev/hugepages/swqos") && !log.contains("--no-huge"),
        "the data plane runs on the swqos hugetlbfs (dev-hugepages-swqos.mount):\n{log}"
    );
    let used = rig.sh_ok("ls /dev/hugepages/swqos | wc -l");
    assert_eq!(
        used.trim(),
        "0",
        "--huge-unlink: no page files left in the hugetlbfs"
    );

    // 6. The control plane's unit, and a client submitting as swqos.
    let control_unit = rig.sh_ok("cat /usr/lib/systemd/system/swqos-control.service");
    assert_eq!(unit_value(&control_unit, "User"), "swqos");
    let control_caps: Vec<String> = unit_value(&control_unit, "AmbientCapabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let control_caps = control_caps.join(",");
    let control_log = scratch.path("control.log");
    let mut control = rig.spawn(
        "/run/control.pid",
        &format!(
            "setpriv --reuid=swqos --regid=swqos --init-groups --inh-caps={control_caps} \
             --ambient-caps={control_caps} --bounding-set=-all,{control_caps} --no-new-privs -- {}",
            unit_value(&control_unit, "ExecStart")
        ),
        &control_log,
    );
    let submit = rig.sh(&format!(
        "{plain_user} swqos submit --config /etc/swqos/swqos.toml /samples/valid.jsonl"
    ));
    assert!(
        submit.status.success(),
        "swqos submit as swqos:\n{}",
        text(&submit)
    );
    let scrape = "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = text(&rig.sh(scrape));
        if metrics.lines().any(|l| l == "swqos_dataplane_up 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no `swqos_dataplane_up 1` from the control plane:\n{metrics}\n{}",
            fs::read_to_string(&control_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // 7. SIGTERM, as systemctl stop sends (KillSignal=SIGTERM): both exit 0.
    assert_eq!(unit_value(&unit, "KillSignal"), "SIGTERM");
    rig.sh_ok("kill -TERM $(cat /run/control.pid)");
    let code = wait_exit(&mut control, 15, &control_log);
    assert_eq!(
        code,
        0,
        "{}",
        fs::read_to_string(&control_log).unwrap_or_default()
    );
    rig.sh_ok("kill -TERM $(cat /run/dataplane.pid)");
    let code = wait_exit(&mut dataplane, 30, &dp_log);
    let log = fs::read_to_string(&dp_log).unwrap_or_default();
    assert_eq!(code, 0, "the data plane's exit on SIGTERM:\n{log}");
    eprintln!("the data plane, stopped by SIGTERM (exit 0):\n{log}");
    let sent = valid.lines().count();
    assert!(
        log.contains(&format!("lane udp-a: sent {sent} dropped 0")),
        "the report counts the submitted transactions:\n{log}"
    );
    let left = rig.sh_ok("ls -A /dev/shm/swqos | wc -l");
    assert_eq!(
        left.trim(),
        "0",
        "the data plane removes its segment (keeps the package's directory)"
    );
    assert_eq!(rig.sh_ok("stat -c %U /dev/shm/swqos").trim(), "swqos");
    drop(rig);
}
