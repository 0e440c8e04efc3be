//! `tmctl bench --secure`: the bench's master with TLS and `--auth`, and
//! its clients as a deployment would run them, so the cost of both can be
//! measured against a plain master (issue 24).
//!
//! The bench makes a throwaway certificate authority and a server
//! certificate for 127.0.0.1 (rcgen, as the tests do) in a temporary
//! directory, starts its master with `--tls-cert`, `--tls-key` and
//! `--auth`, and from the first admin token the master writes to its data
//! dir makes one `operator` token for the submitting client (submit,
//! status) and one `worker` token per client, named as its worker id. Every
//! connection is TLS and every call carries its token. Making the tokens
//! is not timed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use taskmaster_proto::credentials::Credentials;
use taskmaster_proto::v1::Role;
use tonic::Code;

use super::BenchError;
use taskmaster_client::client::{Client, ClientError, ClientTls};

/// The name of the submitting client's token.
pub const OPERATOR_TOKEN_NAME: &str = "bench-operator";

/// How long token creation may be refused by the master's rate limit per
/// identity (`--rate-per-identity`: a burst of 400, then 200 a second)
/// before the bench gives up: 1,024 clients need about 3 s.
const RATE_WAIT_MAX: Duration = Duration::from_secs(30);

/// The certificate files a secure bench master is started with; removed
/// with the directory when dropped.
pub struct MasterTls {
    dir: tempfile::TempDir,
}

impl MasterTls {
    /// A new CA and a server certificate for 127.0.0.1 and localhost,
    /// signed by it, as PEM files in a new temporary directory.
    pub fn new() -> Result<MasterTls, BenchError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| BenchError::MasterStart {
            what: format!("cannot make the bench's TLS certificates ({what}): {e}"),
        };
        let dir = tempfile::Builder::new()
            .prefix("taskmaster-bench-tls-")
            .tempdir()
            .map_err(|e| fail("temporary dir", &e))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("CA", &e))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "taskmaster bench CA");
        let ca_key = KeyPair::generate().map_err(|e| fail("CA key", &e))?;
        let issuer = CertifiedIssuer::self_signed(ca, ca_key).map_err(|e| fail("CA", &e))?;
        let mut server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .map_err(|e| fail("server", &e))?;
        server
            .distinguished_name
            .push(DnType::CommonName, "taskmaster bench master");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| fail("server key", &e))?;
        let cert = server
            .signed_by(&key, &issuer)
            .map_err(|e| fail("server", &e))?;
        let tls = MasterTls { dir };
        for (path, pem) in [
            (tls.ca(), issuer.pem()),
            (tls.cert(), cert.pem()),
            (tls.key(), key.serialize_pem()),
        ] {
            std::fs::write(&path, pem).map_err(|e| fail("write", &e))?;
        }
        Ok(tls)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("master.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    /// The `taskmaster serve` arguments: TLS with these files, and `--auth`.
    pub fn serve_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--tls-cert".into(),
            self.cert().into(),
            "--tls-key".into(),
            self.key().into(),
            "--auth".into(),
        ]
    }

    /// What a client needs to trust the master.
    pub fn client_tls(&self) -> Result<ClientTls, BenchError> {
        ClientTls::from_files(&self.ca(), None, None).map_err(|e| BenchError::MasterStart {
            what: format!("cannot read the bench's CA: {e}"),
        })
    }
}

/// How the bench's clients reach a secure master: over TLS, each with its
/// token. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Secure {
    pub tls: ClientTls,
    /// The submitting client's `operator` token.
    pub operator: Credentials,
    /// The first admin token, which makes the others.
    admin: Credentials,
}

impl Secure {
    /// Reads the admin token the master wrote to `data_dir` and makes the
    /// submitting client's operator token.
    pub async fn set_up(url: &str, data_dir: &Path, tls: ClientTls) -> Result<Secure, BenchError> {
        let file = data_dir.join("admin.token");
        let admin =
            Credentials::from_sources(None, Some(&file)).map_err(|e| BenchError::MasterStart {
                what: format!("no admin token: {e}"),
            })?;
        let mut secure = Secure {
            tls,
            operator: Credentials::default(),
            admin,
        };
        let admin = secure.connect(url, secure.admin.clone()).await?;
        secure.operator = make_token(&admin, OPERATOR_TOKEN_NAME, Role::Operator).await?;
        Ok(secure)
    }

    /// A client of the master at `url` with `credentials`, over TLS.
    pub async fn connect(&self, url: &str, credentials: Credentials) -> Result<Client, BenchError> {
        Ok(Client::connect_as(url, Some(&self.tls), credentials).await?)
    }

    /// One `worker` token per worker id, in order.
    pub async fn worker_tokens(
        &self,
        url: &str,
        worker_ids: &[String],
    ) -> Result<Vec<Credentials>, BenchError> {
        let admin = self.connect(url, self.admin.clone()).await?;
        let mut tokens = Vec::with_capacity(worker_ids.len());
        for id in worker_ids {
            tokens.push(make_token(&admin, id, Role::Worker).await?);
        }
        Ok(tokens)
    }
}

/// Makes a token named `name` with `role`, waiting out the master's rate
/// limit on the admin identity.
async fn make_token(admin: &Client, name: &str, role: Role) -> Result<Credentials, BenchError> {
    let deadline = tokio::time::Instant::now() + RATE_WAIT_MAX;
    let made = loop {
        match admin.create_token(name, role, 0).await {
            Err(e @ ClientError::Rpc { .. })
                if e.code() == Some(Code::ResourceExhausted)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other?,
        }
    };
    Credentials::token(&made.token).map_err(|e| BenchError::MasterStart {
        what: format!("the master made an unusable token for {name}: {e}"),
    })
}
