//! What `sendTransaction` answers: each lane's completion record sorted into "sent", "failed"
//! (it certainly did not leave on that lane) and "unknown" (it may have: a relay that took the
//! request and did not answer, or no report before the deadline), and from that either the
//! signature (it left on at least one lane) or an error code a caller can act on
//! ([`code::NOT_SENT`]: safe to send again; [`code::MAYBE_SENT`]: check the signature first).

use serde_json::{json, Value};
use swqos_shm::layout::{quic_outcome, relay_failure, Status, RELAY_FAST};
use swqos_shm::Completion;

/// JSON-RPC 2.0 error codes: the standard ones, Solana's where one fits, and the project's own
/// (-32090..) where none does (documented in docs/operations.md).
pub(crate) mod code {
    pub(crate) const PARSE_ERROR: i64 = -32700;
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    pub(crate) const INVALID_PARAMS: i64 = -32602;
    pub(crate) const INTERNAL: i64 = -32603;
    /// Solana's "transaction signature verification failure": a relay refused a bundle.
    pub(crate) const REJECTED: i64 = -32003;
    /// Solana's "node is unhealthy": no data plane to send with; nothing was submitted.
    pub(crate) const UNHEALTHY: i64 = -32005;
    /// The transaction left on no lane: every lane failed before sending (reasons in the
    /// message and `data`). Sending it again cannot make a duplicate.
    pub(crate) const NOT_SENT: i64 = -32090;
    /// No lane confirmed sending it, but some may have (a relay took the request and did not
    /// answer, or no report came before the deadline). Check the signature before sending again.
    pub(crate) const MAYBE_SENT: i64 = -32091;
    /// The caller closed its connection: the work was dropped (never seen by the caller).
    pub(crate) const CANCELLED: i64 = -32092;
    /// A method the endpoint forwards to `[control] rpc_upstream` got no answer from it: none is
    /// configured, it is unreachable, too slow, busy, or answered with something that is not
    /// JSON-RPC (`data.reason` says which). Nothing was sent by swqos.
    pub(crate) const UPSTREAM: i64 = -32093;
}

/// A JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub(crate) fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// What one lane did with the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lane {
    /// It left (`fast`: the data plane sent it; `fallback`: the control plane's socket did).
    Sent(&'static str),
    /// It did not leave on this lane.
    Failed(String),
    /// It may have left.
    Unknown(String),
}

impl Lane {
    /// Sorts a completion record.
    pub(crate) fn from_completion(c: &Completion) -> Lane {
        if let Err(why) = c.outcome() {
            let status = Status::from_u8(c.status);
            let code = c.reason & !RELAY_FAST;
            // A relay lane's failure without an answer says whether the request was written
            // (the relay may have it) or refused before anything was sent.
            let maybe = if quic_outcome::is_quic(c.reason) {
                quic_outcome::maybe_delivered(c.reason)
            } else {
                code < 100 && relay_failure::maybe_delivered(code)
            };
            if status == Some(Status::RelayError) && maybe {
                return Lane::Unknown(format!("{why}; the relay may have received it"));
            }
            return Lane::Failed(why);
        }
        Lane::Sent(c.path().unwrap_or("fast"))
    }
}

/// Every lane's report for one transaction.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The transaction's first signature, base58.
    pub(crate) signature: String,
    /// (lane name, what it did), in lane id order.
    pub(crate) lanes: Vec<(String, Lane)>,
}

impl Report {
    /// `sendTransaction`'s answer: the signature when it left on at least one lane.
    pub(crate) fn result(&self) -> Result<Value, RpcError> {
        let has = |f: fn(&Lane) -> bool| self.lanes.iter().any(|(_, l)| f(l));
        if has(|l| matches!(l, Lane::Sent(_))) {
            return Ok(json!(self.signature));
        }
        let reasons: Vec<String> = self
            .lanes
            .iter()
            .map(|(name, l)| match l {
                Lane::Sent(_) => format!("{name}: sent"),
                Lane::Failed(why) | Lane::Unknown(why) => format!("{name}: {why}"),
            })
            .collect();
        let (code, what) = if has(|l| matches!(l, Lane::Unknown(_))) {
            (
                code::MAYBE_SENT,
                "not confirmed sent on any lane, but it may have been (check the signature \
                 before sending again)",
            )
        } else {
            (code::NOT_SENT, "not sent on any lane")
        };
        Err(RpcError {
            code,
            message: format!("{what}: {}", reasons.join("; ")),
            data: Some(self.details()),
        })
    }

