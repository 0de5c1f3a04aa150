//! The data plane's private half of the shared memory: the session table (relay connections,
//! TLS write keys) and the hand-off rings (relay submissions for the control plane), in a file of
//! their own beside the segment, `<segment>.control`.
//!
//! Client processes map only the segment ([`crate::Segment`]): their rings, completions, stats.
//! They never map this file, so a client (hostile or buggy) can neither read a relay's TLS keys
//! nor write records the control plane would act on, nor fake the control plane's heartbeat the
//! data plane trusts. Only the data plane (which creates it) and the control plane (which
//! attaches to it, after the segment) map it. Both files live in the same private directory and
//! are checked the same way ([`crate::access`]); the two are paired by a random instance number
//! in both headers, so a control file left by another data plane is never taken for this one's.

use std::fs::{self, File};
use std::mem::size_of;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

use crate::access;
use crate::guard;
use crate::layout::{
    CompletionControl, ControlRole, HandoffRecord, Session, SessionTable, HANDOFF_SLOTS,
    LAYOUT_VERSION, MAX_LCORES, MAX_SESSIONS,
};
use crate::segment::{Segment, SegmentError};

/// `b"SWQOSCTL"` as a little-endian u64: the first eight bytes of every control file.
pub const CONTROL_MAGIC: u64 = u64::from_le_bytes(*b"SWQOSCTL");

