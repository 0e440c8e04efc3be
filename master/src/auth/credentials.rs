//! A call's credentials as sent: the bearer token in `authorization`
//! metadata and the optional reason in `x-taskmaster-reason`. This reads
//! bytes any client controls, so it is fuzzed (`fuzz/`): it must refuse
//! with a clear error and never panic.

use http::HeaderMap;

/// The metadata a reason is sent in, percent-encoded UTF-8 (metadata
/// values are visible ASCII).
pub const REASON_HEADER: &str = "x-taskmaster-reason";
/// Longest token accepted (ours are 67 bytes).
pub const TOKEN_BYTES_MAX: usize = 256;
/// Longest reason, decoded.
pub const REASON_BYTES_MAX: usize = 1024;
/// What every token starts with, so one found in a file or a log is
/// recognisable (and secret scanners can look for it).
pub const TOKEN_PREFIX: &str = "tm_";

/// What a call presented.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presented {
    pub bearer: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the authorization metadata is not \"Bearer <token>\"")]
    NotBearer,
    #[error("the bearer token is empty, longer than {TOKEN_BYTES_MAX} bytes, or not printable")]
    BadToken,
    #[error("more than one authorization value")]
    Repeated,
    #[error("{REASON_HEADER}: {0}")]
    BadReason(String),
}

/// Reads the credentials and reason of a call.
pub fn presented(headers: &HeaderMap) -> Result<Presented, CredentialError> {
    let mut auth = headers.get_all(http::header::AUTHORIZATION).iter();
    let bearer = match (auth.next(), auth.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => return Err(CredentialError::Repeated),
        (Some(value), None) => Some(bearer(value.as_bytes())?.to_string()),
    };
    let mut reasons = headers.get_all(REASON_HEADER).iter();
    let reason = match (reasons.next(), reasons.next()) {
        (None, _) => String::new(),
        (Some(_), Some(_)) => {
            return Err(CredentialError::BadReason("given more than once".into()));
        }
        (Some(value), None) => reason(value.as_bytes())?,
    };
    Ok(Presented { bearer, reason })
}

/// The token of an `authorization` value `Bearer <token>` (the scheme in
/// any case, as HTTP has it).
pub fn bearer(value: &[u8]) -> Result<&str, CredentialError> {
    let text = std::str::from_utf8(value).map_err(|_| CredentialError::NotBearer)?;
    let (scheme, token) = text.split_once(' ').ok_or(CredentialError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(CredentialError::NotBearer);
    }
    let token = token.trim_matches(' ');
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    if token.is_empty() || token.len() > TOKEN_BYTES_MAX || !printable {
        return Err(CredentialError::BadToken);
    }
    Ok(token)
}

/// A reason as sent (percent-encoded UTF-8), decoded and checked.
pub fn reason(value: &[u8]) -> Result<String, CredentialError> {
    let bad = |why: &str| CredentialError::BadReason(why.to_string());
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'%' {
            bytes.push(b);
            continue;
        }
        let [hi, lo, ..] = rest else {
            return Err(bad("a '%' not followed by two hex digits"));
        };
        let digit = |d: u8| (d as char).to_digit(16);
        let (Some(hi), Some(lo)) = (digit(*hi), digit(*lo)) else {
            return Err(bad("a '%' not followed by two hex digits"));
        };
        bytes.push((hi * 16 + lo) as u8);
        rest = &rest[2..];
    }
    if bytes.len() > REASON_BYTES_MAX {
        return Err(bad(&format!("longer than {REASON_BYTES_MAX} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err(bad("holds control characters"));
    }
    Ok(text.trim().to_string())
}

/// A new bearer token: [`TOKEN_PREFIX`] and 256 random bits in hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut token = String::from(TOKEN_PREFIX);
    for b in bytes {
        token += &format!("{b:02x}");
    }
    token
}

/// What the master keeps of a token: its SHA-256.
pub fn sha256(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_read_in_any_case_and_refused_when_malformed() {
        assert_eq!(bearer(b"Bearer tm_abc"), Ok("tm_abc"));
        assert_eq!(bearer(b"bearer  tm_abc "), Ok("tm_abc"));
        assert_eq!(bearer(b"Basic dXNlcg=="), Err(CredentialError::NotBearer));
        assert_eq!(bearer(b"Bearer"), Err(CredentialError::NotBearer));
        assert_eq!(bearer(b"Bearer "), Err(CredentialError::BadToken));
        assert_eq!(bearer(b"Bearer a b"), Err(CredentialError::BadToken));
        let long = format!("Bearer {}", "x".repeat(TOKEN_BYTES_MAX + 1));
        assert_eq!(bearer(long.as_bytes()), Err(CredentialError::BadToken));
        assert_eq!(bearer(b"\xff\xfe"), Err(CredentialError::NotBearer));
    }

    #[test]
    fn a_reason_round_trips_through_its_encoding() {
        for text in ["plain", "rerun after the fix: ticket #42 (ünïcode) 100%"] {
            let encoded = taskmaster_proto::credentials::encode_reason(text);
            assert_eq!(reason(encoded.as_bytes()).unwrap(), text);
        }
        assert!(reason(b"%4").is_err());
        assert!(reason(b"%zz").is_err());
        assert!(
            reason(b"a%0Ab")
                .unwrap_err()
                .to_string()
                .contains("control")
        );
        assert!(reason(b"%ff").unwrap_err().to_string().contains("UTF-8"));
        let long = "x".repeat(REASON_BYTES_MAX + 1);
        assert!(reason(long.as_bytes()).is_err());
    }

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(sha256(&a), sha256(&a));
        assert_ne!(sha256(&a), sha256(&b));
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(sha256("abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn repeated_metadata_is_refused() {
        let mut headers = HeaderMap::new();
        headers.append("authorization", "Bearer a".parse().unwrap());
        headers.append("authorization", "Bearer b".parse().unwrap());
        assert_eq!(presented(&headers), Err(CredentialError::Repeated));
        let mut headers = HeaderMap::new();
        headers.append("authorization", "Bearer a".parse().unwrap());
        headers.append(REASON_HEADER, "why%20not".parse().unwrap());
        let got = presented(&headers).unwrap();
        assert_eq!(got.bearer.as_deref(), Some("a"));
        assert_eq!(got.reason, "why not");
    }
}