    /// Every lane's outcome as JSON: `swqos_sendTransaction`'s result and the `data` of an error.
    pub(crate) fn details(&self) -> Value {
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        let mut unknown = Vec::new();
        for (name, l) in &self.lanes {
            match l {
                Lane::Sent(path) => sent.push(json!({"lane": name, "path": path})),
                Lane::Failed(why) => failed.push(json!({"lane": name, "reason": why})),
                Lane::Unknown(why) => unknown.push(json!({"lane": name, "reason": why})),
            }
        }
        json!({"signature": self.signature, "sent": sent, "failed": failed, "unknown": unknown})
    }

    /// The `X-Swqos-Lanes` header value: `lane=sent; lane=failed: reason; ...` (printable
    /// ASCII, no `;` inside a reason).
    pub(crate) fn header(&self) -> String {
        let parts: Vec<String> = self
            .lanes
            .iter()
            .map(|(name, l)| match l {
                Lane::Sent(path) => format!("{name}=sent ({path})"),
                Lane::Failed(why) => format!("{name}=failed: {why}"),
                Lane::Unknown(why) => format!("{name}=unknown: {why}"),
            })
            .collect();
        parts
            .join("; ")
            .chars()
            .map(|c| match c {
                ' '..='~' => c,
                _ => '?',
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swqos_shm::layout::DropReason;

    fn completion(lane: u8, status: Status, reason: u16) -> Completion {
        Completion {
            tag: 1,
            lease_gen: 0,
            lane,
            status: status as u8,
            reason,
            submit_tsc: 0,
            done_tsc: 0,
        }
    }

    fn report(lanes: &[Lane]) -> Report {
        Report {
            signature: "SIG".into(),
            lanes: lanes
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("lane{i}"), l.clone()))
                .collect(),
        }
    }

    #[test]
    fn records_sort_into_sent_failed_and_maybe_sent() {
        let lane = |s, r| Lane::from_completion(&completion(0, s, r));
        assert_eq!(lane(Status::Sent, 0), Lane::Sent("fast"));
        assert_eq!(lane(Status::Relayed, 200), Lane::Sent("fallback"));
        assert_eq!(lane(Status::Relayed, 200 | RELAY_FAST), Lane::Sent("fast"));
        assert!(matches!(lane(Status::RelayError, 500), Lane::Failed(w) if w.contains("HTTP 500")));
        assert!(matches!(
            lane(Status::RelayError, relay_failure::CONNECT),
            Lane::Failed(_)
        ));
        assert!(matches!(
            lane(Status::RelayError, relay_failure::NOT_SENT),
            Lane::Failed(_)
        ));
        assert!(matches!(
            lane(Status::RelayError, relay_failure::TIMEOUT),
            Lane::Unknown(_)
        ));
        assert!(matches!(
            lane(Status::RelayError, relay_failure::NO_RESPONSE | RELAY_FAST),
            Lane::Unknown(w) if w.contains("may have received it")
        ));
        assert!(matches!(
            lane(Status::Dropped, DropReason::NoMbuf as u16),
            Lane::Failed(_)
        ));
    }

    #[test]
    fn one_sent_lane_answers_the_signature_with_every_lane_in_the_details() {
        let r = report(&[
            Lane::Sent("fast"),
            Lane::Failed("relay error: HTTP 500".into()),
            Lane::Unknown("no report within 8 s; it may have been sent".into()),
        ]);
        assert_eq!(r.result(), Ok(json!("SIG")));
        let d = r.details();
        assert_eq!(d["sent"][0]["lane"], "lane0");
        assert_eq!(d["failed"][0]["reason"], "relay error: HTTP 500");
        assert_eq!(d["unknown"][0]["lane"], "lane2");
        assert_eq!(
            r.header(),
            "lane0=sent (fast); lane1=failed: relay error: HTTP 500; \
             lane2=unknown: no report within 8 s; it may have been sent"
        );
    }

    #[test]
    fn nothing_sent_is_not_sent_and_a_silent_lane_is_maybe_sent() {
        let e = report(&[Lane::Failed("a".into()), Lane::Failed("b".into())])
            .result()
            .unwrap_err();
        assert_eq!(e.code, code::NOT_SENT);
        assert_eq!(e.message, "not sent on any lane: lane0: a; lane1: b");
        assert_eq!(e.data.unwrap()["failed"].as_array().unwrap().len(), 2);
        let e = report(&[Lane::Failed("a".into()), Lane::Unknown("timeout".into())])
            .result()
            .unwrap_err();
        assert_eq!(e.code, code::MAYBE_SENT);
        assert!(e.message.contains("may have been"), "{}", e.message);
        assert_ne!(e.code, code::UNHEALTHY);
    }
}
