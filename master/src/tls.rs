//! The master's TLS listener: rustls (with the aws-lc provider) over the
//! TCP listener, requiring client certificates signed by `--client-ca`
//! when it is given (mutual TLS), and taking up new certificate files
//! without a restart.
//!
//! Rotation: a watcher re-reads the files when their size or modification
//! time changes and swaps the rustls config in; connections made since use
//! the new one, and those already open keep theirs, so no call fails. A
//! file caught half-written does not parse: the old config stays and the
//! watcher tries again on its next look.
//!
//! Handshakes run on a task per connection, so a slow or silent client
//! (or plaintext sent to this port) never holds up the accept loop.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::Stream;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;

/// How often the watcher looks at the certificate files.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// The PEM files the listener is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate this CA signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {why}")]
    File {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("TLS: {0}")]
    Config(String),
}

/// A PEM file's error, naming the file and what it was for.
fn file_error(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError + use<> {
    let path = path.display().to_string();
    move |e| TlsError::File {
        what,
        path,
        why: e.to_string(),
    }
}

impl TlsFiles {
    /// The rustls config these files make, or why they make none.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(file_error("certificate", &self.cert))?
            .collect::<Result<_, _>>()
            .map_err(file_error("certificate", &self.cert))?;
        if chain.is_empty() {
            return Err(TlsError::File {
                what: "certificate",
                path: self.cert.display().to_string(),
                why: "no certificate in it".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(file_error("key", &self.key))?;
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(ca).map_err(file_error("client CA", ca))?
                {
                    roots
                        .add(cert.map_err(file_error("client CA", ca))?)
                        .map_err(|e| TlsError::Config(format!("client CA: {e}")))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::Config(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))?;
        // gRPC runs over HTTP/2, which TLS negotiates by ALPN.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// What changes when a file is replaced: sizes and modification times.
    fn stamp(&self) -> Vec<Option<(u64, SystemTime)>> {
        let files = [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()];
        files
            .into_iter()
            .flatten()
            .map(|path| {
                let meta = std::fs::metadata(path).ok()?;
                Some((meta.len(), meta.modified().ok()?))
            })
            .collect()
    }
}

/// The connections of `listener`, each after a TLS handshake with the
/// current config. Starts the watcher that reloads `files`; both stop when
/// the returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    files: TlsFiles,
    first: Arc<ServerConfig>,
) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
    let (config_tx, config_rx) = watch::channel(first);
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    tokio::spawn(watch_files(files, config_tx, tx.clone()));
    tokio::spawn(accept_loop(listener, config_rx, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    accepted: mpsc::Sender<io::Result<TlsStream<TcpStream>>>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            () = accepted.closed() => return,
            result = listener.accept() => match result {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: say so, and
                    // back off a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Replies are small writes: see server.rs on TCP_NODELAY.
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(Arc::clone(&config.borrow()));
        let accepted = accepted.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = accepted.send(Ok(stream)).await;
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Reloads the config when the files change; ends when the server's side
/// of the connection queue is gone.
async fn watch_files(
    files: TlsFiles,
    config: watch::Sender<Arc<ServerConfig>>,
    accepted: mpsc::Sender<io::Result<TlsStream<TcpStream>>>,
) {
    let stamp_of = |files: TlsFiles| async move {
        tokio::task::spawn_blocking(move || files.stamp())
            .await
            .unwrap_or_default()
    };
    let mut seen = stamp_of(files.clone()).await;
    loop {
        tokio::select! {
            () = accepted.closed() => return,
            () = tokio::time::sleep(RELOAD_CHECK_INTERVAL) => {}
        }
        let now = stamp_of(files.clone()).await;
        if now == seen {
            continue;
        }
        let loading = files.clone();
        match tokio::task::spawn_blocking(move || loading.load()).await {
            Ok(Ok(new)) => {
                seen = now;
                config.send_replace(new);
                tracing::info!(cert = %files.cert.display(), "reloaded the TLS certificate files");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the TLS files changed but do not load yet; keeping the current ones");
            }
            Err(e) => tracing::warn!(error = %e, "reloading the TLS files failed"),
        }
    }
}
