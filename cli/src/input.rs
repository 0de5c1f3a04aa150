//! Reading transactions: JSONL objects with a `base64` or `base58` field, or plain lines of
//! base64 or base58.

use base64::Engine;
use swqos_wire::solana::Transaction;

/// One input line's transaction bytes, or why the line is unusable.
pub(crate) type Decoded = Result<Vec<u8>, String>;

/// Decodes one non-empty line.
pub(crate) fn decode_line(line: &str) -> Decoded {
    let line = line.trim();
    if line.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
        if let Some(s) = v.get("base64").and_then(|s| s.as_str()) {
            return base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("invalid base64: {e}"));
        }
        if let Some(s) = v.get("base58").and_then(|s| s.as_str()) {
            return bs58::decode(s)
                .into_vec()
                .map_err(|e| format!("invalid base58: {e}"));
        }
        return Err("JSON object has no \"base64\" or \"base58\" string field".into());
    }
    // A plain line may be valid in both alphabets; prefer the reading that is a transaction.
    let b64 = base64::engine::general_purpose::STANDARD.decode(line).ok();
    let b58 = bs58::decode(line).into_vec().ok();
    let parses = |b: &Option<Vec<u8>>| b.as_deref().is_some_and(|b| Transaction::parse(b).is_ok());
    match (parses(&b64), parses(&b58)) {
        (true, _) => Ok(b64.unwrap_or_default()),
        (false, true) => Ok(b58.unwrap_or_default()),
        _ => b64
            .or(b58)
            .ok_or_else(|| "neither base64 nor base58".to_string()),
    }
}

/// Whether a line carries nothing to submit (blank or a `#` comment).
pub(crate) fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx() -> Vec<u8> {
        let mut tx = vec![1u8];
        tx.extend([7u8; 64]);
        tx.extend([1, 0, 1, 2]);
        tx.extend([1u8; 64]);
        tx.extend([3u8; 32]);
        tx.extend([1, 1, 1, 0, 2, 0xAA, 0xBB]);
        tx
    }

    #[test]
    fn decodes_every_input_form() {
        let t = tx();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&t);
        let b58 = bs58::encode(&t).into_string();
        assert_eq!(decode_line(&b64).unwrap(), t);
        assert_eq!(decode_line(&b58).unwrap(), t);
        assert_eq!(
            decode_line(&format!("{{\"base64\":\"{b64}\"}}")).unwrap(),
            t
        );
        assert_eq!(
            decode_line(&format!("{{\"base58\":\"{b58}\"}}")).unwrap(),
            t
        );
        assert_eq!(decode_line(r#"{"base64":""}"#).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(decode_line("{nope").unwrap_err().contains("invalid JSON"));
        assert!(decode_line(r#"{"x":1}"#)
            .unwrap_err()
            .contains("no \"base64\""));
        assert!(decode_line("!!!").unwrap_err().contains("neither"));
        assert!(is_blank("  # comment"));
        assert!(is_blank(""));
    }
}
