//! Segments are trusted by owner and mode, not by path; a foreign file is never replaced; a
//! stale heartbeat does not block a new dataplane; a truncated segment does not kill its users.

use std::fs::{self, OpenOptions, Permissions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use swqos_shm::layout::{LaneInfo, LaneKind, Layout, State};
use swqos_shm::{Client, Segment, SegmentError};

/// A fresh scratch directory (mode 0700) for `name`, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("swqos-access-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();
        Dir(dir)
    }

    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn create(path: &Path) -> Result<Segment, SegmentError> {
    let lanes = [LaneInfo::new("a", LaneKind::Udp)];
    let seg = Segment::create(path, Layout::new(1, 16, 1, 1).unwrap(), &lanes, &["p0"], 1)?;
    seg.set_state(State::Running);
    Ok(seg)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root (chown) and CI is set"
        );
        eprintln!("SKIPPED: needs root to chown a segment to another uid");
    }
    root
}

fn refusal(path: &Path) -> String {
    let e = Segment::attach(path).err().expect("attach must be refused");
    assert!(matches!(e, SegmentError::Unsafe { .. }), "{e}");
    // The client library refuses the same way.
    let c = Client::attach(path)
        .err()
        .expect("client attach must be refused");
    assert_eq!(c.to_string(), e.to_string());
    e.to_string()
}

#[test]
fn the_dataplane_creates_a_private_directory_and_removes_it() {
    let d = Dir::new("mkdir");
    let path = d.join("swqos/segment");
    let seg = create(&path).unwrap();
    let dir = fs::metadata(d.join("swqos")).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o700);
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
    assert!(Segment::attach(&path).is_ok());
    drop(seg);
    assert!(!path.exists());
    assert!(
        !d.join("swqos").exists(),
        "the directory it created is removed"
    );
}

#[test]
fn attach_refuses_a_segment_open_to_group_or_others() {
    let d = Dir::new("mode");
    let path = d.join("segment");
    let _seg = create(&path).unwrap();
    fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
    let msg = refusal(&path);
    assert!(msg.contains("mode 0666"), "{msg}");
    assert!(msg.contains("0600"), "{msg}");
}

#[test]
fn attach_refuses_a_segment_owned_by_another_uid() {
    if !is_root() {
        return;
    }
    let d = Dir::new("owner");
    let path = d.join("segment");
    let _seg = create(&path).unwrap();
    let nobody = 65534;
    std::os::unix::fs::chown(&path, Some(nobody), Some(nobody)).unwrap();
    let msg = refusal(&path);
    assert!(msg.contains("owned by uid 65534, expected uid 0"), "{msg}");
    // The same for the directory.
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    assert!(Segment::attach(&path).is_ok());
    std::os::unix::fs::chown(&d.0, Some(nobody), Some(nobody)).unwrap();
    let msg = refusal(&path);
    assert!(msg.contains("directory is owned by uid 65534"), "{msg}");
}

#[test]
fn attach_refuses_a_symlinked_segment() {
    let d = Dir::new("symlink");
    let path = d.join("segment");
    let _seg = create(&path).unwrap();
    let link = d.join("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let msg = refusal(&link);
    assert!(msg.contains("symbolic link"), "{msg}");
}

#[test]
fn a_segment_planted_in_a_shared_directory_is_refused() {
    let d = Dir::new("planted");
    let real = d.join("segment");
    let seg = create(&real).unwrap();
    // A world-writable, sticky directory like /tmp or /dev/shm, holding a copy of a live segment.
    let shared = d.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
    let planted = shared.join("segment");
    fs::copy(&real, &planted).unwrap();
    fs::set_permissions(&planted, Permissions::from_mode(0o600)).unwrap();
    let msg = refusal(&planted);
    assert!(msg.contains("directory has mode 1777"), "{msg}");
    assert!(msg.contains("private"), "{msg}");
    drop(seg);

    // The dataplane refuses to create one there too, and leaves the directory as it was.
    fs::remove_file(&planted).unwrap();
    let e = create(&planted)
        .err()
        .expect("create in a shared directory");
    assert!(e.to_string().contains("mode 1777"), "{e}");
    assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o7777, 0o1777);
    assert!(!planted.exists());
}

#[test]
fn a_file_that_is_not_a_segment_is_never_replaced() {
    let d = Dir::new("foreign");
    let path = d.join("passwd");
    let content = b"root:x:0:0:root:/root:/bin/bash\n".repeat(100);
    fs::write(&path, &content).unwrap();
    fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
    let e = Segment::check_path(&path).expect_err("check_path refuses");
    assert!(matches!(e, SegmentError::Foreign { .. }), "{e}");
    let e = create(&path).err().expect("create refuses");
    assert!(e.to_string().contains("is not a swqos segment"), "{e}");
    assert_eq!(fs::read(&path).unwrap(), content, "file left untouched");
}

#[test]
fn a_copied_segment_with_a_live_pid_and_a_stale_heartbeat_is_replaced() {
    let d = Dir::new("stale");
    let path = d.join("segment");
    let old = create(&path).unwrap();
    let h = old.header();
    h.dataplane_pid.store(1, Ordering::Relaxed); // pid 1 is always alive
                                                 // Two cases: an old heartbeat, and one from the future (copied from a longer-running host).
    for beat in [1, u64::MAX / 2] {
        h.heartbeat_ns.store(beat, Ordering::Relaxed);
        // Clients do not take it for a running dataplane either.
        let e = Segment::attach(&path).err().expect("stale segment");
        assert!(e.to_string().contains("heartbeat"), "{e}");
        Segment::check_path(&path).unwrap();
        let new = create(&path).expect("a stale heartbeat must not block start");
        assert_eq!(
            new.header().dataplane_pid.load(Ordering::Relaxed),
            std::process::id()
        );
        std::mem::forget(new); // keep the file for the next case
        let again = Segment::attach_any_state(&path).unwrap();
        again.header().dataplane_pid.store(1, Ordering::Relaxed);
        again.header().heartbeat_ns.store(beat, Ordering::Relaxed);
    }
    drop(old);
}

#[test]
fn a_truncated_segment_reads_as_zeros_and_is_reported_damaged() {
    swqos_shm::guard::install().unwrap();
    let d = Dir::new("truncate");
    let path = d.join("segment");
    let seg = create(&path).unwrap();
    let reader = Segment::attach(&path).unwrap();
    assert!(!seg.is_damaged() && !reader.is_damaged());
    // Any process of the segment's user can do this.
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    // Without the guard this read is a SIGBUS that kills the test binary.
    assert_eq!(reader.header().magic.load(Ordering::Acquire), 0);
    assert!(reader.is_damaged());
    assert!(
        !seg.is_damaged(),
        "only the mapping that faulted is replaced"
    );
    assert_eq!(seg.header().magic.load(Ordering::Acquire), 0);
    assert!(seg.is_damaged());
    assert!(swqos_shm::guard::any_damaged());
    // Both keep working on their zero pages until they let go.
    seg.heartbeat();
    drop(reader);
    drop(seg);
    assert!(!path.exists());
}
