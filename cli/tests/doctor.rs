//! `swqos doctor` run as a real binary over the fixture host roots in `fixtures/doctor/`
//! (`--root`, a hidden option for tests), and once over this machine's real `/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use swqos_shm::{LaneInfo, LaneKind, Layout, Segment, State};

const NAMES: [&str; 17] = [
    "kernel",
    "lcores",
    "hugepages",
    "hugetlbfs",
    "nic",
    "iommu",
    "isolcpus",
    "nohz_full",
    "rcu_nocbs",
    "cpu-governor",
    "c-states",
    "transparent-hugepages",
    "irq-affinity",
    "memlock",
    "capabilities",
    "dpdk",
    "shm-segment",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/doctor")
        .join(name)
}

/// A scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("swqos-doctor-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The segment's directory must be private, as the data plane makes it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A production-like config (lcores 2-5, PCI NIC 0000:3b:00.0, hugepages required) whose
/// segment lives in `dir`; `device` replaces the NIC.
fn write_config(dir: &Path, device: &str, hugepages: &str) -> PathBuf {
    let text = format!(
        r#"[eal]
lcores = "2-5"
main_lcore = 2
memory_mb = 1024
hugepages = "{hugepages}"
huge_dir = "/dev/hugepages"

[shm]
path = "{}"
rings = 1
ring_slots = 16

[[port]]
name = "wan0"
device = "{device}"
rx_queues = 1
tx_queues = 2

[[lcore]]
id = 3
role = "tx"
queues = [{{ port = "wan0", queue = 0 }}]

[[lcore]]
id = 4
role = "tx"
queues = [{{ port = "wan0", queue = 1 }}]

[[lcore]]
id = 5
role = "rx"
queues = [{{ port = "wan0", queue = 0 }}]

[[lane]]
name = "relay-a"
kind = "udp"
port = "wan0"
src_ip = "203.0.113.10"
src_port = 9001
dst_ip = "198.51.100.11"
dst_port = 8001
dst_mac = "02:1a:2b:3c:4d:5e"
"#,
        dir.join("segment").display()
    );
    let path = dir.join("swqos.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swqos"))
        .arg("doctor")
        .args(args)
        .output()
        .unwrap()
}

/// Runs `doctor --json` and returns its exit code and `name -> check object`.
fn doctor_json(args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = doctor(&all);
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let checks = v.as_array().unwrap().clone();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, NAMES);
    (out.status.code().unwrap(), checks)
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks.iter().find(|c| c["name"] == name).unwrap()
}

fn status<'a>(checks: &'a [Value], name: &str) -> &'a str {
    check(checks, name)["status"].as_str().unwrap()
}

fn detail<'a>(checks: &'a [Value], name: &str) -> &'a str {
    check(checks, name)["detail"].as_str().unwrap()
}

