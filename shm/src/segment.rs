//! Creating (dataplane) and attaching to (clients, control plane) a shared-memory segment.

use std::fs::{self, File};
use std::io;
use std::mem::size_of;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use memmap2::MmapMut;

use crate::access;
use crate::guard;
use crate::layout::{
    Completion, CompletionControl, Header, LaneInfo, Layout, RingControl, Slot, State,
    LAYOUT_VERSION, MAGIC, MAX_LANES, PORT_NAME_LEN,
};
use crate::stats::{LcoreStats, PortStats};
use crate::time::monotonic_ns;

/// Files are sized in whole 2 MiB huge pages so the same code works on hugetlbfs.
const FILE_ROUNDING: u64 = 2 << 20;

/// How old the heartbeat may be before clients consider the dataplane dead.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a segment could not be created or attached.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// No file at the path.
    #[error("no shared-memory segment at {0} (is swqos-dataplane running with this config?)")]
    NotFound(PathBuf),
    /// Another live dataplane owns the path.
    #[error("{path} is in use by a running dataplane (pid {pid})")]
    InUse {
        /// The segment path.
        path: PathBuf,
        /// The owner.
        pid: u32,
    },
    /// The file is not a segment of this project.
    #[error("{path} is not a swqos segment ({why})")]
    NotASegment {
        /// The segment path.
        path: PathBuf,
        /// What did not match.
        why: String,
    },
    /// The segment was written by a build with another layout.
    #[error("{path} has layout version {found}, this program speaks version {expected}: run a client built from the same release as the dataplane")]
    Version {
        /// The segment path.
        path: PathBuf,
        /// Version in the segment.
        found: u32,
        /// Version of this program.
        expected: u32,
    },
    /// The dataplane is not accepting submissions.
    #[error("the dataplane owning {path} is not running ({why})")]
    NotRunning {
        /// The segment path.
        path: PathBuf,
        /// State or heartbeat detail.
        why: String,
    },
    /// The file or its directory failed an ownership or permission check.
    #[error("refusing {path}: {why}")]
    Unsafe {
        /// The file or directory that failed.
        path: PathBuf,
        /// Which check failed, and how to fix it.
        why: String,
    },
    /// A file that is not a swqos segment is where the dataplane would create one.
    #[error("{path} exists and is not a swqos segment ({why}); the data plane replaces only a stale segment of its own and leaves this file alone: remove it yourself or choose another [shm] path")]
    Foreign {
        /// The segment path.
        path: PathBuf,
        /// What did not match.
        why: String,
    },
    /// Bad layout parameters.
    #[error("invalid segment parameters: {0}")]
    Parameters(String),
    /// An I/O error on the file.
    #[error("{path}: {source}")]
    Io {
        /// The segment path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A mapped segment. The dataplane creates it ([`Segment::create`]) and removes the file when the
/// value is dropped; everyone else attaches ([`Segment::attach`]).
pub struct Segment {
    /// The SIGBUS guard's registration of `map`; declared first so it is dropped (unregistered)
    /// before the mapping is unmapped.
    guard: guard::Registration,
    map: MmapMut,
    base: *mut u8,
    layout: Layout,
    path: PathBuf,
    owner: bool,
    /// Rings handed to a consumer in this process (one consumer per ring).
    taken: Box<[AtomicBool]>,
    /// Stats blocks handed to a writer in this process (one writer per block).
    stats_taken: Box<[AtomicBool]>,
    /// Port stats blocks handed to a writer in this process (one writer per block).
    ports_taken: Box<[AtomicBool]>,
    /// Device and inode of the mapped file, to tell a replaced segment from this one.
    file_id: (u64, u64),
    /// The directory the dataplane created for the segment (removed with it when empty).
    created_dir: Option<PathBuf>,
}

// SAFETY: the mapping stays valid for the value's life and `base` points into it. Every shared
// field is an atomic, or a slot/record whose access is ordered by the rings' acquire/release
// protocol with a single writer at a time, so references to it may cross threads.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` only hands out atomics and raw pointers used under that protocol.
unsafe impl Sync for Segment {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether a process exists (`kill(pid, 0)`; EPERM still means it exists).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check; no signal is sent.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Segment {
    /// Creates the segment at `path` (mode 0600) for `layout`, with the lane table, the port
    /// names (one per port stats block, `layout.n_ports` of them) and the TSC rate, in state
    /// [`State::Initializing`]; call [`Segment::set_state`] with `Running` when ready.
    /// The segment's directory is created (mode 0700) when missing and must otherwise be private
    /// and owned by this user ([`crate::access`]). A stale segment left by a dead dataplane (or
    /// one whose heartbeat stopped) is replaced; one owned by a live dataplane is not, and a file
    /// that is not a swqos segment is refused and left alone.
    pub fn create(
        path: &Path,
        layout: Layout,
        lanes: &[LaneInfo],
        ports: &[&str],
        tsc_hz: u64,
    ) -> Result<Segment, SegmentError> {
        if lanes.len() > MAX_LANES {
            return Err(SegmentError::Parameters(format!(
                "{} lanes, at most {MAX_LANES}",
                lanes.len()
            )));
        }
        if ports.len() != layout.n_ports as usize {
            return Err(SegmentError::Parameters(format!(
                "{} port names for {} port stats blocks",
                ports.len(),
                layout.n_ports
            )));
        }
        let dir = access::segment_dir(path);
        let created_dir = access::prepare_dir(&dir)?;
        let file = match Segment::replace_stale(path).and_then(|()| access::create_file(path)) {
            Ok(file) => file,
            Err(e) => {
                if created_dir {
                    let _ = fs::remove_dir(&dir);
                }
                return Err(e);
            }
        };
        let len = (layout.size as u64).div_ceil(FILE_ROUNDING) * FILE_ROUNDING;
        file.set_len(len).map_err(io_err(path))?;
        let mut seg = Segment::map(file, path, layout, true)?;
        seg.created_dir = created_dir.then_some(dir);

        // A new file reads as zeros: only non-zero fields need writing. The header is written
        // through a raw pointer before any other process can trust it (magic is still 0).
        let h = seg.base as *mut Header;
        // SAFETY: `h` points to the start of a fresh mapping at least `size_of::<Header>()` long,
        // which no other process trusts until `magic` is published below.
        unsafe {
            (*h).layout_version = LAYOUT_VERSION;
            (*h).header_size = size_of::<Header>() as u32;
            (*h).layout_size = layout.size as u64;
            (*h).n_rings = layout.n_rings;
            (*h).ring_slots = layout.ring_slots;
            (*h).n_lcores = layout.n_lcores;
            (*h).n_lanes = lanes.len() as u32;
            (*h).n_ports = layout.n_ports;
            (*h).tsc_hz = tsc_hz;
            (*h).rings_offset = layout.rings_offset as u64;
            (*h).completions_offset = layout.completions_offset as u64;
            (*h).stats_offset = layout.stats_offset as u64;
            (*h).instance = random_instance();
            (*h).ports_offset = layout.ports_offset as u64;
            for (i, lane) in lanes.iter().enumerate() {
                (*h).lanes[i] = *lane;
            }
        }
        for (i, name) in ports.iter().enumerate() {
            let mut bytes = [0u8; PORT_NAME_LEN];
            let n = name.len().min(PORT_NAME_LEN);
            bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
            // SAFETY: port block `i` lies inside the fresh mapping per `Layout` and is 128-byte
            // aligned; its name is written once, before `magic` is published, like the lane table.
            unsafe {
                let p = seg.base.add(layout.port_stats(i)) as *mut PortStats;
                std::ptr::addr_of_mut!((*p).name).write(bytes);
            }
        }
        let hdr = seg.header();
        hdr.dataplane_pid
            .store(std::process::id(), Ordering::Relaxed);
        hdr.state
            .store(State::Initializing as u32, Ordering::Relaxed);
        hdr.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
        hdr.magic.store(MAGIC, Ordering::Release);
        Ok(seg)
    }

    /// Attaches to the segment at `path`, checking magic, layout version and size, and that its
    /// dataplane is running and alive.
    pub fn attach(path: &Path) -> Result<Segment, SegmentError> {
        Segment::open_checked(path, true)
    }

    /// Attaches without requiring a running dataplane (for reading stats after it stopped).
    pub fn attach_any_state(path: &Path) -> Result<Segment, SegmentError> {
        Segment::open_checked(path, false)
    }

    fn open_checked(path: &Path, require_running: bool) -> Result<Segment, SegmentError> {
        let file = access::open_existing(path)?;
        let not_a_segment = |why: String| SegmentError::NotASegment {
            path: path.to_path_buf(),
            why,
        };
        let len = file.metadata().map_err(io_err(path))?.len();
        if len < size_of::<Header>() as u64 {
            return Err(not_a_segment(format!("{len} bytes, too small")));
        }
        // SAFETY: as in `map`; the mapping is at least a header long (checked above).
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(io_err(path))?;
        // Registered before the first read: a file truncated from now on reads as zeros.
        let guard = guard::register(map.as_ptr(), map.len());
        // SAFETY: page-aligned mapping of at least `size_of::<Header>()` bytes.
        let h = unsafe { &*(map.as_mut_ptr() as *const Header) };
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(not_a_segment("bad magic".into()));
        }
        if h.layout_version != LAYOUT_VERSION {
            return Err(SegmentError::Version {
                path: path.to_path_buf(),
                found: h.layout_version,
                expected: LAYOUT_VERSION,
            });
        }
        let layout =
            Layout::new(h.n_rings, h.ring_slots, h.n_lcores, h.n_ports).map_err(not_a_segment)?;
        if h.header_size as usize != size_of::<Header>()
            || h.layout_size != layout.size as u64
            || h.rings_offset != layout.rings_offset as u64
            || h.completions_offset != layout.completions_offset as u64
            || h.stats_offset != layout.stats_offset as u64
            || h.ports_offset != layout.ports_offset as u64
            || h.n_lanes as usize > MAX_LANES
            || len < layout.size as u64
        {
            return Err(not_a_segment(
                "layout sizes differ from what this program computes".into(),
            ));
        }
        let file_id = file_identity(&file).map_err(io_err(path))?;
        let seg = Segment::from_map(map, guard, path, layout, false, file_id);
        if require_running {
            seg.check_running()?;
        }
        Ok(seg)
    }

    fn map(file: File, path: &Path, layout: Layout, owner: bool) -> Result<Segment, SegmentError> {
        // SAFETY: the file is ours to map; other processes modify it only through the atomics and
        // ring protocol this crate defines, which is the point of mapping it shared.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(io_err(path))?;
        let guard = guard::register(map.as_ptr(), map.len());
        if map.len() < size_of::<Header>().max(layout.size) {
            return Err(SegmentError::NotASegment {
                path: path.to_path_buf(),
                why: "file shorter than its layout".into(),
            });
        }
        let file_id = file_identity(&file).map_err(io_err(path))?;
        Ok(Segment::from_map(map, guard, path, layout, owner, file_id))
    }

    fn from_map(
        mut map: MmapMut,
        guard: guard::Registration,
        path: &Path,
        layout: Layout,
        owner: bool,
        file_id: (u64, u64),
    ) -> Segment {
        let base = map.as_mut_ptr();
        Segment {
            guard,
            map,
            base,
            layout,
            path: path.to_path_buf(),
            owner,
            taken: (0..layout.n_rings)
                .map(|_| AtomicBool::new(false))
                .collect(),
            stats_taken: (0..layout.n_lcores)
                .map(|_| AtomicBool::new(false))
                .collect(),
            ports_taken: (0..layout.n_ports)
                .map(|_| AtomicBool::new(false))
                .collect(),
            file_id,
            created_dir: None,
        }
    }

    /// Whether `path` still names the file this value mapped. `false` once the dataplane that
    /// owned it removed it, or a new dataplane replaced it with a new segment: a long-lived
    /// reader (the control plane) then attaches again.
    pub fn is_current(&self) -> bool {
        fs::metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.file_id)
            .unwrap_or(false)
    }

    /// Whether another process truncated or shrank the file under this mapping: the part past
    /// its new end now reads as zeros (see [`crate::guard`]; needs [`crate::guard::install`]).
    /// Stop using the segment: a dataplane stops, readers detach.
    pub fn is_damaged(&self) -> bool {
        self.guard.damaged()
    }

    /// Whether a dataplane still runs this segment: not stopped, its pid alive and its heartbeat
    /// fresh (a copied segment naming some live pid, or one whose dataplane hangs, is not).
    pub fn is_live(&self) -> bool {
        let h = self.header();
        let pid = h.dataplane_pid.load(Ordering::Acquire);
        let state = State::from_u32(h.state.load(Ordering::Acquire));
        state != Some(State::Stopped) && pid_alive(pid) && self.heartbeat_age().is_some()
    }

    /// The heartbeat's age, or `None` when it is older than [`HEARTBEAT_TIMEOUT`] or from the
    /// future (a segment copied from a host with a longer uptime).
    fn heartbeat_age(&self) -> Option<u64> {
        let beat = self.header().heartbeat_ns.load(Ordering::Acquire);
        let now = monotonic_ns();
        let limit = HEARTBEAT_TIMEOUT.as_nanos() as u64;
        if beat > now.saturating_add(limit) {
            return None;
        }
        let age = now.saturating_sub(beat);
        (age <= limit).then_some(age)
    }

    /// Removes a stale segment of our own at `path` so a new one can be created there. Refuses
    /// a live one ([`SegmentError::InUse`]), a file that is not a swqos segment
    /// ([`SegmentError::Foreign`]; left untouched) and one failing the ownership checks.
    fn replace_stale(path: &Path) -> Result<(), SegmentError> {
        match Segment::inspect_existing(path)? {
            Some(_) => fs::remove_file(path).map_err(io_err(path)),
            None => Ok(()),
        }
    }

    /// What [`Segment::create`] would find at `path`: `None` when nothing is there, the stale
    /// segment's former pid when a stale segment of ours is there; errors as
    /// [`Segment::replace_stale`]. Changes nothing.
    fn inspect_existing(path: &Path) -> Result<Option<u32>, SegmentError> {
        let old = match Segment::open_checked(path, false) {
            Ok(old) => old,
            Err(SegmentError::NotFound(_)) => return Ok(None),
            Err(SegmentError::NotASegment { why, .. }) => {
                return Err(SegmentError::Foreign {
                    path: path.to_path_buf(),
                    why,
                })
            }
            Err(e) => return Err(e),
        };
        let pid = old.header().dataplane_pid.load(Ordering::Acquire);
        if pid != std::process::id() && old.is_live() {
            return Err(SegmentError::InUse {
                path: path.to_path_buf(),
                pid,
            });
        }
        Ok(Some(pid))
    }

    /// Checks, without changing anything, that a dataplane could create its segment at `path`
    /// (for `swqos-dataplane --check`): the directory, if it exists, is private and ours, and
    /// whatever file is there is a swqos segment of ours (live or stale).
    pub fn check_path(path: &Path) -> Result<(), SegmentError> {
        let dir = access::segment_dir(path);
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(()); // created at start
        }
        access::check_dir(&dir)?;
        match Segment::inspect_existing(path) {
            Ok(_) | Err(SegmentError::InUse { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Errors unless the dataplane is in state Running with a fresh heartbeat and a live pid.
    pub fn check_running(&self) -> Result<(), SegmentError> {
        let h = self.header();
        let not_running = |why: String| SegmentError::NotRunning {
            path: self.path.clone(),
            why,
        };
        let state = State::from_u32(h.state.load(Ordering::Acquire));
        if state != Some(State::Running) {
            return Err(not_running(format!("state {state:?}")));
        }
        let pid = h.dataplane_pid.load(Ordering::Relaxed);
        if !pid_alive(pid) {
            return Err(not_running(format!("its process {pid} is gone")));
        }
        if self.heartbeat_age().is_none() {
            let beat = h.heartbeat_ns.load(Ordering::Relaxed);
            let now = monotonic_ns();
            return Err(not_running(if beat > now {
                "its heartbeat is in the future (a segment copied from another host?)".into()
            } else {
                format!("no heartbeat for {} ms", (now - beat) / 1_000_000)
            }));
        }
        Ok(())
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The header.
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping is at least a header long (checked in `map`) and page aligned;
        // shared fields of `Header` are atomics, the rest is written once before `magic`.
        unsafe { &*(self.base as *const Header) }
    }

    /// The configured lanes, by id.
    pub fn lanes(&self) -> Vec<LaneInfo> {
        let h = self.header();
        h.lanes[..h.n_lanes as usize].to_vec()
    }

    /// Sets the published state.
    pub fn set_state(&self, s: State) {
        self.header().state.store(s as u32, Ordering::Release);
    }

    /// The published state.
    pub fn state(&self) -> Option<State> {
        State::from_u32(self.header().state.load(Ordering::Acquire))
    }

    /// Refreshes the heartbeat (dataplane main loop).
    pub fn heartbeat(&self) {
        self.header()
            .heartbeat_ns
            .store(monotonic_ns(), Ordering::Release);
    }

    /// Ring `i`'s control words.
    pub(crate) fn ring_control(&self, i: usize) -> &RingControl {
        assert!(i < self.layout.n_rings as usize);
        // SAFETY: offset within the mapping per `Layout`, aligned (page-aligned stride), and all
        // fields are atomics.
        unsafe { &*(self.base.add(self.layout.ring(i)) as *const RingControl) }
    }

    /// Ring `i`'s first slot.
    pub(crate) fn slots(&self, i: usize) -> *mut Slot {
        assert!(i < self.layout.n_rings as usize);
        // SAFETY: offset within the mapping per `Layout`.
        unsafe { self.base.add(self.layout.slots(i)) as *mut Slot }
    }

    /// Completion ring `i`'s control words.
    pub(crate) fn completion_control(&self, i: usize) -> &CompletionControl {
        assert!(i < 2 * self.layout.n_rings as usize);
        // SAFETY: offset within the mapping per `Layout`, aligned, fields are atomics.
        unsafe { &*(self.base.add(self.layout.completion_ring(i)) as *const CompletionControl) }
    }

    /// Completion ring `i`'s first record.
    pub(crate) fn completion_records(&self, i: usize) -> *mut Completion {
        assert!(i < 2 * self.layout.n_rings as usize);
        // SAFETY: offset within the mapping per `Layout`.
        unsafe { self.base.add(self.layout.completion_records(i)) as *mut Completion }
    }

    /// Publishes this process as the segment's control plane, for clients and `swqos stats` to
    /// see (the data plane trusts only the control file's copy, [`crate::ControlSegment`]):
    /// takes the role when it is free or its holder is dead. `Err(pid)` names the live
    /// control plane that holds it.
    pub fn claim_control(&self) -> Result<(), u32> {
        self.header().control.claim()
    }

    /// Gives the control-plane role back (on a clean exit).
    pub fn release_control(&self) {
        self.header().control.release();
    }

    /// Publishes whether the control plane watches landings, and its landing window in
    /// milliseconds (0: off). Clients read it when they submit ([`Segment::landing_ms`]).
    pub fn set_landing_ms(&self, ms: u32) {
        self.header().control.set_landing_ms(ms);
    }

    /// The landing window of the control plane serving this data plane, in milliseconds; 0
    /// when it does not watch landings (or no control plane runs).
    pub fn landing_ms(&self) -> u32 {
        self.header().control.landing_ms()
    }

    /// Refreshes the control plane's heartbeat.
    pub fn control_heartbeat(&self) {
        self.header().control.beat();
    }

    /// Whether a control plane holds the role and its heartbeat is younger than `max_age_ns`.
    pub fn control_alive(&self, max_age_ns: u64) -> bool {
        self.header().control.alive(max_age_ns)
    }

    /// Stats block `i` (for readers).
    pub fn stats(&self, i: usize) -> &LcoreStats {
        assert!(i < self.layout.n_lcores as usize);
        // SAFETY: offset within the mapping per `Layout`, 128-aligned (page-aligned base, block
        // size a multiple of 128), all fields atomics.
        unsafe { &*(self.base.add(self.layout.stats(i)) as *const LcoreStats) }
    }

    /// Port stats block `i` (for readers).
    pub fn port_stats(&self, i: usize) -> &PortStats {
        assert!(i < self.layout.n_ports as usize);
        // SAFETY: offset within the mapping per `Layout`, 128-aligned (page-aligned base, block
        // sizes multiples of 128); the counters are atomics and the name is written once before
        // `magic` is published.
        unsafe { &*(self.base.add(self.layout.port_stats(i)) as *const PortStats) }
    }

    /// Claims port stats block `i` for its one writer in this process; `false` if already claimed.
    pub(crate) fn claim_port_stats(&self, i: usize) -> bool {
        !self.ports_taken[i].swap(true, Ordering::AcqRel)
    }

    /// Claims ring `i` for the one consumer in this process; `false` if already claimed.
    pub(crate) fn claim_ring(&self, i: usize) -> bool {
        !self.taken[i].swap(true, Ordering::AcqRel)
    }

    /// Claims stats block `i` for its one writer in this process; `false` if already claimed.
    pub(crate) fn claim_stats(&self, i: usize) -> bool {
        !self.stats_taken[i].swap(true, Ordering::AcqRel)
    }

    /// Whether this process created the segment.
    pub fn is_owner(&self) -> bool {
        self.owner
    }
}

/// A random number for the header's `instance` (the kernel's random bytes; the clock and pid if
/// those are unavailable).
fn random_instance() -> u64 {
    let mut v = 0u64;
    // SAFETY: writes at most 8 bytes into `v`, which is 8 bytes long.
    let n = unsafe { libc::getrandom(&mut v as *mut u64 as *mut libc::c_void, 8, 0) };
    if n != 8 {
        v = monotonic_ns() ^ (u64::from(std::process::id()) << 32);
    }
    v.max(1)
}

fn file_identity(file: &File) -> io::Result<(u64, u64)> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.owner {
            self.set_state(State::Stopped);
            let _ = self.map.flush_async();
            // Only our own file: never one that replaced it at the path.
            if self.is_current() {
                let _ = fs::remove_file(&self.path);
            }
            if let Some(dir) = &self.created_dir {
                let _ = fs::remove_dir(dir); // fails, harmlessly, unless empty
            }
        }
    }
}
