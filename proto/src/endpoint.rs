//! How every client (`tmctl`, the SDK, the worker) names and reaches a
//! master: one parser for its address, so the same forms work everywhere,
//! and one place that sets up TLS.
//!
//! Addresses: `host:port`, `[v6]:port`, `http://host:port` or
//! `https://host:port`. Without a scheme, `http://` is meant, or
//! `https://` when TLS is configured; `http://` together with TLS is
//! refused, since it would quietly send tokens and data in clear text.

use std::path::Path;

use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A master address or TLS setting that cannot be used.
#[derive(Debug, Error)]
pub enum EndpointError {
    #[error(
        "master address {addr:?}: {why} (use host:port, http://host:port, or https://host:port with --tls-ca)"
    )]
    Address { addr: String, why: String },
    #[error("{what} {path}: {why}")]
    File {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

/// TLS for a client: the CA that signed the master's certificate, and
/// optionally the client's own certificate and key (for a master that
/// requires client certificates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// Reads the PEM files: `ca` always, `cert` and `key` together or not
    /// at all.
    pub fn from_files(
        ca: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<ClientTls, EndpointError> {
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => {
                Some((read("client certificate", cert)?, read("client key", key)?))
            }
            (None, None) => None,
            _ => {
                return Err(EndpointError::Tls(
                    "a client certificate needs its key, and a key its certificate (--tls-cert with --tls-key)"
                        .into(),
                ));
            }
        };
        Ok(ClientTls {
            ca_pem: read("CA certificate", ca)?,
            identity,
        })
    }

    fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, EndpointError> {
    std::fs::read(path).map_err(|e| EndpointError::File {
        what,
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

/// The URL `addr` stands for (see the module docs).
pub fn master_url(addr: &str, tls: bool) -> Result<String, EndpointError> {
    let refuse = |why: &str| EndpointError::Address {
        addr: addr.to_string(),
        why: why.to_string(),
    };
    let (scheme, rest) = match addr.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => (if tls { "https" } else { "http" }, addr),
    };
    match (scheme, tls) {
        ("https", true) | ("http", false) => {}
        ("http", true) => {
            return Err(refuse(
                "http:// with TLS configured would send everything in clear text",
            ));
        }
        ("https", false) => return Err(refuse("https:// needs the master's CA (--tls-ca)")),
        _ => return Err(refuse(&format!("unknown scheme {scheme:?}"))),
    }
    let host_port = rest.trim_end_matches('/');
    if host_port.contains('/') || host_port.chars().any(char::is_whitespace) {
        return Err(refuse("an address has no path or spaces"));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => return Err(refuse("it names no host and port")),
    }
    Ok(format!("{scheme}://{host_port}"))
}

/// A tonic endpoint for the master at `addr`, with TLS when `tls` is given.
pub fn endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint, EndpointError> {
    let url = master_url(addr, tls.is_some())?;
    let endpoint = Endpoint::from_shared(url).map_err(|e| EndpointError::Address {
        addr: addr.to_string(),
        why: e.to_string(),
    })?;
    match tls {
        None => Ok(endpoint),
        Some(tls) => endpoint
            .tls_config(tls.config())
            .map_err(|e| EndpointError::Tls(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_accepts_the_same_address_forms() {
        for (addr, want) in [
            ("127.0.0.1:7070", "http://127.0.0.1:7070"),
            ("http://127.0.0.1:7070", "http://127.0.0.1:7070"),
            ("http://m.example:7070/", "http://m.example:7070"),
            ("[::1]:7070", "http://[::1]:7070"),
            ("localhost:1", "http://localhost:1"),
        ] {
            assert_eq!(master_url(addr, false).unwrap(), want, "{addr}");
        }
        assert_eq!(master_url("m:7070", true).unwrap(), "https://m:7070");
        assert_eq!(
            master_url("https://m:7070", true).unwrap(),
            "https://m:7070"
        );
    }

    #[test]
    fn addresses_that_would_mislead_are_refused_with_the_forms() {
        for (addr, tls, why) in [
            ("http://m:7070", true, "clear text"),
            ("https://m:7070", false, "--tls-ca"),
            ("m", false, "no host and port"),
            (":7070", false, "no host and port"),
            ("m:port", false, "no host and port"),
            ("ftp://m:1", false, "unknown scheme"),
            ("http://m:1/x", false, "no path"),
        ] {
            let err = master_url(addr, tls).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.contains("host:port"),
                "{addr}: {err}"
            );
        }
    }
}
