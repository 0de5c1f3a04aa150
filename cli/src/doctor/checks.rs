//! The checks, in report order. Each reads the host through [`HostRoot`] and returns one
//! [`Check`].

use std::collections::BTreeMap;
use std::path::Path;

use dpdk_config::{Config, Hugepages, PortDevice};
use swqos_shm::{Segment, SegmentError};

use super::parse::{self, CpuSet};
use super::{Check, HostRoot, Source, Status};

/// Every check name, in report order.
pub(crate) const NAMES: [&str; 17] = [
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

const CAP_NET_ADMIN: u32 = 12;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_NICE: u32 = 23;

/// Idle states at least this slow to leave (µs) count as deep (what `cpupower idle-set -D 10`
/// disables).
const DEEP_CSTATE_LATENCY_US: u64 = 10;

/// Memory the dataplane needs without a config: the default `eal.memory_mb`.
const DEFAULT_MEMORY_MB: u64 = 256;

/// The oldest kernel doctor considers current.
const MIN_KERNEL: (u32, u32) = (5, 4);

/// The DPDK release swqos is built and tested against.
const DPDK_BASELINE: (u32, u32) = (22, 11);

const GRUB_EDIT: &str = "to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot";

/// What the checks read once and share.
pub(crate) struct Host<'a> {
    root: &'a HostRoot,
    config: Option<&'a Config>,
    config_path: Option<&'a Path>,
    cmdline: parse::Cmdline,
    /// Online CPUs.
    online: CpuSet,
    /// `CapEff` of `/proc/self/status` under the root.
    cap_eff: Option<u64>,
}

