//! The control plane's logs: `tracing` events on stderr, one line each.
//!
//! - `plain` (the default): `swqos control: MESSAGE` (`swqos control: error: MESSAGE` for
//!   errors), then any other fields as `key=value`; what scripts grep for.
//! - `json`: one JSON object per event (timestamp, level, target, fields), for log pipelines.
//!
//! `--log-format` or `SWQOS_LOG_FORMAT` chooses; `RUST_LOG` filters (default `info`).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log events are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Installs the subscriber for this process (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = match format {
        LogFormat::Plain => builder.event_format(Plain).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// `swqos control: [error: ]MESSAGE key=value ...`.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str("swqos control: ")?;
        if *event.metadata().level() == Level::ERROR {
            writer.write_str("error: ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
