//! What a client presents to a master started with `--auth`: a bearer
//! token in the `authorization` metadata of every call, and optionally the
//! reason for an operator's change (`x-taskmaster-reason`, which the
//! master journals with the change). Every client (`tmctl`, the SDK, the
//! worker) sends them through [`Credentials`], a tonic interceptor on its
//! channel ([`MasterChannel`]).

use std::fmt;
use std::path::Path;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The metadata a reason travels in (percent-encoded UTF-8).
pub const REASON_METADATA: &str = "x-taskmaster-reason";

/// A channel to a master that sends the client's credentials on every call.
pub type MasterChannel = InterceptedService<Channel, Credentials>;

/// `channel` with `credentials` on every call.
pub fn authorized(channel: Channel, credentials: Credentials) -> MasterChannel {
    InterceptedService::new(channel, credentials)
}

/// A bearer token (or none) and an audit reason (or none). Its `Debug`
/// never shows the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
    reason: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.authorization.as_ref().map(|_| "<hidden>"))
            .field("reason", &self.reason)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the token is empty or holds characters a token never has")]
    BadToken,
    #[error("--token-file {path}: {why}")]
    File { path: String, why: String },
    #[error(
        "give the token once: --token (TASKMASTER_TOKEN) or --token-file (TASKMASTER_TOKEN_FILE)"
    )]
    Both,
}

impl Credentials {
    /// Credentials with the bearer `token` (visible ASCII, as ours are).
    pub fn token(token: &str) -> Result<Credentials, CredentialsError> {
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialsError::BadToken);
        }
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| CredentialsError::BadToken)?;
        Ok(Credentials {
            authorization: Some(value),
            reason: None,
        })
    }

    /// The token given on the command line or in the environment, or read
    /// from `file` (its first line: so it stays out of `ps` and shell
    /// history); none if neither is given.
    pub fn from_sources(
        token: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Credentials, CredentialsError> {
        match (token, file) {
            (None, None) => Ok(Credentials::default()),
            (Some(_), Some(_)) => Err(CredentialsError::Both),
            (Some(token), None) => Credentials::token(token),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| CredentialsError::File {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?;
                let line = text.lines().next().unwrap_or("");
                Credentials::token(line).map_err(|e| CredentialsError::File {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })
            }
        }
    }

    /// The same credentials, saying why the caller makes its changes
    /// (empty: no reason).
    pub fn with_reason(mut self, reason: &str) -> Credentials {
        self.reason = Some(reason)
            .filter(|r| !r.is_empty())
            .and_then(|r| encode_reason(r).parse().ok());
        self
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.authorization.is_some()
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        if let Some(value) = &self.authorization {
            metadata.insert("authorization", value.clone());
        }
        if let Some(value) = &self.reason {
            metadata.insert(REASON_METADATA, value.clone());
        }
        Ok(request)
    }
}

/// A reason as a metadata value: UTF-8, percent-encoded but for letters,
/// digits and a few plain punctuation marks. The master decodes it.
pub fn encode_reason(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    for b in reason.bytes() {
        if b.is_ascii_alphanumeric() || b" .,:;_-/()".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_in_authorization_and_never_in_debug_output() {
        let mut creds = Credentials::token(" tm_abc\n")
            .unwrap()
            .with_reason("fix #1");
        assert!(!format!("{creds:?}").contains("tm_abc"));
        let request = creds.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer tm_abc"
        );
        assert_eq!(request.metadata().get(REASON_METADATA).unwrap(), "fix %231");
        assert!(Credentials::token("").is_err());
        assert!(Credentials::token("a b").is_err());
        assert!(matches!(
            Credentials::from_sources(Some("a"), Some(Path::new("/x"))),
            Err(CredentialsError::Both)
        ));
        let missing = Credentials::from_sources(None, Some(Path::new("/nonexistent/t")));
        assert!(missing.unwrap_err().to_string().contains("/nonexistent/t"));
    }
}
