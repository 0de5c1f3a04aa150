//! `swqos doctor`: checks the host against a configuration and prints pass/warn/fail per check,
//! with the command that fixes each one that did not pass.
//!
//! Every file of `/proc` and `/sys` is read through a [`HostRoot`], `/` in production; the hidden
//! `--root DIR` option points it at a fixture tree (for tests). Two things do not come from the
//! root: `RLIMIT_MEMLOCK` (`getrlimit` of this process), and the shared-memory segment at
//! `shm.path` (the real file: it has to be mapped). The JSON output says where each came from.
//!
//! Exit status: 0 when no check failed (warnings allowed), 1 when any failed, 2 for bad usage or
//! an invalid configuration.

mod checks;
mod parse;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `swqos doctor` options.
#[derive(Debug, clap::Args)]
pub(crate) struct DoctorArgs {
    /// The dataplane's TOML configuration; without it only host-wide checks run and the
    /// config-specific ones (ports, segment) are skipped with a note.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Print a JSON array of checks instead of text.
    #[arg(long)]
    json: bool,
    /// For tests: read /proc and /sys under DIR instead of / (a fixture tree).
    #[arg(long, hide = true, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    /// Nothing to do.
    Pass,
    /// Works, but not as fast or as safe as it could be (a development host is allowed these).
    Warn,
    /// The dataplane cannot run as configured.
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// Where a check's facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Files under the host root (`/`, or `--root`).
    Root,
    /// This process itself (`getrlimit`), whatever the root.
    Process,
    /// The segment file at the config's `shm.path`, on the real file system.
    Segment,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Root => "root",
            Source::Process => "process",
            Source::Segment => "segment",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// Stable name (`hugepages`, `isolcpus`, ...).
    pub(crate) name: &'static str,
    /// Pass, warn or fail.
    pub(crate) status: Status,
    /// What was found.
    pub(crate) detail: String,
    /// The command (or edit) that fixes it; empty when there is nothing to do.
    pub(crate) fix: String,
    /// Where the facts came from.
    pub(crate) source: Source,
    /// Not checked because it needs `--config` (reported as a pass).
    pub(crate) skipped: bool,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            fix: String::new(),
            source: Source::Root,
            skipped: false,
        }
    }

    pub(crate) fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Pass, detail)
    }

    pub(crate) fn warn(name: &'static str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Warn, detail)
    }

    pub(crate) fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Fail, detail)
    }

    /// A check that needs `--config`.
    pub(crate) fn skipped(name: &'static str, what: &str) -> Check {
        Check {
            skipped: true,
            ..Check::pass(name, format!("skipped: no --config ({what})"))
        }
    }

    pub(crate) fn fix(self, fix: impl Into<String>) -> Check {
        Check {
            fix: fix.into(),
            ..self
        }
    }

    pub(crate) fn source(self, source: Source) -> Check {
        Check { source, ..self }
    }
}

/// The base directory every `/proc` and `/sys` path is read under.
#[derive(Debug, Clone)]
pub(crate) struct HostRoot {
    base: PathBuf,
}

impl HostRoot {
    pub(crate) fn new(base: impl Into<PathBuf>) -> HostRoot {
        HostRoot { base: base.into() }
    }

    /// Whether this is the real `/`.
    pub(crate) fn is_real(&self) -> bool {
        self.base == Path::new("/")
    }

    /// `abs` (an absolute host path) under the root.
    pub(crate) fn path(&self, abs: &str) -> PathBuf {
        self.base.join(abs.trim_start_matches('/'))
    }

    /// The file's contents, or `None` if it cannot be read.
    pub(crate) fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs)).ok()
    }

    /// The file's contents without surrounding whitespace.
    pub(crate) fn read_trim(&self, abs: &str) -> Option<String> {
        self.read(abs).map(|s| s.trim().to_string())
    }

    pub(crate) fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    /// The names in a directory, sorted; empty if it cannot be read.
    pub(crate) fn list(&self, abs: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(abs))
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Numbered entries `prefix<N>` of a directory (`cpu3`, `node0`, `state2`, IRQ `24`), by N.
    pub(crate) fn numbered(&self, abs: &str, prefix: &str) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .list(abs)
            .iter()
            .filter_map(|n| n.strip_prefix(prefix)?.parse().ok())
            .collect();
        v.sort_unstable();
        v
    }

    /// The last component of a symlink's target (a sysfs `driver` link names the driver).
    pub(crate) fn link_name(&self, abs: &str) -> Option<String> {
        let target = std::fs::read_link(self.path(abs)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }
}

