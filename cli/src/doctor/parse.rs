//! Parsers for the `/proc` and `/sys` files `swqos doctor` reads. Pure functions over strings, so
//! each is unit-tested on literal file contents.

use std::collections::BTreeSet;

/// A set of CPU numbers.
pub(crate) type CpuSet = BTreeSet<u32>;

/// Parses the kernel's cpu-list syntax: `0-3,8,10-15:2/4`, `N` for the last CPU (`last`), and an
/// empty string for the empty set. Whitespace around the list (a trailing newline) is ignored.
pub(crate) fn cpu_list(text: &str, last: Option<u32>) -> Result<CpuSet, String> {
    let mut set = CpuSet::new();
    let text = text.trim();
    if text.is_empty() {
        return Ok(set);
    }
    let number = |s: &str| -> Result<u32, String> {
        if s == "N" {
            return last.ok_or_else(|| "`N` without a known last CPU".to_string());
        }
        s.parse::<u32>()
            .map_err(|_| format!("`{s}` is not a CPU number"))
    };
    for part in text.split(',') {
        let part = part.trim();
        let (range, stride) = match part.split_once(':') {
            Some((range, stride)) => (range, Some(stride)),
            None => (part, None),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((lo, hi)) => (number(lo)?, number(hi)?),
            None => {
                let n = number(range)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("range `{range}` runs backwards"));
        }
        let (used, group) = match stride {
            None => (1, 1),
            Some(s) => {
                let (u, g) = s
                    .split_once('/')
                    .ok_or_else(|| format!("`{part}`: expected `used/group` after `:`"))?;
                let u: u32 = u.parse().map_err(|_| format!("`{part}`: bad used size"))?;
                let g: u32 = g.parse().map_err(|_| format!("`{part}`: bad group size"))?;
                if u == 0 || g == 0 || u > g {
                    return Err(format!("`{part}`: bad used/group sizes"));
                }
                (u, g)
            }
        };
        if hi - lo > 1 << 16 {
            return Err(format!("range `{range}` is too large"));
        }
        for cpu in lo..=hi {
            if (cpu - lo) % group < used {
                set.insert(cpu);
            }
        }
    }
    Ok(set)
}

/// Formats a set as a compact cpu list (`2-5,7`); `none` when empty.
pub(crate) fn format_cpu_list(set: &CpuSet) -> String {
    let mut out = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    if out.is_empty() {
        "none".to_string()
    } else {
        out.join(",")
    }
}

/// Parses a hexadecimal CPU mask as in `/proc/irq/default_smp_affinity` (`ff,ffffffff`).
pub(crate) fn cpu_mask(text: &str) -> Result<CpuSet, String> {
    let mut set = CpuSet::new();
    let digits: String = text.trim().chars().filter(|&c| c != ',').collect();
    if digits.is_empty() {
        return Err("empty mask".to_string());
    }
    for (i, c) in digits.chars().rev().enumerate() {
        let v = c
            .to_digit(16)
            .ok_or_else(|| format!("`{c}` is not a hexadecimal digit"))?;
        for bit in 0..4 {
            if v & (1 << bit) != 0 {
                set.insert(i as u32 * 4 + bit);
            }
        }
    }
    Ok(set)
}

/// The kernel command line (`/proc/cmdline`), as `key[=value]` parameters up to `--` (what
/// follows is for init).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cmdline {
    params: Vec<(String, Option<String>)>,
}

impl Cmdline {
    /// Splits the line on whitespace, honouring double quotes around values.
    pub(crate) fn parse(text: &str) -> Cmdline {
        let mut params = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        let mut words = Vec::new();
        for c in text.chars() {
            match c {
                '"' => quoted = !quoted,
                c if c.is_whitespace() && !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        for w in words {
            if w == "--" {
                break;
            }
            match w.split_once('=') {
                Some((k, v)) => params.push((k.to_string(), Some(v.to_string()))),
                None => params.push((w, None)),
            }
        }
        Cmdline { params }
    }

    /// The value of the last `key=...` (the kernel lets the last one win); `Some(None)` for a bare
    /// `key`.
    pub(crate) fn get(&self, key: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }
}

/// `isolcpus=[flag,...,]cpu-list`: the flags (`nohz`, `domain`, `managed_irq`) and the CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Isolcpus {
    /// Flags given before the list; none means the default, `domain`.
    pub(crate) flags: Vec<String>,
    /// The isolated CPUs.
    pub(crate) cpus: CpuSet,
}

impl Isolcpus {
    /// Whether the CPUs are taken off the scheduler's load balancing (`domain`, the default).
    pub(crate) fn domain(&self) -> bool {
        self.flags.is_empty() || self.flags.iter().any(|f| f == "domain")
    }
}

/// Parses the value of `isolcpus=`.
pub(crate) fn isolcpus(value: &str, last: Option<u32>) -> Result<Isolcpus, String> {
    let mut flags = Vec::new();
    let mut rest = value.trim();
    loop {
        let (head, tail) = rest.split_once(',').unwrap_or((rest, ""));
        if !head.is_empty() && head.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            flags.push(head.to_string());
            rest = tail;
        } else {
            break;
        }
        if rest.is_empty() {
            break;
        }
    }
    Ok(Isolcpus {
        flags,
        cpus: cpu_list(rest, last)?,
    })
}

