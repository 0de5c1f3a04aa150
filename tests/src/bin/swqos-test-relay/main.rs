//! `swqos-test-relay`: the compiled twin of `tests/relay/mock_relay.py`, for timing.
//!
//! One process impersonates all fourteen SWQOS providers of `wire/src/relay.rs` (and Jito's
//! bundle endpoint) over plain HTTP/1.1 with keep-alive, exactly as the Python mock does: the
//! same recognition rules, checks, status codes, bodies, Content-Types and `--log` JSON lines
//! (see `tests/relay/README.md`). Unlike the Python mock, connections are served by one OS
//! thread each with no interpreter lock between them, so a request is never queued behind
//! another connection's.
//!
//! The Python mock stays the oracle for request shapes: `tests/tests/relay_parity.rs` sends the
//! same requests to both and requires the same answers and log lines.

mod check;
mod py;
mod server;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use check::{Rules, Spec};

/// Compiled mock SWQOS relay: the request shapes, answers and log of tests/relay/mock_relay.py,
/// one thread per connection.
#[derive(Parser, Debug)]
#[command(name = "swqos-test-relay")]
struct Args {
    /// Address to serve (repeatable; port 0 picks a free one; =PROVIDER serves only that
    /// provider there). Default 127.0.0.1:0
    #[arg(long, value_name = "ADDR:PORT[=PROVIDER]")]
    listen: Vec<String>,
    /// Token a provider expects (repeatable).
    #[arg(long, value_name = "PROVIDER=TOKEN")]
    token: Vec<String>,
    /// The token every provider but lightspeed expects.
    #[arg(long, value_name = "TOKEN")]
    token_all: Option<String>,
    /// A provider's path override (Endpoint.path).
    #[arg(long, value_name = "PROVIDER=/PATH")]
    path: Vec<String>,
    /// Append one JSON line per request.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Reset (RST) a connection when request N+1 arrives on it.
    #[arg(long, value_name = "N")]
    reset_after: Option<i64>,
    /// Delay before every answer (milliseconds).
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// How long to wait for a body shorter than Content-Length (milliseconds, per read).
    #[arg(long, default_value_t = 2000.0)]
    body_timeout_ms: f64,
    /// Also require the exact bytes relay.rs writes: no other headers or query parameters, id
    /// 1, body byte-identical to the template.
    #[arg(long)]
    strict: bool,
    /// One line per answered request on stderr.
    #[arg(long)]
    verbose: bool,
}

/// Everything the connection threads share.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) rules: Rules,
    pub(crate) reset_after: Option<u64>,
    pub(crate) delay: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) verbose: bool,
    pub(crate) log: Option<Mutex<File>>,
    pub(crate) conn_ids: AtomicU64,
}

