//! Bearer tokens (issue 24): who may call the master, with which role.
//! The core keeps each token's SHA-256, never the token; the auth layer
//! hashes what a caller presents and asks [`Tokens::find`].

use std::collections::BTreeMap;

use subtle::ConstantTimeEq as _;
use taskmaster_proto::journal::{TokenCreated, TokenRevoked};
use taskmaster_proto::v1::{Role, TokenInfo};

use super::CoreError;

/// Tokens a master holds at most: each is checked on every call.
pub const TOKENS_MAX: usize = 1_000;

/// A live token, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
    pub created_unix_ms: u64,
    /// 0: never.
    pub expires_unix_ms: u64,
}

impl Token {
    pub fn info(&self, last_used_unix_ms: u64) -> TokenInfo {
        TokenInfo {
            name: self.name.clone(),
            role: self.role as i32,
            created_unix_ms: self.created_unix_ms,
            expires_unix_ms: self.expires_unix_ms,
            last_used_unix_ms,
        }
    }

    /// Whether it has run out at `unix_ms`.
    pub fn expired(&self, unix_ms: u64) -> bool {
        self.expires_unix_ms != 0 && unix_ms >= self.expires_unix_ms
    }

    pub fn to_record(&self) -> TokenCreated {
        TokenCreated {
            name: self.name.clone(),
            role: self.role as i32,
            sha256: self.sha256.to_vec(),
            created_unix_ms: self.created_unix_ms,
            expires_unix_ms: self.expires_unix_ms,
        }
    }

    fn from_record(rec: &TokenCreated) -> Result<Token, String> {
        let sha256: [u8; 32] = rec
            .sha256
            .as_slice()
            .try_into()
            .map_err(|_| format!("token {}: its hash is not 32 bytes", rec.name))?;
        let role = Role::try_from(rec.role)
            .ok()
            .filter(|r| *r != Role::Unspecified)
            .ok_or_else(|| format!("token {}: no such role {}", rec.name, rec.role))?;
        check_name(&rec.name)?;
        Ok(Token {
            name: rec.name.clone(),
            role,
            sha256,
            created_unix_ms: rec.created_unix_ms,
            expires_unix_ms: rec.expires_unix_ms,
        })
    }
}

/// A token's name: what audit entries and `tmctl token list` show, and a
/// worker's id. Letters, digits, `.`, `_` and `-`, 1 to 64 bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= super::limits::NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "token name {name:?}: 1 to {} letters, digits, '.', '_' or '-'",
            super::limits::NAME_BYTES_MAX
        ))
    }
}

/// Every live token, by name.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_name: BTreeMap<String, Token>,
}

impl Tokens {
    /// The token whose hash is `sha256`, compared in constant time with
    /// every token's (so the time taken says nothing of how close a guess
    /// came), whether or not it has expired.
    pub fn find(&self, sha256: &[u8; 32]) -> Option<&Token> {
        let mut found = None;
        for token in self.by_name.values() {
            if bool::from(token.sha256.ct_eq(sha256)) {
                found = Some(token);
            }
        }
        found
    }

    pub fn get(&self, name: &str) -> Option<&Token> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Token> {
        self.by_name.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Why `token` may not be added, or Ok.
    pub fn check_create(&self, token: &Token) -> Result<(), CoreError> {
        check_name(&token.name).map_err(CoreError::Invalid)?;
        if token.role == Role::Unspecified {
            return Err(CoreError::Invalid("a token needs a role".into()));
        }
        if self.by_name.contains_key(&token.name) {
            return Err(CoreError::AlreadyExists(format!(
                "a token named {} exists (revoke it first)",
                token.name
            )));
        }
        if self.by_name.len() >= TOKENS_MAX {
            return Err(CoreError::Invalid(format!(
                "the master holds {TOKENS_MAX} tokens, its limit (tokens_max): revoke some"
            )));
        }
        Ok(())
    }

    pub fn apply_created(&mut self, rec: &TokenCreated) -> Result<(), CoreError> {
        let token = Token::from_record(rec).map_err(CoreError::Corrupt)?;
        if self.by_name.contains_key(&token.name) {
            return Err(CoreError::Corrupt(format!(
                "token {} created twice",
                token.name
            )));
        }
        self.by_name.insert(token.name.clone(), token);
        Ok(())
    }

    pub fn apply_revoked(&mut self, rec: &TokenRevoked) -> Result<(), CoreError> {
        match self.by_name.remove(&rec.name) {
            Some(_) => Ok(()),
            None => Err(CoreError::Corrupt(format!(
                "no token {} to revoke",
                rec.name
            ))),
        }
    }

    pub fn to_records(&self) -> Vec<TokenCreated> {
        self.by_name.values().map(Token::to_record).collect()
    }

    pub fn from_records(records: &[TokenCreated]) -> Result<Tokens, CoreError> {
        let mut tokens = Tokens::default();
        for rec in records {
            tokens
                .apply_created(rec)
                .map_err(|e| CoreError::Corrupt(format!("snapshot: {e}")))?;
        }
        Ok(tokens)
    }
}

impl super::Core {
    /// The first of `refs` that is a current lease of a worker other than
    /// `worker`, as "lease L of P/G/U (held by W)": a worker may renew,
    /// commit, release and read only its own leases. A lease that is not
    /// current is left to the usual checks, which refuse it (a repeated
    /// commit of a finished unit changes nothing, whoever sends it).
    pub fn lease_of_another<'a>(
        &self,
        refs: impl IntoIterator<Item = Option<&'a taskmaster_proto::v1::LeaseRef>>,
        worker: &str,
    ) -> Option<String> {
        use super::model::UnitState;
        for lease in refs.into_iter().flatten() {
            let Some(unit) = &lease.unit else { continue };
            let Some(&p) = self.pipeline_index.get(&unit.pipeline_id) else {
                continue;
            };
            let pipeline = &self.pipelines[p as usize];
            let Some(&g) = pipeline.group_index.get(&unit.group) else {
                continue;
            };
            let Some(u) = pipeline.groups[g as usize].units.get(unit.unit as usize) else {
                continue;
            };
            if let UnitState::Leased {
                lease_id,
                worker_id,
                ..
            } = &u.state
                && *lease_id == lease.lease_id
                && worker_id != worker
            {
                return Some(format!(
                    "lease {lease_id} of {}/{}/{} (held by {worker_id})",
                    super::names::shown(&unit.pipeline_id),
                    super::names::shown(&unit.group),
                    unit.unit
                ));
            }
        }
        None
    }

    /// The record that adds `token` (checked first).
    pub fn create_token(&mut self, token: &Token, now_ms: u64) -> Result<super::Record, CoreError> {
        self.tokens.check_create(token)?;
        let rec = super::record(super::Kind::TokenCreated(token.to_record()));
        self.apply_checked(&rec, now_ms);
        Ok(rec)
    }

    /// The record that revokes the token named `name`.
    pub fn revoke_token(&mut self, name: &str, now_ms: u64) -> Result<super::Record, CoreError> {
        if self.tokens.get(name).is_none() {
            return Err(CoreError::NotFound(format!(
                "no token named {}",
                super::names::shown(name)
            )));
        }
        let rec = super::record(super::Kind::TokenRevoked(TokenRevoked {
            name: name.to_string(),
        }));
        self.apply_checked(&rec, now_ms);
        Ok(rec)
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }
}