/// Runs `swqos doctor`.
pub(crate) fn run(args: DoctorArgs) -> ExitCode {
    let config = match &args.config {
        None => None,
        Some(path) => match dpdk_config::Config::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let root = HostRoot::new(args.root.clone().unwrap_or_else(|| PathBuf::from("/")));
    if !root.path("/proc").is_dir() {
        eprintln!(
            "error: {} has no proc directory: not a host root",
            root.base.display()
        );
        return ExitCode::from(2);
    }
    let host = checks::Host::new(&root, config.as_ref(), args.config.as_deref());
    let report = host.run_all();
    let out = if args.json {
        render_json(&report)
    } else {
        render_text(&report, std::io::stdout().is_terminal())
    };
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).is_err() {
        return ExitCode::from(2);
    }
    if report.iter().any(|c| c.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The JSON array of checks.
fn render_json(report: &[Check]) -> String {
    let array: Vec<serde_json::Value> = report
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "status": c.status.as_str(),
                "detail": c.detail,
                "fix": c.fix,
                "source": c.source.as_str(),
                "skipped": c.skipped,
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&array).unwrap_or_else(|_| "[]".to_string());
    s.push('\n');
    s
}

/// One aligned line per check, `fix:` under each that did not pass, and a summary line.
fn render_text(report: &[Check], color: bool) -> String {
    let width = report.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in report {
        let (label, code) = match (c.status, c.skipped) {
            (Status::Pass, true) => ("skip", "2"),
            (Status::Pass, false) => ("pass", "32"),
            (Status::Warn, _) => ("warn", "33"),
            (Status::Fail, _) => ("FAIL", "31;1"),
        };
        let label = if color {
            format!("\x1b[{code}m{label}\x1b[0m")
        } else {
            label.to_string()
        };
        let _ = writeln!(out, "{label}  {:width$}  {}", c.name, c.detail);
        if c.status != Status::Pass && !c.fix.is_empty() {
            let _ = writeln!(out, "      {:width$}  fix: {}", "", c.fix);
        }
    }
    let count = |s: Status| report.iter().filter(|c| c.status == s).count();
    let _ = writeln!(
        out,
        "{} checks: {} pass, {} warn, {} fail",
        report.len(),
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_aligns_and_shows_fixes() {
        let report = vec![
            Check::pass("kernel", "Linux 6.1"),
            Check::warn("isolcpus", "not set").fix("add isolcpus=2-5"),
            Check::fail("dpdk", "not found").fix("apt-get install dpdk"),
            Check::skipped("nic", "ports"),
        ];
        let text = render_text(&report, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "pass  kernel    Linux 6.1");
        assert_eq!(lines[1], "warn  isolcpus  not set");
        assert_eq!(lines[2], "                fix: add isolcpus=2-5");
        assert_eq!(lines[3], "FAIL  dpdk      not found");
        assert_eq!(lines[4], "                fix: apt-get install dpdk");
        assert!(lines[5].starts_with("skip  nic       skipped: no --config"));
        assert_eq!(lines[6], "4 checks: 2 pass, 1 warn, 1 fail");
        assert!(render_text(&report, true).contains("\x1b[33mwarn\x1b[0m"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let report = vec![Check::warn("memlock", "64 KiB")
            .fix("ulimit -l unlimited")
            .source(Source::Process)];
        let v: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
        assert_eq!(v[0]["name"], "memlock");
        assert_eq!(v[0]["status"], "warn");
        assert_eq!(v[0]["fix"], "ulimit -l unlimited");
        assert_eq!(v[0]["source"], "process");
        assert_eq!(v[0]["skipped"], false);
    }

    #[test]
    fn root_paths() {
        let r = HostRoot::new("/tmp/x");
        assert_eq!(r.path("/proc/meminfo"), Path::new("/tmp/x/proc/meminfo"));
        assert!(HostRoot::new("/").is_real());
        assert!(!r.is_real());
    }
}