/// The first structure of the control file.
#[repr(C)]
pub struct ControlHeader {
    /// [`CONTROL_MAGIC`]; written last by the data plane.
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`] of the writer.
    pub layout_version: u32,
    /// `size_of::<ControlHeader>()` of the writer.
    pub header_size: u32,
    /// Bytes of the layout.
    pub layout_size: u64,
    /// Hand-off rings (one per lcore stats block).
    pub n_lcores: u32,
    _reserved: u32,
    /// The segment's instance number (its header's `instance`).
    pub instance: u64,
    /// The control plane serving the data plane: only it reads the hand-off rings and moves
    /// session entries, and the data plane hands relay submissions over only while its
    /// heartbeat here is fresh.
    pub control: ControlRole,
}

/// Where everything in the control file is, from the number of lcores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLayout {
    /// Hand-off rings.
    pub n_lcores: u32,
    /// Offset of the session table ([`SessionTable`]).
    pub sessions_offset: usize,
    /// Offset of the first hand-off ring.
    pub handoff_offset: usize,
    /// Bytes of one hand-off ring (control words, then [`HANDOFF_SLOTS`] records).
    pub handoff_stride: usize,
    /// Total bytes.
    pub size: usize,
}

impl ControlLayout {
    /// The layout for `n_lcores` hand-off rings.
    pub fn new(n_lcores: u32) -> Result<ControlLayout, String> {
        if n_lcores as usize > MAX_LCORES {
            return Err(format!("at most {MAX_LCORES} lcores, not {n_lcores}"));
        }
        let page = 4096;
        let up = |v: usize| v.div_ceil(page) * page;
        let sessions_offset = up(size_of::<ControlHeader>());
        let handoff_offset = up(sessions_offset + size_of::<SessionTable>());
        let handoff_stride =
            up(size_of::<CompletionControl>()
                + HANDOFF_SLOTS as usize * size_of::<HandoffRecord>());
        Ok(ControlLayout {
            n_lcores,
            sessions_offset,
            handoff_offset,
            handoff_stride,
            size: handoff_offset + n_lcores as usize * handoff_stride,
        })
    }

    /// Offset of hand-off ring `i`'s control words.
    pub fn handoff_ring(&self, i: usize) -> usize {
        self.handoff_offset + i * self.handoff_stride
    }

    /// Offset of record 0 of hand-off ring `i`.
    #[inline]
    pub fn handoff_records(&self, i: usize) -> usize {
        self.handoff_ring(i) + size_of::<CompletionControl>()
    }
}

/// The path of the control file of the segment at `segment`.
pub fn control_path(segment: &Path) -> PathBuf {
    let mut name = segment.as_os_str().to_owned();
    name.push(".control");
    PathBuf::from(name)
}

/// The mapped control file.
pub struct ControlSegment {
    /// Declared first: unregistered before the mapping goes.
    guard: guard::Registration,
    map: MmapMut,
    base: *mut u8,
    layout: ControlLayout,
    path: PathBuf,
    owner: bool,
    file_id: (u64, u64),
}

// SAFETY: the mapping lives as long as the value and `base` points into it; every shared field is
// an atomic, or a hand-off record whose access is ordered by the ring's acquire/release protocol
// with one producer (a TX lcore) and one consumer (the control plane holding the role).
unsafe impl Send for ControlSegment {}
// SAFETY: as above; `&ControlSegment` hands out atomics and raw pointers used under that protocol.
unsafe impl Sync for ControlSegment {}

impl ControlSegment {
    /// Creates the control file of `segment` (the data plane, right after creating the
    /// segment; same directory, mode 0600). A stale control file of ours there is replaced; a
    /// file that is not one is refused and left alone.
    pub fn create(segment: &Segment) -> Result<ControlSegment, SegmentError> {
        let path = control_path(segment.path());
        let layout =
            ControlLayout::new(segment.layout().n_lcores).map_err(SegmentError::Parameters)?;
        match ControlSegment::open(&path) {
            Ok(_) => fs::remove_file(&path).map_err(io_err(&path))?,
            Err(SegmentError::NotFound(_)) => {}
            Err(SegmentError::NotASegment { why, .. }) => {
                return Err(SegmentError::Foreign { path, why })
            }
            Err(e) => return Err(e),
        }
        let file = access::create_file(&path)?;
        file.set_len(layout.size as u64).map_err(io_err(&path))?;
        let ctl = ControlSegment::map(file, &path, layout, true)?;
        let h = ctl.base as *mut ControlHeader;
        // SAFETY: a fresh mapping at least a header long; nobody trusts it before `magic`.
        unsafe {
            (*h).layout_version = LAYOUT_VERSION;
            (*h).header_size = size_of::<ControlHeader>() as u32;
            (*h).layout_size = layout.size as u64;
            (*h).n_lcores = layout.n_lcores;
            (*h).instance = segment.header().instance;
        }
        ctl.header().magic.store(CONTROL_MAGIC, Ordering::Release);
        Ok(ctl)
    }

    /// Attaches to the control file of `segment` (the control plane), checking ownership and
    /// mode like the segment's, the magic, version, size, and that it belongs to `segment`.
    pub fn attach(segment: &Segment) -> Result<ControlSegment, SegmentError> {
        let path = control_path(segment.path());
        let ctl = ControlSegment::open(&path)?;
        if ctl.header().instance != segment.header().instance
            || ctl.layout.n_lcores != segment.layout().n_lcores
        {
            return Err(SegmentError::NotASegment {
                path,
                why: "it belongs to another data plane's segment".into(),
            });
        }
        Ok(ctl)
    }

    /// Opens and checks an existing control file.
    fn open(path: &Path) -> Result<ControlSegment, SegmentError> {
        let file = access::open_existing(path)?;
        let not_ours = |why: &str| SegmentError::NotASegment {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let len = file.metadata().map_err(io_err(path))?.len() as usize;
        if len < size_of::<ControlHeader>() {
            return Err(not_ours("too small"));
        }
        // SAFETY: the mapping is at least a header long (checked above) and page aligned; the
        // header's shared fields are atomics and the rest are plain integers any bytes form.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(io_err(path))?;
        let guard = guard::register(map.as_ptr(), map.len());
        // SAFETY: as above.
        let h = unsafe { &*(map.as_ptr() as *const ControlHeader) };
        if h.magic.load(Ordering::Acquire) != CONTROL_MAGIC {
            return Err(not_ours("bad magic"));
        }
        if h.layout_version != LAYOUT_VERSION {
            return Err(SegmentError::Version {
                path: path.to_path_buf(),
                found: h.layout_version,
                expected: LAYOUT_VERSION,
            });
        }
        let layout = ControlLayout::new(h.n_lcores).map_err(|e| not_ours(&e))?;
        if h.header_size as usize != size_of::<ControlHeader>()
            || h.layout_size != layout.size as u64
            || len < layout.size
        {
            return Err(not_ours(
                "layout sizes differ from what this program computes",
            ));
        }
        let file_id = identity(&file).map_err(io_err(path))?;
        Ok(ControlSegment::from_map(
            map, guard, path, layout, false, file_id,
        ))
    }

    fn map(
        file: File,
        path: &Path,
        layout: ControlLayout,
        owner: bool,
    ) -> Result<ControlSegment, SegmentError> {
        // SAFETY: our own fresh file, mapped shared on purpose (see the module docs).
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(io_err(path))?;
        let guard = guard::register(map.as_ptr(), map.len());
        let file_id = identity(&file).map_err(io_err(path))?;
        Ok(ControlSegment::from_map(
            map, guard, path, layout, owner, file_id,
        ))
    }

    fn from_map(
        mut map: MmapMut,
        guard: guard::Registration,
        path: &Path,
        layout: ControlLayout,
        owner: bool,
        file_id: (u64, u64),
    ) -> ControlSegment {
        ControlSegment {
            base: map.as_mut_ptr(),
            guard,
            map,
            layout,
            path: path.to_path_buf(),
            owner,
            file_id,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout in use.
    pub fn layout(&self) -> &ControlLayout {
        &self.layout
    }

    /// The header.
    pub fn header(&self) -> &ControlHeader {
        // SAFETY: the mapping is at least a header long and page aligned (checked when mapped).
        unsafe { &*(self.base as *const ControlHeader) }
    }

    /// Whether another process truncated the file under this mapping (see [`crate::guard`]).
    pub fn is_damaged(&self) -> bool {
        self.guard.damaged()
    }

    /// Whether the path still names the file this value mapped.
    pub fn is_current(&self) -> bool {
        fs::metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.file_id)
            .unwrap_or(false)
    }

    /// The session table (see [`crate::sessions`]).
    pub fn session_table(&self) -> &SessionTable {
        // SAFETY: offset within the mapping per `ControlLayout`, page aligned (so aligned for
        // the table's 64-byte entries); every field is an atomic, so any value another process
        // wrote is a valid value, and `crate::sessions` decides what to believe.
        unsafe { &*(self.base.add(self.layout.sessions_offset) as *const SessionTable) }
    }

    /// Session table entry `i` (`i < MAX_SESSIONS`).
    pub fn session(&self, i: usize) -> &Session {
        assert!(i < MAX_SESSIONS);
        &self.session_table().entries[i]
    }

    /// Hand-off ring `i`'s control words (`i` = the TX lcore's stats block index).
    #[inline]
    pub(crate) fn handoff_control(&self, i: usize) -> &CompletionControl {
        assert!(i < self.layout.n_lcores as usize);
        // SAFETY: offset within the mapping per `ControlLayout`, page aligned, fields atomics.
        unsafe { &*(self.base.add(self.layout.handoff_ring(i)) as *const CompletionControl) }
    }

    /// Hand-off ring `i`'s first record.
    #[inline]
    pub(crate) fn handoff_records(&self, i: usize) -> *mut HandoffRecord {
        assert!(i < self.layout.n_lcores as usize);
        // SAFETY: offset within the mapping per `ControlLayout`.
        unsafe { self.base.add(self.layout.handoff_records(i)) as *mut HandoffRecord }
    }

    /// Makes this process the data plane's one control plane: takes the role when it is free
    /// or its holder is dead. `Err(pid)` names the live control plane that holds it.
    pub fn claim_control(&self) -> Result<(), u32> {
        self.header().control.claim()
    }

    /// Gives the control-plane role back (on a clean exit).
    pub fn release_control(&self) {
        self.header().control.release();
    }

    /// Refreshes the control plane's heartbeat.
    pub fn control_heartbeat(&self) {
        self.header().control.beat();
    }

    /// Whether a control plane holds the role and its heartbeat is younger than `max_age_ns`.
    pub fn control_alive(&self, max_age_ns: u64) -> bool {
        self.header().control.alive(max_age_ns)
    }
}

impl Drop for ControlSegment {
    fn drop(&mut self) {
        if self.owner {
            // Zero the keys a control plane may have left (it zeroes them itself on a clean
            // exit), then remove our own file (never one that replaced it).
            for i in 0..MAX_SESSIONS {
                self.session(i).close();
            }
            let _ = self.map.flush_async();
            if self.is_current() {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

fn identity(file: &File) -> std::io::Result<(u64, u64)> {
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    }
}
