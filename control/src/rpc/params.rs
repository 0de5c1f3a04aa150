//! `sendTransaction`'s and `sendBundle`'s transaction parameters: the encoding named in
//! `params[1]`, and the decoding, with the text's length capped before decoding (base58 takes
//! time quadratic in the length). Free of the endpoint's threads, so `fuzz/` can drive it.

use base64::Engine;
use serde_json::Value;
use swqos_shm::layout::MAX_TX_SIZE;

use super::answer::{code, RpcError};

/// Longest base58 text of a [`MAX_TX_SIZE`]-byte transaction: 8/log2(58) characters a byte,
/// rounded up (leading zero bytes take one character each, fewer than that).
pub(crate) const MAX_BASE58: usize = (MAX_TX_SIZE * 1_366).div_ceil(1_000);
/// Longest base64 text of a [`MAX_TX_SIZE`]-byte transaction (padded).
pub(crate) const MAX_BASE64: usize = MAX_TX_SIZE.div_ceil(3) * 4;

/// The transaction encodings `sendTransaction` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Base58,
    Base64,
}

/// `params[1].encoding`: base58 when absent or null (Solana's default; `"binary"` is its old
/// name), an error for anything but a known encoding's name.
pub(crate) fn encoding(params: &Value) -> Result<Encoding, RpcError> {
    let invalid = |m: String| RpcError::new(code::INVALID_PARAMS, m);
    let config = match params.get(1) {
        None | Some(Value::Null) => return Ok(Encoding::Base58),
        Some(Value::Object(c)) => c,
        Some(other) => return Err(invalid(format!("params[1] must be an object, not {other}"))),
    };
    match config.get("encoding") {
        None | Some(Value::Null) => Ok(Encoding::Base58),
        Some(Value::String(s)) if s == "base58" || s == "binary" => Ok(Encoding::Base58),
        Some(Value::String(s)) if s == "base64" => Ok(Encoding::Base64),
        Some(other) => Err(invalid(format!(
            "unsupported encoding: {other} (base58 or base64)"
        ))),
    }
}

/// Decodes one transaction, refusing text longer than a [`MAX_TX_SIZE`]-byte transaction's
/// before decoding (base58 decoding takes time quadratic in the length).
pub(crate) fn decode_tx(s: &str, encoding: Encoding) -> Result<Vec<u8>, String> {
    let (name, max) = match encoding {
        Encoding::Base58 => ("base58", MAX_BASE58),
        Encoding::Base64 => ("base64", MAX_BASE64),
    };
    if s.len() > max {
        return Err(format!(
            "transaction too large: {} characters of {name}, at most {max} (a {MAX_TX_SIZE}-byte \
             transaction)",
            s.len()
        ));
    }
    match encoding {
        Encoding::Base58 => bs58::decode(s)
            .into_vec()
            .map_err(|e| format!("invalid base58: {e}")),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("invalid base64: {e}")),
    }
}
