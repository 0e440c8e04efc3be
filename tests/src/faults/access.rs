//! How the fault harness reaches its master: plainly, or (a profile with
//! `secure`, issue 24) over TLS to a master started with `--auth` and
//! `--client-ca`, as a deployment would run it.
//!
//! With TLS and `--auth`:
//!
//! - the master serves TLS with a certificate from a CA made for the run
//!   (rcgen, [`crate::certs`]) and requires a client certificate from that
//!   CA on every connection (mutual TLS);
//! - each worker process is known by its certificate alone: one is made at
//!   each spawn, its subject naming the worker id (`w3-7`), so a worker
//!   restarted under a new id gets a new identity without a call to the
//!   master (which may be down, or restored from a copy that never saw a
//!   token made since);
//! - the harness and every `tmctl` it runs (submit, status, outputs) use
//!   an `operator` token, made once at the first start with the master's
//!   first admin token, and a client certificate of their own. The token is
//!   in every copy of the data dir the run restores, so it outlives every
//!   crash and restore too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use taskmaster_client::{Client, ClientError, ClientTls};
use taskmaster_proto::credentials::Credentials;

use crate::certs::{CertFiles, TestCa};
use crate::tmctl_env;

/// The name of the harness's operator token.
const HARNESS_TOKEN: &str = "fault-harness";

/// The run's certificates and the harness's token.
pub struct Security {
    ca: TestCa,
    server: CertFiles,
    /// The harness's and tmctl's client certificate (the master requires
    /// one of every client); the token decides their role.
    harness: CertFiles,
    /// The harness's operator token, once made.
    token_file: PathBuf,
}

impl Security {
    /// A CA, the master's certificate and the harness's, in `dir`.
    pub fn new(dir: &Path) -> Security {
        std::fs::create_dir_all(dir).expect("TLS dir");
        let ca = TestCa::new(dir, "fault-ca");
        let server = ca.server("master");
        let harness = ca.client("fault-harness-cert");
        Security {
            ca,
            server,
            harness,
            token_file: dir.join("harness.token"),
        }
    }

    /// `taskmaster serve` arguments: TLS, client certificates required,
    /// tokens required.
    pub fn master_args(&self) -> Vec<OsString> {
        vec![
            "--tls-cert".into(),
            self.server.cert.clone().into(),
            "--tls-key".into(),
            self.server.key.clone().into(),
            "--client-ca".into(),
            self.ca.cert.clone().into(),
            "--auth".into(),
        ]
    }

    /// The environment of a worker named `id`: the CA and a new client
    /// certificate whose subject is `id`, which is its identity.
    pub fn worker_env(&self, id: &str) -> Vec<(OsString, OsString)> {
        let cert = self.ca.client(id);
        vec![
            ("TASKMASTER_TLS_CA".into(), self.ca.cert.clone().into()),
            ("TASKMASTER_TLS_CERT".into(), cert.cert.into()),
            ("TASKMASTER_TLS_KEY".into(), cert.key.into()),
        ]
    }

    /// Makes the harness's operator token with the first admin token the
    /// master at `url` wrote to `data_dir`. Panics if it cannot: the run
    /// cannot go on without it.
    pub fn make_harness_token(&self, url: &str, data_dir: &Path) {
        let admin = data_dir.join("admin.token");
        let mut env = self.tls_env();
        env.push(("TASKMASTER_TOKEN_FILE".into(), path_text(&admin)));
        let args = [
            "token",
            "create",
            "--role",
            "operator",
            "--name",
            HARNESS_TOKEN,
        ];
        let out = tmctl_env(url, &args, &pairs(&env));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let token = stdout.lines().last().unwrap_or_default();
        assert!(
            out.status.success() && !token.is_empty(),
            "tmctl token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&self.token_file, format!("{token}\n")).expect("write the harness token");
    }

    /// The CA and the harness's certificate, as tmctl reads them.
    fn tls_env(&self) -> Vec<(String, String)> {
        vec![
            ("TASKMASTER_TLS_CA".into(), path_text(&self.ca.cert)),
            ("TASKMASTER_TLS_CERT".into(), path_text(&self.harness.cert)),
            ("TASKMASTER_TLS_KEY".into(), path_text(&self.harness.key)),
        ]
    }
}

/// How the harness reaches the master: its URL, and with [`Security`] the
/// TLS settings and token every client of the harness presents.
#[derive(Debug, Clone)]
pub struct Reach {
    pub url: String,
    /// tmctl's environment: TLS files and the token file.
    env: Vec<(String, String)>,
    tls: Option<ClientTls>,
    credentials: Credentials,
}

impl Reach {
    /// A plain master at `url`.
    pub fn plain(url: &str) -> Reach {
        Reach {
            url: url.to_string(),
            env: Vec::new(),
            tls: None,
            credentials: Credentials::default(),
        }
    }

    /// A master at `url` (https) started with `security`'s arguments, once
    /// the harness's token is made.
    pub fn secure(url: &str, security: &Security) -> Reach {
        let tls = ClientTls::from_files(
            &security.ca.cert,
            Some(&security.harness.cert),
            Some(&security.harness.key),
        )
        .expect("the harness's TLS files");
        let credentials = Credentials::from_sources(None, Some(&security.token_file))
            .expect("the harness's token");
        let mut env = security.tls_env();
        env.push((
            "TASKMASTER_TOKEN_FILE".into(),
            path_text(&security.token_file),
        ));
        Reach {
            url: url.to_string(),
            env,
            tls: Some(tls),
            credentials,
        }
    }

    /// Runs `tmctl --master URL ARGS...` to completion.
    pub fn tmctl(&self, args: &[&str]) -> Output {
        tmctl_env(&self.url, args, &pairs(&self.env))
    }

    /// stdout of a tmctl call that must succeed.
    pub fn tmctl_ok(&self, args: &[&str]) -> String {
        crate::succeeded(args, self.tmctl(args))
    }

    /// An SDK client.
    pub async fn client(&self) -> Result<Client, ClientError> {
        Client::connect_as(&self.url, self.tls.as_ref(), self.credentials.clone()).await
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_string()
}

/// Environment pairs as [`tmctl_env`] takes them.
fn pairs(owned: &[(String, String)]) -> Vec<(&str, &str)> {
    owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}
