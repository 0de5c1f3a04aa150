//! The swqos control plane: the process `swqos control` runs beside the data plane. It links
//! neither DPDK nor an HTTP client stack.
//!
//! - [`relay`](crate::relay) and [`relay_lanes`](crate::relay_lanes): the relay lanes' kernel
//!   TCP connections (and TLS, [`tls`](crate::tls)), armed in the data plane's session table
//!   ([`sessions`](crate::sessions)) so the data plane can send on them itself; the completions
//!   of those delegated sends and of the hand-offs it sends here.
//! - [`rpc`](crate::rpc): the Solana-compatible JSON-RPC endpoint (`[control] rpc_listen`).
//! - [`metrics`](crate::metrics): the Prometheus exposition on `[control] metrics_listen`.
//! - [`daemon`](crate::daemon): the process itself, [`run`] ([`ControlArgs`]); its logs
//!   ([`logging`]).

mod daemon;
mod landing;
pub mod logging;
mod metrics;
mod relay;
mod relay_lanes;
mod rpc;
mod sessions;
mod tls;

pub use daemon::{run, ControlArgs};
