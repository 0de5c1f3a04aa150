//! Deciding between hugepages and `--no-huge` before EAL starts.

use std::path::Path;

use dpdk_config::{EalConfig, Hugepages};

/// Free hugepage memory and whether a hugetlbfs is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugepageState {
    /// `HugePages_Free * Hugepagesize` in bytes.
    pub free_bytes: u64,
    /// Some hugetlbfs is mounted.
    pub mounted: bool,
}

impl HugepageState {
    /// Reads `/proc/meminfo` and `/proc/mounts`.
    pub fn read() -> HugepageState {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        HugepageState::parse(&meminfo, &mounts)
    }

    /// Parses the two files' contents.
    pub fn parse(meminfo: &str, mounts: &str) -> HugepageState {
        let field = |name: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let free = field("HugePages_Free:");
        let size_kb = field("Hugepagesize:");
        let mounted = mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"));
        HugepageState {
            free_bytes: free * size_kb * 1024,
            mounted,
        }
    }
}

/// What to do about hugepages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Use hugepages.
    Huge,
    /// Run with `--no-huge`; the string says why (to print as a warning, unless configured).
    NoHuge(Option<String>),
}

/// Decides from the config and the host's state; `Err` when hugepages are required but missing.
pub fn decide(eal: &EalConfig, host: HugepageState) -> Result<Decision, String> {
    let need = eal.memory_mb as u64 * 1024 * 1024;
    let dir_ok = eal.huge_dir.as_deref().map(Path::exists).unwrap_or(true);
    let problem = if !host.mounted || !dir_ok {
        Some("no hugetlbfs is mounted (mount -t hugetlbfs nodev /dev/hugepages)".to_string())
    } else if host.free_bytes < need {
        Some(format!(
            "{} MiB of hugepages free, {} MiB needed (echo {} > /proc/sys/vm/nr_hugepages)",
            host.free_bytes >> 20,
            eal.memory_mb,
            need.div_ceil(2 << 20) + 64
        ))
    } else {
        None
    };
    match (eal.hugepages, problem) {
        (Hugepages::Off, _) => Ok(Decision::NoHuge(None)),
        (_, None) => Ok(Decision::Huge),
        (Hugepages::Required, Some(p)) => Err(format!("hugepages are required: {p}")),
        (Hugepages::Auto, Some(p)) => Ok(Decision::NoHuge(Some(format!(
            "{p}; falling back to --no-huge (slower, unpinned memory: not for production)"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal: 1 kB\nHugePages_Total:      64\nHugePages_Free:      64\nHugepagesize:       2048 kB\n";
    const MOUNTS: &str =
        "proc /proc proc rw 0 0\nnodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n";

    fn eal(hugepages: Hugepages, memory_mb: u32) -> EalConfig {
        let text = format!(
            "[eal]\nlcores = \"0-1\"\nmemory_mb = {memory_mb}\nhugepages = \"{hugepages}\"\n[[port]]\nname = \"p\"\ndevice = \"net_null0\"\n"
        );
        dpdk_config::Config::parse(&text, Path::new("t.toml"))
            .unwrap()
            .eal
    }

    #[test]
    fn reads_meminfo_and_mounts() {
        let s = HugepageState::parse(MEMINFO, MOUNTS);
        assert_eq!(s.free_bytes, 128 << 20);
        assert!(s.mounted);
        assert!(!HugepageState::parse(MEMINFO, "proc /proc proc rw 0 0").mounted);
    }

    #[test]
    fn decides_per_mode() {
        let host = HugepageState::parse(MEMINFO, MOUNTS);
        assert_eq!(decide(&eal(Hugepages::Auto, 128), host), Ok(Decision::Huge));
        let d = decide(&eal(Hugepages::Auto, 256), host).unwrap();
        assert!(
            matches!(d, Decision::NoHuge(Some(ref w)) if w.contains("128 MiB of hugepages free"))
        );
        assert!(decide(&eal(Hugepages::Required, 256), host).is_err());
        assert_eq!(
            decide(&eal(Hugepages::Off, 1), host),
            Ok(Decision::NoHuge(None))
        );
        let none = HugepageState {
            free_bytes: 1 << 30,
            mounted: false,
        };
        assert!(decide(&eal(Hugepages::Required, 1), none)
            .unwrap_err()
            .contains("hugetlbfs"));
    }
}