#[test]
fn tuned_host_passes_every_check() {
    let dir = scratch("tuned");
    let config = write_config(&dir, "0000:3b:00.0", "required");
    // A live segment: this test process plays the running dataplane.
    let layout = Layout::new(1, 16, 3, 1).unwrap();
    let seg = Segment::create(
        &dir.join("segment"),
        layout,
        &[LaneInfo::new("relay-a", LaneKind::Udp)],
        &["wan0"],
        1_000_000_000,
    )
    .unwrap();
    seg.set_state(State::Running);
    seg.heartbeat();
    let root = fixture("tuned");
    let (code, checks) = doctor_json(&[
        "--root",
        root.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    for c in &checks {
        assert_eq!(c["status"], "pass", "{c}");
        assert_eq!(c["skipped"], false, "{c}");
        assert_eq!(c["fix"], "", "{c}");
    }
    assert_eq!(code, 0);
    assert!(detail(&checks, "nic").contains("0000:3b:00.0 bound to vfio-pci, NUMA node 0"));
    assert!(detail(&checks, "hugepages").contains("node0 512 reserved/512 free, node1 512"));
    assert!(detail(&checks, "isolcpus").contains("covers lcores 2-5"));
    assert!(detail(&checks, "iommu").contains("2 groups"));
    assert!(detail(&checks, "dpdk").contains("DPDK 22.11.4"));
    assert!(detail(&checks, "dpdk").contains("librte-eal23 22.11.4-1~deb12u1"));
    assert!(detail(&checks, "shm-segment").contains("dataplane running"));
    assert!(detail(&checks, "irq-affinity").contains("7 IRQs, none allowed on cpus 2-5"));
    // Where the facts come from: the root, except memlock (this process) and the segment.
    assert_eq!(check(&checks, "memlock")["source"], "process");
    assert_eq!(check(&checks, "shm-segment")["source"], "segment");
    assert_eq!(check(&checks, "kernel")["source"], "root");

    // Text output: aligned, no color when not a terminal, no fix lines, a summary.
    let out = doctor(&[
        "--root",
        root.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "{text}");
    assert!(!text.contains("fix:"), "{text}");
    assert!(
        text.contains("pass  transparent-hugepages  enabled = never"),
        "{text}"
    );
    assert!(
        text.contains("pass  kernel                 Linux 6.1.0-18-amd64"),
        "{text}"
    );
    assert!(
        text.ends_with("17 checks: 17 pass, 0 warn, 0 fail\n"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(0));
    drop(seg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn untuned_host_fails_and_warns_with_fixes() {
    let dir = scratch("untuned");
    let config = write_config(&dir, "3b:00.0", "required");
    let root = fixture("untuned");
    let (code, checks) = doctor_json(&[
        "--root",
        root.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let expect = [
        ("kernel", "warn"),
        ("lcores", "pass"),
        ("hugepages", "fail"),
        ("hugetlbfs", "fail"),
        ("nic", "fail"),
        ("iommu", "fail"),
        ("isolcpus", "warn"),
        ("nohz_full", "warn"),
        ("rcu_nocbs", "warn"),
        ("cpu-governor", "warn"),
        ("c-states", "warn"),
        ("transparent-hugepages", "warn"),
        ("irq-affinity", "warn"),
        ("capabilities", "fail"),
        ("dpdk", "fail"),
        ("shm-segment", "warn"),
    ];
    for (name, want) in expect {
        assert_eq!(status(&checks, name), want, "{}", check(&checks, name));
        if want != "pass" {
            assert_ne!(check(&checks, name)["fix"], "", "{}", check(&checks, name));
        }
    }
    // memlock is this process's limit (not from the root): any status, but from the process.
    assert_eq!(check(&checks, "memlock")["source"], "process");
    assert_eq!(code, 1);

    let fix = |name: &str| check(&checks, name)["fix"].as_str().unwrap().to_string();
    assert!(detail(&checks, "hugepages").contains("no hugepages reserved"));
    assert!(fix("hugepages").contains("sysctl -w vm.nr_hugepages=576"));
    assert!(fix("hugetlbfs").contains("mount -t hugetlbfs"));
    assert!(detail(&checks, "nic").contains("(enp59s0f0) is bound to kernel driver ixgbe"));
    assert_eq!(
        fix("nic"),
        "ip link set dev enp59s0f0 down && modprobe vfio-pci && dpdk-devbind.py --bind=vfio-pci 0000:3b:00.0"
    );
    assert!(fix("iommu").contains("intel_iommu=on iommu=pt"));
    assert!(fix("isolcpus").contains("isolcpus=managed_irq,domain,2-5"));
    assert!(fix("nohz_full").contains("nohz_full=2-5"));
    assert!(detail(&checks, "cpu-governor").contains("powersave on 2-5"));
    assert_eq!(
        fix("cpu-governor"),
        "cpupower -c 2-5 frequency-set -g performance"
    );
    assert!(detail(&checks, "c-states").contains("C1E (10 us) on 2-5"));
    assert!(detail(&checks, "c-states").contains("C6 (170 us) on 2-5"));
    assert!(fix("c-states").starts_with("cpupower -c 2-5 idle-set -D 10"));
    assert!(fix("c-states").contains("processor.max_cstate=1 intel_idle.max_cstate=0"));
    assert!(fix("transparent-hugepages")
        .starts_with("echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"));
    // IRQ 26 is on 0-1 already; the others and the default are not.
    assert!(detail(&checks, "irq-affinity").contains("5 of 6 IRQs may run on cpus 2-5"));
    assert!(fix("irq-affinity").contains("echo 0-1,6-7 > $i"));
    assert!(fix("irq-affinity").contains("echo c3 > /proc/irq/default_smp_affinity"));
    assert!(detail(&checks, "capabilities")
        .contains("missing CAP_NET_ADMIN, CAP_IPC_LOCK, CAP_SYS_NICE"));
    assert_eq!(
        fix("dpdk"),
        "apt-get install dpdk libdpdk-dev   (Debian 12 ships DPDK 22.11)"
    );
    assert!(detail(&checks, "shm-segment").contains("dataplane not running"));

    // Text: a `fix:` line under every check that did not pass.
    let out = doctor(&[
        "--root",
        root.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("warn") || line.starts_with("FAIL") {
            assert!(lines[i + 1].trim_start().starts_with("fix: "), "{text}");
        }
    }
    assert!(text.contains("FAIL  dpdk "), "{text}");
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn untuned_host_with_auto_hugepages_and_a_vdev_only_warns_about_tuning() {
    let dir = scratch("vdev");
    let config = write_config(&dir, "net_null0", "auto");
    let root = fixture("untuned");
    let (_, checks) = doctor_json(&[
        "--root",
        root.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(status(&checks, "hugepages"), "warn");
    assert!(detail(&checks, "hugepages").contains("falls back to --no-huge"));
    assert_eq!(status(&checks, "hugetlbfs"), "warn");
    assert_eq!(status(&checks, "nic"), "pass");
    assert_eq!(
        detail(&checks, "nic"),
        "vdev net_null0: no NIC binding needed"
    );
    assert_eq!(status(&checks, "iommu"), "pass");
    assert_eq!(status(&checks, "capabilities"), "warn");
    // DPDK itself is still missing on this host.
    assert_eq!(status(&checks, "dpdk"), "fail");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_config_only_host_wide_checks_run() {
    let (code, checks) = doctor_json(&["--root", fixture("tuned").to_str().unwrap()]);
    for name in ["lcores", "nic", "shm-segment"] {
        assert_eq!(status(&checks, name), "pass");
        assert_eq!(check(&checks, name)["skipped"], true);
        assert!(detail(&checks, name).starts_with("skipped: no --config"));
    }
    // Host-wide checks still run; IRQs are checked against isolcpus.
    assert_eq!(check(&checks, "isolcpus")["skipped"], false);
    assert_eq!(
        detail(&checks, "isolcpus"),
        "isolcpus=managed_irq,domain,2-5"
    );
    assert!(detail(&checks, "irq-affinity").contains("none allowed on cpus 2-5"));
    assert_eq!(status(&checks, "iommu"), "pass");
    assert_eq!(code, 0);

    let (code, checks) = doctor_json(&["--root", fixture("untuned").to_str().unwrap()]);
    assert_eq!(status(&checks, "hugepages"), "warn");
    assert_eq!(status(&checks, "iommu"), "warn");
    assert_eq!(status(&checks, "capabilities"), "warn");
    assert_eq!(check(&checks, "irq-affinity")["skipped"], true);
    assert_eq!(status(&checks, "dpdk"), "fail");
    assert_eq!(code, 1);
}

#[test]
fn segment_with_loose_permissions_fails() {
    let dir = scratch("mode");
    let config = write_config(&dir, "0000:3b:00.0", "required");
    let seg = dir.join("segment");
    std::fs::write(&seg, vec![0u8; 8192]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&seg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let root = fixture("tuned");
    let args = [
        "--root",
        root.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let (code, checks) = doctor_json(&args);
    assert_eq!(status(&checks, "shm-segment"), "fail");
    assert!(detail(&checks, "shm-segment").contains("mode 0666"));
    assert_eq!(code, 1);
    // Right mode, wrong contents: not a segment.
    std::fs::set_permissions(&seg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, checks) = doctor_json(&args);
    assert_eq!(status(&checks, "shm-segment"), "fail");
    assert!(detail(&checks, "shm-segment").contains("not a swqos segment"));
    assert_eq!(code, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_usage_and_bad_config_exit_2() {
    let dir = scratch("bad");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[eal]\nlcores = \"0-1\"\nbogus = 1\n").unwrap();
    let out = doctor(&["--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
    assert_eq!(doctor(&["--bogus"]).status.code(), Some(2));
    let out = doctor(&["--root", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// This machine, whatever it is: every check is reported, and the exit code is 0 or 1.
#[test]
fn runs_on_this_machine() {
    let out = doctor(&[]);
    let text = String::from_utf8(out.stdout).unwrap();
    for name in NAMES {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "{name} missing:\n{text}"
        );
    }
    assert!(matches!(out.status.code(), Some(0 | 1)), "{text}");
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dpdk-config/profiles/dev.toml");
    let (code, checks) = doctor_json(&["--config", dev.to_str().unwrap()]);
    assert!(matches!(code, 0 | 1));
    assert_eq!(
        detail(&checks, "nic"),
        "vdev net_null0: no NIC binding needed"
    );
}

#[test]
fn hugepages_missing_on_a_dataplane_numa_node_warn() {
    let dir = scratch("numa");
    let config = write_config(&dir, "0000:3b:00.0", "required");
    let root = dir.join("root");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(fixture("tuned"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(copied.success());
    // Enough pages in total, but all of them on node0; lcores 4-5 are on node1.
    let node1 = root.join("sys/devices/system/node/node1/hugepages/hugepages-2048kB");
    std::fs::write(node1.join("free_hugepages"), "0\n").unwrap();
    let meminfo = std::fs::read_to_string(root.join("proc/meminfo"))
        .unwrap()
        .replace("HugePages_Free:     1024", "HugePages_Free:      512");
    std::fs::write(root.join("proc/meminfo"), meminfo).unwrap();
    let (code, checks) = doctor_json(&[
        "--root",
        root.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(status(&checks, "hugepages"), "warn");
    assert!(
        detail(&checks, "hugepages").contains("no free hugepages on node1 (lcores 4-5)"),
        "{}",
        detail(&checks, "hugepages")
    );
    assert_eq!(
        check(&checks, "hugepages")["fix"],
        "echo 1088 > /sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"
    );
    assert_eq!(code, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