impl Config {
    /// Appends one line to the log (one write, under the lock: lines never interleave).
    pub(crate) fn write_log(&self, line: &str) {
        if let Some(log) = &self.log {
            let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// `SystemExit(msg)`: the message on stderr, exit status 1.
fn exit_with(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1);
}

fn provider_names() -> String {
    check::providers()
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn config(args: &Args) -> Config {
    let mut rules = Rules {
        strict: args.strict,
        ..Rules::default()
    };
    let set = |list: &mut Vec<(&'static str, String)>, p: &'static str, v: String| match list
        .iter_mut()
        .find(|(n, _)| *n == p)
    {
        Some(slot) => slot.1 = v,
        None => list.push((p, v)),
    };
    if let Some(all) = &args.token_all {
        for p in check::providers() {
            if p.name != "lightspeed" {
                set(&mut rules.tokens, p.name, all.clone());
            }
        }
    }
    let provider = |name: &str| check::providers().iter().find(|s| s.name == name);
    for spec in &args.token {
        match spec.split_once('=') {
            Some((p, tok)) if provider(p).is_some() && !tok.is_empty() => set(
                &mut rules.tokens,
                provider(p).unwrap().name,
                tok.to_string(),
            ),
            _ => exit_with(&format!(
                "--token {}: expected PROVIDER=TOKEN, PROVIDER one of {}",
                py::repr_str(spec),
                provider_names()
            )),
        }
    }
    for spec in &args.path {
        match spec.split_once('=') {
            Some((p, path)) if provider(p).is_some() && path.starts_with('/') => set(
                &mut rules.paths,
                provider(p).unwrap().name,
                path.to_string(),
            ),
            _ => exit_with(&format!(
                "--path {}: expected PROVIDER=/PATH",
                py::repr_str(spec)
            )),
        }
    }
    let log = args.log.as_ref().map(|path| {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| exit_with(&format!("mock-relay: {}: {e}", path.display())));
        Mutex::new(f)
    });
    let ms = |v: f64| Duration::from_secs_f64((v / 1000.0).max(0.0));
    Config {
        rules,
        reset_after: args.reset_after.map(|n| n as u64),
        delay: ms(args.delay_ms),
        // A zero timeout would mean "block forever" to std: one millisecond is the floor.
        body_timeout: ms(args.body_timeout_ms).max(Duration::from_millis(1)),
        verbose: args.verbose,
        log,
        conn_ids: AtomicU64::new(1),
    }
}

/// `parse_listen`: the address and the pinned provider of one `--listen`.
fn parse_listen(spec: &str) -> (SocketAddr, Option<&'static Spec>) {
    let (addr, pinned) = spec.split_once('=').unwrap_or((spec, ""));
    let pinned = if pinned.is_empty() {
        None
    } else {
        match check::providers().iter().find(|s| s.name == pinned) {
            Some(s) => Some(s),
            None => exit_with(&format!(
                "--listen {}: unknown provider {}",
                py::repr_str(spec),
                py::repr_str(pinned)
            )),
        }
    };
    let bad = || -> ! {
        exit_with(&format!(
            "--listen {}: expected ADDR:PORT[=PROVIDER]",
            py::repr_str(spec)
        ))
    };
    let Some((host, port)) = addr.rsplit_once(':') else {
        bad()
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        bad();
    }
    let Ok(port) = port.parse::<u16>() else {
        exit_with(&format!(
            "mock-relay: cannot listen on {spec}: port must be 0-65535."
        ))
    };
    let (host, v6) = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(h) => (h, true),
        None => (host, host.contains(':')),
    };
    let found = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv6() == v6));
    match found {
        Some(a) => (a, pinned),
        None => exit_with(&format!(
            "mock-relay: cannot listen on {spec}: cannot resolve {host}"
        )),
    }
}

fn main() {
    let args = Args::parse();
    if args.reset_after.is_some_and(|n| n < 0) {
        eprintln!("swqos-test-relay: error: --reset-after must be >= 0");
        std::process::exit(2);
    }
    let cfg = Arc::new(config(&args));
    let specs = if args.listen.is_empty() {
        vec!["127.0.0.1:0".to_string()]
    } else {
        args.listen.clone()
    };
    let mut listeners = Vec::new();
    for spec in &specs {
        let (addr, pinned) = parse_listen(spec);
        match TcpListener::bind(addr) {
            Ok(l) => listeners.push((l, pinned)),
            Err(e) => {
                eprintln!("mock-relay: cannot listen on {spec}: {e}");
                std::process::exit(1);
            }
        }
    }
    // Before the ready line: a signal from here on stops us cleanly.
    let mut signals = Signals::new([SIGTERM, SIGINT]).expect("signal handlers");
    let mut labels = Vec::new();
    for (listener, pinned) in listeners {
        let label = listener.local_addr().expect("bound address").to_string();
        labels.push(match pinned {
            Some(p) => format!("{label}={}", p.name),
            None => label.clone(),
        });
        let cfg = Arc::clone(&cfg);
        std::thread::Builder::new()
            .name(format!("accept {label}"))
            .spawn(move || server::accept_loop(listener, label, pinned, cfg))
            .expect("spawn the accept thread");
    }
    println!("listening on {}", labels.join(" "));
    let _ = std::io::stdout().flush();
    let _ = signals.forever().next();
    if let Some(log) = &cfg.log {
        let _ = log.lock().unwrap_or_else(|e| e.into_inner()).flush();
    }
    println!("stopped");
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}