/// One field of `/proc/meminfo` as a number (the first word after the colon).
pub(crate) fn meminfo_field(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let (key, rest) = line.split_once(':')?;
        if key.trim() != name {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// A hugetlbfs mount from `/proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HugeMount {
    /// The mount point.
    pub(crate) path: String,
    /// The `pagesize=` option, if any (`2M`, `1024M`).
    pub(crate) pagesize: Option<String>,
}

/// Every hugetlbfs mount in `/proc/mounts` (octal escapes like `\040` in paths decoded).
pub(crate) fn huge_mounts(mounts: &str) -> Vec<HugeMount> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_dev, path, fstype, opts) = (f.next()?, f.next()?, f.next()?, f.next()?);
            if fstype != "hugetlbfs" {
                return None;
            }
            let pagesize = opts
                .split(',')
                .find_map(|o| o.strip_prefix("pagesize="))
                .map(str::to_string);
            Some(HugeMount {
                path: unescape_mount(path),
                pagesize,
            })
        })
        .collect()
}

fn unescape_mount(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|oct| u8::from_str_radix(oct, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The selected value of a sysfs choice file such as
/// `/sys/kernel/mm/transparent_hugepage/enabled` (`always [madvise] never` -> `madvise`).
pub(crate) fn bracketed_choice(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
}

/// The `CapEff:` bits of `/proc/<pid>/status`.
pub(crate) fn cap_eff(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let hex = line.strip_prefix("CapEff:")?.trim();
        u64::from_str_radix(hex, 16).ok()
    })
}

