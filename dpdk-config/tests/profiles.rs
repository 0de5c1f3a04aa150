//! The shipped profiles parse, and produce the expected EAL arguments.

use std::path::{Path, PathBuf};

use dpdk_config::{Config, Hugepages, LaneKind, LcoreRole, PollMode, PortDevice, Provider};

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
}

fn load(name: &str) -> Config {
    let path = profiles_dir().join(name);
    Config::load(&path).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn every_profile_parses() {
    let mut count = 0;
    for entry in std::fs::read_dir(profiles_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
            count += 1;
        }
    }
    assert!(count >= 3, "expected at least dev, pcap and production");
}

#[test]
fn relays_profile_has_a_lane_for_every_provider() {
    // scripts/run.sh sends to every lane of it and counts each provider's answers.
    let config = load("relays.toml");
    let providers: Vec<Provider> = config
        .lanes
        .iter()
        .filter_map(|l| match &l.kind {
            LaneKind::Http(h) => {
                assert_eq!(l.name, h.provider.name(), "lanes are named after providers");
                Some(h.provider)
            }
            _ => None,
        })
        .collect();
    assert_eq!(providers, Provider::ALL, "one lane per provider, in order");
}

#[test]
fn dev_profile() {
    let config = load("dev.toml");
    assert_eq!(config.eal.hugepages, Hugepages::Auto);
    assert!(
        matches!(config.lcores[0].poll, PollMode::Adaptive(_)),
        "the dev profile leaves the CPU to the host when idle"
    );
    assert_eq!(config.lanes.len(), 2);
    assert_eq!(
        config.eal_args(),
        [
            "-l",
            "0-1",
            "--main-lcore",
            "0",
            "-m",
            "256",
            "--file-prefix",
            "swqos-dev",
            "--huge-unlink",
            "--log-level",
            "notice",
            "--vdev",
            "net_null0",
            "--no-pci",
        ]
    );
    // "auto" without free hugepages: the dataplane asks for --no-huge.
    assert!(config.eal_args_with(true).contains(&"--no-huge".to_owned()));
}

#[test]
fn pcap_profile() {
    let config = load("pcap.toml");
    assert_eq!(config.lane_by_name("udp-a"), Some(0));
    assert_eq!(config.lane_by_name("udp-b"), Some(1));
    assert_eq!(config.ports[0].device.eal_name(), "net_pcap0");
    assert_eq!(
        config.ports[0].device,
        PortDevice::Vdev {
            name: "net_pcap0".into(),
            args: "tx_pcap=/tmp/swqos/tx.pcap".into()
        }
    );
    assert_eq!(
        config.eal_args(),
        [
            "-l",
            "0-1",
            "--main-lcore",
            "0",
            "-m",
            "256",
            "--file-prefix",
            "swqos-pcap",
            "--huge-unlink",
            "--vdev",
            "net_pcap0,tx_pcap=/tmp/swqos/tx.pcap",
            "--no-pci",
        ]
    );
}

#[test]
fn production_profile() {
    let config = load("production.toml");
    assert_eq!(config.eal.hugepages, Hugepages::Required);
    assert_eq!(config.lcores_with_role(LcoreRole::Tx).count(), 2);
    assert_eq!(config.lcores_with_role(LcoreRole::Rx).count(), 1);
    assert_eq!(config.lanes.len(), 4);
    assert_eq!(config.ports[0].device.eal_name(), "0000:3b:00.0");
    assert!(
        config.lcores.iter().all(|l| l.poll == PollMode::Busy),
        "production lcores poll busy"
    );
    assert_eq!(
        config.eal_args(),
        [
            "-l",
            "2-5",
            "--main-lcore",
            "2",
            "-m",
            "1024",
            "--file-prefix",
            "swqos",
            "--huge-dir",
            "/dev/hugepages",
            "--huge-unlink",
            "--log-level",
            "notice",
            "-a",
            "0000:3b:00.0",
        ]
    );
    // Forcing --no-huge drops --huge-dir and --huge-unlink, which DPDK would not use anyway.
    let args = config.eal_args_with(true);
    assert!(args.contains(&"--no-huge".to_owned()));
    assert!(!args.contains(&"--huge-dir".to_owned()));
    assert!(!args.contains(&"--huge-unlink".to_owned()));
}

#[test]
fn hugepages_off_and_extra_args() {
    let text = r#"
[eal]
lcores = [0]
hugepages = "off"
extra_args = ["--iova-mode", "va"]
[[port]]
name = "p0"
device = "0000:03:00.0"
[[port]]
name = "p1"
device = "net_null0"
"#;
    let config = Config::parse(text, Path::new("t.toml")).unwrap();
    assert_eq!(
        config.eal_args(),
        [
            "-l",
            "0",
            "--main-lcore",
            "0",
            "-m",
            "256",
            "--file-prefix",
            "swqos",
            "--no-huge",
            "-a",
            "0000:03:00.0",
            "--vdev",
            "net_null0",
            "--iova-mode",
            "va",
        ]
    );
}

#[test]
fn hugepage_files_are_unlinked_unless_extra_args_decide() {
    let with = |extra: &str| {
        let text = format!(
            "[eal]\nlcores = [0]\nhugepages = \"auto\"\nextra_args = [{extra}]\n\
             [[port]]\nname = \"p0\"\ndevice = \"net_null0\"\n"
        );
        let config = Config::parse(&text, Path::new("t.toml")).unwrap();
        config
            .eal_args_with(false)
            .iter()
            .filter(|a| a.starts_with("--huge-unlink") || *a == "--in-memory")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(with(""), ["--huge-unlink"]);
    assert_eq!(with("\"--in-memory\""), ["--in-memory"]);
    assert_eq!(with("\"--huge-unlink=never\""), ["--huge-unlink=never"]);
}

#[test]
fn container_profiles_poll_adaptively() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/profiles");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
            for l in &config.lcores {
                assert!(
                    matches!(l.poll, PollMode::Adaptive(_)),
                    "{}: lcore {} polls busy",
                    path.display(),
                    l.id
                );
            }
            count += 1;
        }
    }
    assert!(
        count >= 2,
        "expected the dev and capture container profiles"
    );
}