impl<'a> Host<'a> {
    pub(crate) fn new(
        root: &'a HostRoot,
        config: Option<&'a Config>,
        config_path: Option<&'a Path>,
    ) -> Host<'a> {
        let cmdline = parse::Cmdline::parse(&root.read("/proc/cmdline").unwrap_or_default());
        let online = root
            .read("/sys/devices/system/cpu/online")
            .and_then(|s| parse::cpu_list(&s, None).ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                root.numbered("/sys/devices/system/cpu", "cpu")
                    .into_iter()
                    .collect()
            });
        let cap_eff = root
            .read("/proc/self/status")
            .and_then(|s| parse::cap_eff(&s));
        Host {
            root,
            config,
            config_path,
            cmdline,
            online,
            cap_eff,
        }
    }

    /// Runs every check in [`NAMES`] order.
    pub(crate) fn run_all(&self) -> Vec<Check> {
        let report = vec![
            self.kernel(),
            self.lcores_online(),
            self.hugepages(),
            self.hugetlbfs(),
            self.nic(),
            self.iommu(),
            self.cpu_param("isolcpus"),
            self.cpu_param("nohz_full"),
            self.cpu_param("rcu_nocbs"),
            self.governor(),
            self.cstates(),
            self.thp(),
            self.irq_affinity(),
            self.memlock(),
            self.capabilities(),
            self.dpdk(),
            self.segment(),
        ];
        debug_assert!(report.iter().map(|c| c.name).eq(NAMES));
        report
    }

    fn last_cpu(&self) -> Option<u32> {
        self.online.last().copied()
    }

    /// The configured EAL lcores (main lcore included), if there is a config.
    fn lcores(&self) -> Option<CpuSet> {
        self.config.map(|c| c.eal.lcores.iter().copied().collect())
    }

    /// The CPUs per-CPU checks look at: the lcores, or every online CPU without a config.
    fn cpus_to_check(&self) -> (CpuSet, &'static str) {
        match self.lcores() {
            Some(l) => (l, "dataplane lcores"),
            None => (self.online.clone(), "cpus"),
        }
    }

    fn has_cap(&self, bit: u32) -> Option<bool> {
        self.cap_eff.map(|c| c & (1 << bit) != 0)
    }

    /// Sysfs names of the config's PCI ports with their port names.
    fn pci_ports(&self) -> Vec<(String, String)> {
        self.config
            .map(|c| {
                c.ports
                    .iter()
                    .filter_map(|p| match &p.device {
                        PortDevice::Pci(a) => Some((p.name.clone(), parse::pci_sysfs_name(a))),
                        PortDevice::Vdev { .. } => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn pci_driver(&self, addr: &str) -> Option<String> {
        self.root
            .link_name(&format!("/sys/bus/pci/devices/{addr}/driver"))
    }

    /// Whether some PCI port needs vfio (and so the IOMMU and locked memory): every PCI port
    /// except those on a bifurcated (Mellanox) kernel driver.
    fn needs_vfio(&self) -> bool {
        self.pci_ports().iter().any(|(_, addr)| {
            !self
                .pci_driver(addr)
                .is_some_and(|d| is_bifurcated_driver(&d))
        })
    }

    fn kernel(&self) -> Check {
        const NAME: &str = "kernel";
        let Some(release) = self.root.read_trim("/proc/sys/kernel/osrelease") else {
            return Check::warn(NAME, "cannot read /proc/sys/kernel/osrelease");
        };
        match parse::major_minor(&release) {
            Some(v) if v >= MIN_KERNEL => Check::pass(NAME, format!("Linux {release}")),
            Some(_) => Check::warn(
                NAME,
                format!(
                    "Linux {release} is older than {}.{} (vfio, nohz_full and isolcpus flags are tested on newer kernels)",
                    MIN_KERNEL.0, MIN_KERNEL.1
                ),
            )
            .fix("apt-get install linux-image-amd64 && reboot   (Debian 12 ships 6.1)"),
            None => Check::warn(NAME, format!("cannot parse kernel release `{release}`")),
        }
    }

    fn lcores_online(&self) -> Check {
        const NAME: &str = "lcores";
        let Some(lcores) = self.lcores() else {
            return Check::skipped(NAME, "pass one to check eal.lcores against the online cpus");
        };
        let online = parse::format_cpu_list(&self.online);
        let missing: CpuSet = lcores.difference(&self.online).copied().collect();
        if missing.is_empty() {
            let spare: CpuSet = self.online.difference(&lcores).copied().collect();
            if spare.is_empty() {
                return Check::warn(
                    NAME,
                    format!("eal.lcores {} take every online cpu: none is left for the kernel, IRQs and clients", parse::format_cpu_list(&lcores)),
                )
                .fix("leave at least one core out of eal.lcores");
            }
            return Check::pass(
                NAME,
                format!(
                    "eal.lcores {} online (online: {online})",
                    parse::format_cpu_list(&lcores)
                ),
            );
        }
        Check::fail(
            NAME,
            format!(
                "eal.lcores {} are not online cpus of this host (online: {online}): EAL cannot start",
                parse::format_cpu_list(&missing)
            ),
        )
        .fix(format!("set eal.lcores to cpus of {online} (lscpu -e)"))
    }

    fn hugepages(&self) -> Check {
        const NAME: &str = "hugepages";
        let meminfo = self.root.read("/proc/meminfo").unwrap_or_default();
        let size_kb = parse::meminfo_field(&meminfo, "Hugepagesize").unwrap_or(2048);
        let total = parse::meminfo_field(&meminfo, "HugePages_Total").unwrap_or(0);
        let free = parse::meminfo_field(&meminfo, "HugePages_Free").unwrap_or(0);
        let page = size_kb * 1024;
        let size = human_kb(size_kb);
        let nodes = self.hugepage_nodes(size_kb);
        let per_node = if nodes.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = nodes
                .iter()
                .map(|(n, (nr, fr))| format!("node{n} {nr} reserved/{fr} free"))
                .collect();
            format!("; {}", parts.join(", "))
        };
        let summary = format!(
            "{total} x {size} reserved, {free} free ({} MiB){per_node}",
            (free * page) >> 20
        );
        let mode = self.config.map(|c| c.eal.hugepages);
        if mode == Some(Hugepages::Off) {
            return Check::pass(
                NAME,
                format!("not used: eal.hugepages = \"off\" (--no-huge); host has {summary}"),
            );
        }
        let need_mb = self
            .config
            .map(|c| u64::from(c.eal.memory_mb))
            .unwrap_or(DEFAULT_MEMORY_MB);
        let need_pages = (need_mb << 20).div_ceil(page);
        let in_use = total.saturating_sub(free);
        let fix_total = in_use + need_pages + 64;
        let sysctl_fix = format!(
            "sysctl -w vm.nr_hugepages={fix_total}   (persist: echo vm.nr_hugepages={fix_total} > /etc/sysctl.d/80-swqos.conf)"
        );
        if free * page < need_mb << 20 {
            let why = if total == 0 {
                "no hugepages reserved".to_string()
            } else {
                format!("{} MiB free, {need_mb} MiB needed", (free * page) >> 20)
            };
            let need_what = match mode {
                Some(_) => format!("eal.memory_mb = {need_mb}"),
                None => format!("{need_mb} MiB, the default eal.memory_mb"),
            };
            let check = match mode {
                Some(Hugepages::Required) => Check::fail(
                    NAME,
                    format!("{why} ({need_what}, hugepages = \"required\"): {summary}"),
                ),
                Some(_) => Check::warn(
                    NAME,
                    format!(
                        "{why} ({need_what}): the dataplane falls back to --no-huge (not for production): {summary}"
                    ),
                ),
                None => Check::warn(NAME, format!("{why} ({need_what}): {summary}")),
            };
            return check.fix(sysctl_fix);
        }
        // Enough in total: are there pages on the NUMA nodes of the lcores and NICs?
        self.hugepages_on_nodes(&nodes, size_kb, need_pages, &summary)
            .unwrap_or_else(|| Check::pass(NAME, format!("{summary}; {need_mb} MiB needed")))
    }

    /// A warning when the NUMA nodes of the lcores and NICs have no free hugepages.
    fn hugepages_on_nodes(
        &self,
        nodes: &BTreeMap<u32, (u64, u64)>,
        size_kb: u64,
        need_pages: u64,
        summary: &str,
    ) -> Option<Check> {
        let wanted = self.wanted_nodes();
        let empty: Vec<String> = wanted
            .iter()
            .filter(|(n, _)| nodes.get(n).is_some_and(|&(_, fr)| fr == 0))
            .map(|(n, why)| format!("node{n} ({why})"))
            .collect();
        if empty.is_empty() {
            return None;
        }
        let node = wanted
            .keys()
            .find(|n| nodes.get(n).is_some_and(|&(_, fr)| fr == 0))
            .copied()
            .unwrap_or(0);
        let nr = nodes.get(&node).map_or(0, |&(nr, _)| nr);
        let check = Check::warn(
            "hugepages",
            format!(
                "no free hugepages on {}: DPDK allocates on the lcore's and NIC's node; {summary}",
                empty.join(", ")
            ),
        )
        .fix(format!(
            "echo {} > /sys/devices/system/node/node{node}/hugepages/hugepages-{size_kb}kB/nr_hugepages",
            nr + need_pages + 64
        ));
        Some(check)
    }

    /// `node -> (nr_hugepages, free_hugepages)` of the given page size.
    fn hugepage_nodes(&self, size_kb: u64) -> BTreeMap<u32, (u64, u64)> {
        let base = "/sys/devices/system/node";
        self.root
            .numbered(base, "node")
            .into_iter()
            .filter_map(|n| {
                let dir = format!("{base}/node{n}/hugepages/hugepages-{size_kb}kB");
                let nr = self.root.read_trim(&format!("{dir}/nr_hugepages"))?;
                let fr = self.root.read_trim(&format!("{dir}/free_hugepages"))?;
                Some((n, (nr.parse().ok()?, fr.parse().ok()?)))
            })
            .collect()
    }

    /// NUMA nodes holding the config's lcores or PCI NICs, with what put them there.
    fn wanted_nodes(&self) -> BTreeMap<u32, String> {
        let mut wanted = BTreeMap::<u32, Vec<String>>::new();
        let Some(lcores) = self.lcores() else {
            return BTreeMap::new();
        };
        let base = "/sys/devices/system/node";
        for n in self.root.numbered(base, "node") {
            let cpus = self
                .root
                .read(&format!("{base}/node{n}/cpulist"))
                .and_then(|s| parse::cpu_list(&s, None).ok())
                .unwrap_or_default();
            let here: CpuSet = cpus.intersection(&lcores).copied().collect();
            if !here.is_empty() {
                wanted
                    .entry(n)
                    .or_default()
                    .push(format!("lcores {}", parse::format_cpu_list(&here)));
            }
        }
        for (port, addr) in self.pci_ports() {
            let node = self
                .root
                .read_trim(&format!("/sys/bus/pci/devices/{addr}/numa_node"))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(n) = node {
                wanted.entry(n).or_default().push(format!("port {port}"));
            }
        }
        wanted.into_iter().map(|(n, w)| (n, w.join(", "))).collect()
    }

    fn hugetlbfs(&self) -> Check {
        const NAME: &str = "hugetlbfs";
        let mounts = parse::huge_mounts(&self.root.read("/proc/mounts").unwrap_or_default());
        let listed: Vec<String> = mounts
            .iter()
            .map(|m| match &m.pagesize {
                Some(p) => format!("{} (pagesize={p})", m.path),
                None => m.path.clone(),
            })
            .collect();
        let mode = self.config.map(|c| c.eal.hugepages);
        if mode == Some(Hugepages::Off) {
            return Check::pass(NAME, "not used: eal.hugepages = \"off\"");
        }
        let missing = |what: String, dir: &str| {
            let check = match mode {
                Some(Hugepages::Required) => Check::fail(NAME, what),
                _ => Check::warn(NAME, what),
            };
            check.fix(format!(
                "mkdir -p {dir} && mount -t hugetlbfs -o pagesize=2M nodev {dir}   (persist: nodev {dir} hugetlbfs pagesize=2M 0 0 in /etc/fstab)"
            ))
        };
        let huge_dir = self.config.and_then(|c| c.eal.huge_dir.as_deref());
        match huge_dir {
            Some(dir) => {
                let dir_s = dir.display().to_string();
                let trimmed = dir_s.trim_end_matches('/');
                if mounts.iter().any(|m| m.path == trimmed) {
                    Check::pass(NAME, format!("eal.huge_dir {dir_s} is a hugetlbfs mount"))
                } else {
                    missing(
                        format!(
                            "eal.huge_dir {dir_s} is not a hugetlbfs mount (mounted: {})",
                            if listed.is_empty() {
                                "none".to_string()
                            } else {
                                listed.join(", ")
                            }
                        ),
                        &dir_s,
                    )
                }
            }
            None if listed.is_empty() => {
                missing("no hugetlbfs mounted".to_string(), "/dev/hugepages")
            }
            None => Check::pass(NAME, format!("mounted at {}", listed.join(", "))),
        }
    }

    fn nic(&self) -> Check {
        const NAME: &str = "nic";
        let Some(config) = self.config else {
            return Check::skipped(NAME, "pass one to check its ports' devices");
        };
        let mut results: Vec<(Status, String, String)> = Vec::new();
        for port in &config.ports {
            let r = match &port.device {
                PortDevice::Vdev { name, .. } => (
                    Status::Pass,
                    format!("vdev {name}: no NIC binding needed"),
                    String::new(),
                ),
                PortDevice::Pci(a) => self.pci_port(&port.name, &parse::pci_sysfs_name(a)),
            };
            results.push(r);
        }
        let status = results.iter().map(|r| r.0).max().unwrap_or(Status::Pass);
        let detail: Vec<&str> = results.iter().map(|r| r.1.as_str()).collect();
        let fixes: Vec<&str> = results
            .iter()
            .filter(|r| !r.2.is_empty())
            .map(|r| r.2.as_str())
            .collect();
        Check::new(NAME, status, detail.join("; ")).fix(fixes.join("; "))
    }

    fn pci_port(&self, port: &str, addr: &str) -> (Status, String, String) {
        let dev = format!("/sys/bus/pci/devices/{addr}");
        let bind = format!("modprobe vfio-pci && dpdk-devbind.py --bind=vfio-pci {addr}");
        if !self.root.exists(&dev) {
            return (
                Status::Fail,
                format!("port {port}: no PCI device {addr}"),
                "lspci -D -d ::0200   (then set port.device to the NIC's address)".to_string(),
            );
        }
        let numa = self
            .root
            .read_trim(&format!("{dev}/numa_node"))
            .filter(|n| n != "-1")
            .map(|n| format!(", NUMA node {n}"))
            .unwrap_or_default();
        match self.pci_driver(addr).as_deref() {
            Some("vfio-pci") => (
                Status::Pass,
                format!("port {port}: {addr} bound to vfio-pci{numa}"),
                String::new(),
            ),
            Some(d) if is_bifurcated_driver(d) => (
                Status::Pass,
                format!("port {port}: {addr} on {d}{numa} (bifurcated driver: DPDK uses it as is)"),
                String::new(),
            ),
            Some(d @ ("uio_pci_generic" | "igb_uio")) => (
                Status::Warn,
                format!("port {port}: {addr} bound to {d}{numa}: works, but vfio-pci adds IOMMU isolation"),
                bind,
            ),
            Some(d) => {
                let iface = self.root.list(&format!("{dev}/net"));
                let down = iface
                    .first()
                    .map(|i| format!("ip link set dev {i} down && "))
                    .unwrap_or_default();
                let named = iface
                    .first()
                    .map(|i| format!(" ({i})"))
                    .unwrap_or_default();
                (
                    Status::Fail,
                    format!("port {port}: {addr}{named} is bound to kernel driver {d}, not vfio-pci"),
                    format!("{down}{bind}"),
                )
            }
            None => (
                Status::Fail,
                format!("port {port}: {addr} has no driver bound"),
                bind,
            ),
        }
    }

    fn iommu(&self) -> Check {
        const NAME: &str = "iommu";
        let groups = self.root.list("/sys/kernel/iommu_groups").len();
        let noiommu = self
            .root
            .read_trim("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode")
            .is_some_and(|v| v == "Y" || v == "1");
        let needed = self.config.map(|_| self.needs_vfio());
        let fix = format!(
            "add intel_iommu=on iommu=pt (AMD: amd_iommu=on iommu=pt) {GRUB_EDIT}   (a VM without a vIOMMU: modprobe vfio enable_unsafe_noiommu_mode=1)"
        );
        if needed == Some(false) {
            return Check::pass(NAME, "not needed: no port uses vfio-pci");
        }
        if groups > 0 {
            return Check::pass(NAME, format!("IOMMU on ({groups} groups)"));
        }
        if noiommu {
            return Check::warn(
                NAME,
                "no IOMMU; vfio is in unsafe no-IOMMU mode (works, without DMA isolation)",
            )
            .fix(fix);
        }
        let check = match needed {
            Some(_) => Check::fail(
                NAME,
                "no IOMMU groups and vfio no-IOMMU mode is off: vfio-pci cannot drive the NIC",
            ),
            None => Check::warn(
                NAME,
                "no IOMMU groups: a vfio-pci NIC cannot be used here (vdevs can)",
            ),
        };
        check.fix(fix)
    }

    /// `isolcpus`, `nohz_full` or `rcu_nocbs` covering the dataplane lcores.
    fn cpu_param(&self, name: &'static str) -> Check {
        let lcores = self.lcores();
        let list = lcores
            .as_ref()
            .map(parse::format_cpu_list)
            .unwrap_or_else(|| "<dataplane cores>".to_string());
        let value = if name == "isolcpus" {
            format!("managed_irq,domain,{list}")
        } else {
            list.clone()
        };
        let fix = format!("add {name}={value} {GRUB_EDIT}");
        let cpus = match self.cmdline.get(name) {
            None => {
                let what = match &lcores {
                    Some(_) => format!(
                        "not on the kernel command line: lcores {list} are shared with other tasks"
                    ),
                    None => "not on the kernel command line".to_string(),
                };
                return Check::warn(name, what).fix(fix);
            }
            Some(None) => {
                return Check::warn(name, format!("`{name}` is set without a cpu list")).fix(fix)
            }
            Some(Some(v)) => {
                let parsed = if name == "isolcpus" {
                    parse::isolcpus(v, self.last_cpu())
                        .map(|iso| (iso.domain().then_some(()), iso.cpus))
                } else {
                    parse::cpu_list(v, self.last_cpu()).map(|c| (Some(()), c))
                };
                match parsed {
                    Err(e) => {
                        return Check::warn(name, format!("cannot parse {name}={v}: {e}")).fix(fix)
                    }
                    Ok((None, _)) => {
                        return Check::warn(
                            name,
                            format!("isolcpus={v} lacks the domain flag: the cores stay in scheduler load balancing"),
                        )
                        .fix(fix)
                    }
                    Ok((Some(()), cpus)) => (v, cpus),
                }
            }
        };
        let (v, cpus) = cpus;
        match lcores {
            None if cpus.is_empty() => {
                Check::warn(name, format!("{name}={v} names no cpu")).fix(fix)
            }
            None => Check::pass(name, format!("{name}={v}")),
            Some(l) => {
                let missing: CpuSet = l.difference(&cpus).copied().collect();
                if missing.is_empty() {
                    Check::pass(name, format!("{name}={v} covers lcores {list}"))
                } else {
                    Check::warn(
                        name,
                        format!(
                            "{name}={v} leaves out lcores {}",
                            parse::format_cpu_list(&missing)
                        ),
                    )
                    .fix(fix)
                }
            }
        }
    }

    fn governor(&self) -> Check {
        const NAME: &str = "cpu-governor";
        let (cpus, what) = self.cpus_to_check();
        let mut by_governor = BTreeMap::<String, CpuSet>::new();
        let mut unknown = CpuSet::new();
        for &cpu in &cpus {
            match self.root.read_trim(&format!(
                "/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
            )) {
                Some(g) => {
                    by_governor.entry(g).or_default().insert(cpu);
                }
                None => {
                    unknown.insert(cpu);
                }
            }
        }
        let list = parse::format_cpu_list(&cpus);
        if by_governor.is_empty() {
            return Check::warn(
                NAME,
                format!("no cpufreq on {what} {list} (a VM, or no cpufreq driver): frequency is up to the hypervisor or firmware"),
            );
        }
        let slow: Vec<String> = by_governor
            .iter()
            .filter(|(g, _)| g.as_str() != "performance")
            .map(|(g, c)| format!("{g} on {}", parse::format_cpu_list(c)))
            .collect();
        if !slow.is_empty() {
            return Check::warn(NAME, format!("{what} {list}: {}", slow.join(", ")))
                .fix(format!("cpupower -c {list} frequency-set -g performance"));
        }
        if !unknown.is_empty() {
            return Check::warn(
                NAME,
                format!(
                    "performance, but no cpufreq on {}",
                    parse::format_cpu_list(&unknown)
                ),
            );
        }
        Check::pass(NAME, format!("performance on {what} {list}"))
    }

    fn cstates(&self) -> Check {
        const NAME: &str = "c-states";
        let (cpus, what) = self.cpus_to_check();
        let list = parse::format_cpu_list(&cpus);
        let mut deep = BTreeMap::<String, CpuSet>::new();
        let mut any_cpuidle = false;
        for &cpu in &cpus {
            let dir = format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle");
            for s in self.root.numbered(&dir, "state") {
                any_cpuidle = true;
                let state = format!("{dir}/state{s}");
                let name = self
                    .root
                    .read_trim(&format!("{state}/name"))
                    .unwrap_or_else(|| format!("state{s}"));
                let latency: u64 = self
                    .root
                    .read_trim(&format!("{state}/latency"))
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let disabled = self
                    .root
                    .read_trim(&format!("{state}/disable"))
                    .is_some_and(|d| d != "0");
                if latency >= DEEP_CSTATE_LATENCY_US && !disabled && name != "POLL" {
                    deep.entry(format!("{name} ({latency} us)"))
                        .or_default()
                        .insert(cpu);
                }
            }
        }
        if !any_cpuidle {
            return Check::pass(
                NAME,
                format!("no cpuidle states exposed on {what} {list} (no cpuidle driver, typical of VMs)"),
            );
        }
        if deep.is_empty() {
            return Check::pass(
                NAME,
                format!(
                    "no C-state slower than {DEEP_CSTATE_LATENCY_US} us enabled on {what} {list}"
                ),
            );
        }
        let found: Vec<String> = deep
            .iter()
            .map(|(s, c)| format!("{s} on {}", parse::format_cpu_list(c)))
            .collect();
        Check::warn(NAME, format!("deep C-states enabled: {}", found.join(", "))).fix(format!(
            "cpupower -c {list} idle-set -D {DEEP_CSTATE_LATENCY_US}   (or add processor.max_cstate=1 intel_idle.max_cstate=0 {GRUB_EDIT})"
        ))
    }

    fn thp(&self) -> Check {
        const NAME: &str = "transparent-hugepages";
        let path = "/sys/kernel/mm/transparent_hugepage/enabled";
        let Some(text) = self.root.read(path) else {
            return Check::pass(NAME, "not built into this kernel");
        };
        match parse::bracketed_choice(&text) {
            Some(c @ ("never" | "madvise")) => Check::pass(NAME, format!("enabled = {c}")),
            Some(c) => Check::warn(
                NAME,
                format!("enabled = {c}: khugepaged compaction can stall the dataplane's cores"),
            )
            .fix(format!(
                "echo madvise > {path}   (persist: add transparent_hugepage=madvise {GRUB_EDIT})"
            )),
            None => Check::warn(NAME, format!("cannot parse {path}: `{}`", text.trim())),
        }
    }

    fn irq_affinity(&self) -> Check {
        const NAME: &str = "irq-affinity";
        let target: CpuSet = match self.lcores() {
            Some(l) => l,
            None => match self
                .cmdline
                .get("isolcpus")
                .flatten()
                .and_then(|v| parse::isolcpus(v, self.last_cpu()).ok())
            {
                Some(iso) if !iso.cpus.is_empty() => iso.cpus,
                _ => return Check::skipped(NAME, "and no isolcpus: no cores to keep IRQs off"),
            },
        };
        let target_s = parse::format_cpu_list(&target);
        let irqs = self.root.numbered("/proc/irq", "");
        let mut offending = Vec::new();
        for irq in &irqs {
            let Some(list) = self
                .root
                .read(&format!("/proc/irq/{irq}/smp_affinity_list"))
            else {
                continue;
            };
            if let Ok(cpus) = parse::cpu_list(&list, self.last_cpu()) {
                if !cpus.is_disjoint(&target) {
                    offending.push(irq.to_string());
                }
            }
        }
        let default_hits = self
            .root
            .read("/proc/irq/default_smp_affinity")
            .and_then(|m| parse::cpu_mask(&m).ok())
            .map(|m| m.intersection(&target).copied().collect::<CpuSet>())
            .unwrap_or_default();
        if offending.is_empty() && default_hits.is_empty() {
            return Check::pass(
                NAME,
                format!("{} IRQs, none allowed on cpus {target_s}", irqs.len()),
            );
        }
        let mut detail = Vec::new();
        if !offending.is_empty() {
            let shown: Vec<&str> = offending.iter().take(8).map(String::as_str).collect();
            detail.push(format!(
                "{} of {} IRQs may run on cpus {target_s} (irq {}{})",
                offending.len(),
                irqs.len(),
                shown.join(", "),
                if offending.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            ));
        }
        if !default_hits.is_empty() {
            detail.push(format!(
                "new IRQs default to cpus including {}",
                parse::format_cpu_list(&default_hits)
            ));
        }
        let housekeeping: CpuSet = self.online.difference(&target).copied().collect();
        let fix = if housekeeping.is_empty() {
            "leave at least one core outside eal.lcores for the kernel and IRQs".to_string()
        } else {
            let hk = parse::format_cpu_list(&housekeeping);
            format!(
                "systemctl stop irqbalance; for i in /proc/irq/*/smp_affinity_list; do echo {hk} > $i; done; echo {} > /proc/irq/default_smp_affinity   (or IRQBALANCE_BANNED_CPULIST={target_s} in /etc/default/irqbalance)",
                format_cpu_mask(&housekeeping)
            )
        };
        Check::warn(NAME, detail.join("; ")).fix(fix)
    }

    fn memlock(&self) -> Check {
        const NAME: &str = "memlock";
        let limit = memlock_limit();
        let need_mb = self
            .config
            .map(|c| u64::from(c.eal.memory_mb))
            .unwrap_or(DEFAULT_MEMORY_MB);
        let fix = "ulimit -l unlimited   (systemd: LimitMEMLOCK=infinity; or `<user> - memlock unlimited` in /etc/security/limits.conf)";
        let check = match limit {
            None => Check::pass(NAME, "RLIMIT_MEMLOCK unlimited"),
            Some(bytes) if bytes >= need_mb << 20 => Check::pass(
                NAME,
                format!("RLIMIT_MEMLOCK {} MiB, {need_mb} MiB needed", bytes >> 20),
            ),
            Some(bytes) if self.has_cap(CAP_IPC_LOCK) == Some(true) => Check::pass(
                NAME,
                format!(
                    "RLIMIT_MEMLOCK {} KiB, but CAP_IPC_LOCK lifts it",
                    bytes >> 10
                ),
            ),
            Some(bytes) => {
                let detail = format!(
                    "RLIMIT_MEMLOCK {} KiB, below the {need_mb} MiB vfio must pin for DMA",
                    bytes >> 10
                );
                let status = if self.needs_vfio() {
                    Status::Fail
                } else {
                    Status::Warn
                };
                Check::new(NAME, status, detail).fix(fix)
            }
        };
        check.source(Source::Process)
    }

    fn capabilities(&self) -> Check {
        const NAME: &str = "capabilities";
        let caps = [
            ("CAP_NET_ADMIN", CAP_NET_ADMIN),
            ("CAP_IPC_LOCK", CAP_IPC_LOCK),
            ("CAP_SYS_NICE", CAP_SYS_NICE),
        ];
        let Some(eff) = self.cap_eff else {
            return Check::warn(NAME, "cannot read CapEff from /proc/self/status");
        };
        let missing: Vec<&str> = caps
            .iter()
            .filter(|&&(_, bit)| eff & (1 << bit) == 0)
            .map(|&(n, _)| n)
            .collect();
        if missing.is_empty() {
            return Check::pass(NAME, "CAP_NET_ADMIN, CAP_IPC_LOCK, CAP_SYS_NICE effective");
        }
        let detail = format!(
            "missing {} (checked for this process: run doctor as the dataplane's user)",
            missing.join(", ")
        );
        let status = if self.pci_ports().is_empty() {
            Status::Warn
        } else {
            Status::Fail
        };
        Check::new(NAME, status, detail).fix(
            "run swqos-dataplane as root, or: setcap cap_net_admin,cap_ipc_lock,cap_sys_nice+ep \"$(command -v swqos-dataplane)\"   (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_IPC_LOCK CAP_SYS_NICE)",
        )
    }

    fn dpdk(&self) -> Check {
        const NAME: &str = "dpdk";
        let mut dirs: Vec<String> = Vec::new();
        if self.root.is_real() {
            if let Ok(p) = std::env::var("PKG_CONFIG_PATH") {
                dirs.extend(p.split(':').filter(|d| !d.is_empty()).map(str::to_string));
            }
        }
        for prefix in ["/usr", "/usr/local"] {
            for lib in self.root.list(&format!("{prefix}/lib")) {
                if lib.contains("-linux-") {
                    dirs.push(format!("{prefix}/lib/{lib}/pkgconfig"));
                }
            }
            for sub in ["lib", "lib64", "share"] {
                dirs.push(format!("{prefix}/{sub}/pkgconfig"));
            }
        }
        let pc = dirs.iter().find_map(|d| {
            let v = parse::pc_version(&self.root.read(&format!("{d}/libdpdk.pc"))?)?;
            Some((v, d.clone()))
        });
        let packages = parse::dpkg_installed(
            &self.root.read("/var/lib/dpkg/status").unwrap_or_default(),
            |n| n.starts_with("librte-eal"),
        );
        let mut found = Vec::new();
        if let Some((_, dir)) = &pc {
            found.push(format!("libdpdk.pc in {dir}"));
        }
        for p in &packages {
            found.push(format!("{} {}", p.name, p.version));
        }
        let version = pc
            .as_ref()
            .map(|(v, _)| v.clone())
            .or_else(|| packages.first().map(|p| p.version.clone()));
        let fix = "apt-get install dpdk libdpdk-dev   (Debian 12 ships DPDK 22.11)";
        let Some(version) = version else {
            return Check::fail(
                NAME,
                "DPDK not found (no libdpdk.pc for pkg-config, no librte-eal package)",
            )
            .fix(fix);
        };
        let detail = format!("DPDK {version} ({})", found.join("; "));
        match parse::major_minor(&version) {
            Some(v) if v >= DPDK_BASELINE => Check::pass(NAME, detail),
            _ => Check::warn(
                NAME,
                format!(
                    "{detail}: swqos is built against {}.{}",
                    DPDK_BASELINE.0, DPDK_BASELINE.1
                ),
            )
            .fix(fix),
        }
    }

    fn segment(&self) -> Check {
        const NAME: &str = "shm-segment";
        let Some(config) = self.config else {
            return Check::skipped(NAME, "pass one to check the dataplane's segment")
                .source(Source::Segment);
        };
        segment_check(
            &config.shm.path,
            self.config_path.unwrap_or(Path::new("CONFIG")),
        )
        .source(Source::Segment)
    }
}

/// The shared segment at `path`: running (pass), absent or stopped (warn), unusable (fail).
fn segment_check(path: &Path, config_path: &Path) -> Check {
    const NAME: &str = "shm-segment";
    let shown = path.display();
    let start = format!("swqos-dataplane --config {}", config_path.display());
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::warn(NAME, format!("{shown}: no segment (dataplane not running)"))
                .fix(start)
        }
        Err(e) => return Check::fail(NAME, format!("{shown}: {e}")),
    };
    // The same owner, mode and symlink checks every client makes (`swqos_shm::access`).
    match Segment::attach_any_state(path) {
        Ok(seg) => match seg.check_running() {
            Ok(()) => {
                let h = seg.header();
                let pid = h.dataplane_pid.load(std::sync::atomic::Ordering::Relaxed);
                Check::pass(
                    NAME,
                    format!(
                        "{shown}: dataplane running (pid {pid}, {} lanes)",
                        seg.lanes().len()
                    ),
                )
            }
            Err(e) => Check::warn(NAME, format!("{e}")).fix(start),
        },
        Err(SegmentError::NotFound(_)) => {
            Check::warn(NAME, format!("{shown}: no segment (dataplane not running)")).fix(start)
        }
        Err(SegmentError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Check::fail(
                NAME,
                format!(
                    "{shown}: permission denied (mode 0600, owner uid {})",
                    owner_uid(&meta)
                ),
            )
            .fix("run swqos as the dataplane's user (or root)")
        }
        Err(e @ SegmentError::Unsafe { .. }) => Check::fail(NAME, e.to_string()).fix(
            "keep the segment in a directory of its own (mode 0700) owned by the dataplane's user; \
             the dataplane creates it with the right modes when it is missing",
        ),
        Err(e @ SegmentError::Version { .. }) => Check::fail(NAME, e.to_string())
            .fix("use swqos and swqos-dataplane from the same release"),
        Err(e) => Check::fail(NAME, e.to_string()).fix(format!(
            "stop whatever wrote {shown} and remove it, or point shm.path elsewhere"
        )),
    }
}

fn owner_uid(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::MetadataExt;
    meta.uid()
}

/// Mellanox/NVIDIA NICs keep their kernel driver; DPDK's mlx PMDs work through it.
fn is_bifurcated_driver(driver: &str) -> bool {
    driver.starts_with("mlx4") || driver.starts_with("mlx5")
}

/// `2048` -> `2 MiB`, `1048576` -> `1 GiB`.
fn human_kb(kb: u64) -> String {
    if kb >= 1 << 20 && kb.is_multiple_of(1 << 20) {
        format!("{} GiB", kb >> 20)
    } else if kb >= 1 << 10 && kb.is_multiple_of(1 << 10) {
        format!("{} MiB", kb >> 10)
    } else {
        format!("{kb} KiB")
    }
}

/// A CPU set as the hexadecimal mask `/proc/irq/default_smp_affinity` takes.
fn format_cpu_mask(set: &CpuSet) -> String {
    let Some(&max) = set.last() else {
        return "0".to_string();
    };
    let digits = max / 4 + 1;
    (0..digits)
        .rev()
        .map(|d| {
            let v = (0..4)
                .filter(|b| set.contains(&(d * 4 + b)))
                .fold(0u32, |acc, b| acc | 1 << b);
            char::from_digit(v, 16).unwrap_or('0')
        })
        .collect()
}

/// This process's `RLIMIT_MEMLOCK` soft limit in bytes; `None` when unlimited.
fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` to the valid, exclusively borrowed pointer.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if r != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn masks_and_sizes() {
        let set: CpuSet = [0, 1, 4].into_iter().collect();
        assert_eq!(format_cpu_mask(&set), "13");
        assert_eq!(parse::cpu_mask(&format_cpu_mask(&set)).unwrap(), set);
        assert_eq!(format_cpu_mask(&CpuSet::new()), "0");
        assert_eq!(human_kb(2048), "2 MiB");
        assert_eq!(human_kb(1048576), "1 GiB");
        assert_eq!(human_kb(64), "64 KiB");
        assert!(is_bifurcated_driver("mlx5_core"));
        assert!(!is_bifurcated_driver("ixgbe"));
    }

    #[test]
    fn segment_states() {
        let dir = std::env::temp_dir().join(format!("swqos-doctor-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let cfg = Path::new("x.toml");
        let missing = segment_check(&dir.join("none"), cfg);
        assert_eq!(missing.status, Status::Warn);
        assert!(missing.detail.contains("dataplane not running"));
        let loose = dir.join("loose");
        std::fs::write(&loose, vec![0u8; 4096]).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = segment_check(&loose, cfg);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("0644"), "{}", c.detail);
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = segment_check(&loose, cfg);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("not a swqos segment"), "{}", c.detail);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