/// `major.minor` of a kernel release such as `6.1.0-18-amd64` or a DPDK version `22.11.4`.
pub(crate) fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The `Version:` of a pkg-config `.pc` file.
pub(crate) fn pc_version(pc: &str) -> Option<String> {
    pc.lines().find_map(|line| {
        let v = line.strip_prefix("Version:")?.trim();
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// An installed package from dpkg's `status` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DpkgPackage {
    /// The package name (without `:arch`).
    pub(crate) name: String,
    /// Its version.
    pub(crate) version: String,
}

/// The installed packages of `/var/lib/dpkg/status` whose name satisfies `wanted`.
pub(crate) fn dpkg_installed(status: &str, wanted: impl Fn(&str) -> bool) -> Vec<DpkgPackage> {
    let mut found = Vec::new();
    for para in status.split("\n\n") {
        let field = |name: &str| {
            para.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let (Some(name), Some(state), Some(version)) =
            (field("Package"), field("Status"), field("Version"))
        else {
            continue;
        };
        if state.ends_with(" installed") && wanted(name) {
            found.push(DpkgPackage {
                name: name.to_string(),
                version: version.to_string(),
            });
        }
    }
    found
}

/// Normalises a PCI address to the `DDDD:BB:DD.F` form sysfs uses (lower case, domain added).
pub(crate) fn pci_sysfs_name(address: &str) -> String {
    let a = address.trim().to_ascii_lowercase();
    if a.matches(':').count() == 1 {
        format!("0000:{a}")
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u32]) -> CpuSet {
        v.iter().copied().collect()
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("2-5\n", None).unwrap(), set(&[2, 3, 4, 5]));
        assert_eq!(cpu_list("0,2-3,7", None).unwrap(), set(&[0, 2, 3, 7]));
        assert_eq!(cpu_list("", None).unwrap(), set(&[]));
        assert_eq!(cpu_list("0-9:2/5", None).unwrap(), set(&[0, 1, 5, 6]));
        assert_eq!(cpu_list("4-N", Some(7)).unwrap(), set(&[4, 5, 6, 7]));
        assert!(cpu_list("4-N", None).is_err());
        assert!(cpu_list("5-2", None).is_err());
        assert!(cpu_list("a", None).is_err());
        assert!(cpu_list("1:2", None).is_err());
        assert_eq!(
            format_cpu_list(&set(&[0, 2, 3, 4, 7, 9, 10])),
            "0,2-4,7,9-10"
        );
        assert_eq!(format_cpu_list(&set(&[])), "none");
    }

    #[test]
    fn cpu_masks() {
        assert_eq!(cpu_mask("3\n").unwrap(), set(&[0, 1]));
        assert_eq!(cpu_mask("f0").unwrap(), set(&[4, 5, 6, 7]));
        assert_eq!(cpu_mask("1,00000000").unwrap(), set(&[32]));
        assert!(cpu_mask("xyz").is_err());
    }

    #[test]
    fn cmdline_and_isolcpus() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/vmlinuz root=UUID=x ro quiet isolcpus=managed_irq,domain,2-5 nohz_full=2-5 \
             rcu_nocbs=2-5 opt=\"a b\" nosmt -- isolcpus=9\n",
        );
        assert_eq!(c.get("nohz_full"), Some(Some("2-5")));
        assert_eq!(c.get("quiet"), Some(None));
        assert_eq!(c.get("opt"), Some(Some("a b")));
        assert_eq!(c.get("missing"), None);
        let iso = isolcpus(c.get("isolcpus").unwrap().unwrap(), None).unwrap();
        assert_eq!(iso.flags, vec!["managed_irq", "domain"]);
        assert_eq!(iso.cpus, set(&[2, 3, 4, 5]));
        assert!(iso.domain());
        let plain = isolcpus("1,3", None).unwrap();
        assert!(plain.flags.is_empty() && plain.domain());
        assert_eq!(plain.cpus, set(&[1, 3]));
        let nohz_only = isolcpus("nohz,4-7", None).unwrap();
        assert!(!nohz_only.domain());
        // The last occurrence wins.
        let twice = Cmdline::parse("isolcpus=1 isolcpus=2");
        assert_eq!(twice.get("isolcpus"), Some(Some("2")));
    }

    #[test]
    fn meminfo_and_mounts() {
        let meminfo = "MemTotal:  1 kB\nHugePages_Total:     512\nHugePages_Free:      448\nHugepagesize:       2048 kB\n";
        assert_eq!(meminfo_field(meminfo, "HugePages_Total"), Some(512));
        assert_eq!(meminfo_field(meminfo, "HugePages_Free"), Some(448));
        assert_eq!(meminfo_field(meminfo, "Hugepagesize"), Some(2048));
        assert_eq!(meminfo_field(meminfo, "HugePages"), None);
        let mounts = "proc /proc proc rw 0 0\nnodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\nnone /mnt/huge\\0401G hugetlbfs rw,pagesize=1024M 0 0\n";
        let m = huge_mounts(mounts);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].path, "/dev/hugepages");
        assert_eq!(m[0].pagesize.as_deref(), Some("2M"));
        assert_eq!(m[1].path, "/mnt/huge 1G");
        assert!(huge_mounts("proc /proc proc rw 0 0\n").is_empty());
    }

    #[test]
    fn choices_caps_versions() {
        assert_eq!(
            bracketed_choice("always [madvise] never\n"),
            Some("madvise")
        );
        assert_eq!(bracketed_choice("[always] madvise never"), Some("always"));
        assert_eq!(bracketed_choice("madvise"), None);
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(cap_eff(status), Some(0x1fffeffffff));
        assert_eq!(cap_eff("Name: x\n"), None);
        assert_eq!(major_minor("6.1.0-18-amd64\n"), Some((6, 1)));
        assert_eq!(major_minor("4.19.0"), Some((4, 19)));
        assert_eq!(major_minor("22.11.11"), Some((22, 11)));
        assert_eq!(major_minor("six"), None);
        assert_eq!(
            pc_version("prefix=/usr\nName: DPDK\nVersion: 22.11.4\nLibs: -lrte_eal\n").as_deref(),
            Some("22.11.4")
        );
        assert_eq!(pci_sysfs_name("3B:00.0"), "0000:3b:00.0");
        assert_eq!(pci_sysfs_name("0000:3b:00.1"), "0000:3b:00.1");
    }

    #[test]
    fn dpkg_status() {
        let status = "Package: librte-eal23\nStatus: install ok installed\nArchitecture: amd64\nVersion: 22.11.4-1~deb12u1\n\n\
                      Package: dpdk\nStatus: deinstall ok config-files\nVersion: 22.11.4-1~deb12u1\n\n\
                      Package: bash\nStatus: install ok installed\nVersion: 5.2\n";
        let found = dpkg_installed(status, |n| n.starts_with("librte-eal") || n == "dpdk");
        assert_eq!(
            found,
            vec![DpkgPackage {
                name: "librte-eal23".into(),
                version: "22.11.4-1~deb12u1".into()
            }]
        );
    }
}
