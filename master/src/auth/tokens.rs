//! Making a token for `CreateToken`: checks the request, draws the token
//! and keeps its hash.

use taskmaster_proto::v1::{CreateTokenRequest, Role};
use tonic::Status;

use super::credentials;
use crate::core::tokens::{Token, check_name};

/// Longest a token may be made to last (0 is "never").
pub const TOKEN_EXPIRY_MS_MAX: u64 = 10 * 365 * 24 * 3_600_000;

/// The new token (to show once) and what the master keeps of it.
pub fn make(req: &CreateTokenRequest, now_unix_ms: u64) -> Result<(String, Token), Status> {
    check_name(&req.name).map_err(Status::invalid_argument)?;
    let role = Role::try_from(req.role)
        .ok()
        .filter(|r| *r != Role::Unspecified)
        .ok_or_else(|| {
            Status::invalid_argument("a token needs a role: worker, viewer, operator or admin")
        })?;
    if req.expires_in_ms > TOKEN_EXPIRY_MS_MAX {
        return Err(Status::invalid_argument(format!(
            "expires_in_ms is at most {TOKEN_EXPIRY_MS_MAX} (ten years)"
        )));
    }
    let token = credentials::new_token();
    let made = Token {
        name: req.name.clone(),
        role,
        sha256: credentials::sha256(&token),
        created_unix_ms: now_unix_ms,
        expires_unix_ms: match req.expires_in_ms {
            0 => 0,
            ms => now_unix_ms.saturating_add(ms),
        },
    };
    Ok((token, made))
}
