//! The shared-memory channel between trading apps, the dataplane and the control plane.
//!
//! One segment per dataplane instance, created by the dataplane with mode 0600 in a private
//! directory (see [`segment`] and [`access`]; a truncated file is survived through [`guard`]). Each client process leases one submit ring (single producer, single consumer)
//! and its paired completion ring, so a client killed mid-write cannot stall anyone else
//! ([`ring`]). [`client::Client`] is the library a trading app links: it validates a signed
//! transaction and writes it straight into a ring slot. Per-lcore statistics are read without
//! locks through an epoch ([`stats`]). This crate does not link DPDK.

pub mod access;
pub mod client;
pub mod control_segment;
pub mod guard;
pub mod layout;
pub mod ring;
pub mod segment;
pub mod sessions;
pub mod stats;
pub mod time;

pub use client::{Client, ClientError, Event, GiveUp, Owed, SubmitError};
pub use control_segment::ControlSegment;
pub use layout::{Completion, DropReason, LaneInfo, LaneKind, Layout, State, Status};
pub use segment::{Segment, SegmentError};
