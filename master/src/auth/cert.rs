//! A worker's name from the client certificate it presented: the subject's
//! common name. The TLS layer has already checked the certificate against
//! `--client-ca`; this only reads it.

use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The subject CN of a DER certificate, if it has exactly one that is a
/// valid worker name; else why not.
pub fn subject_name(der: &[u8]) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("the client certificate does not parse: {e}"))?;
    let mut names = cert.subject().iter_common_name();
    let (Some(cn), None) = (names.next(), names.next()) else {
        return Err("the client certificate's subject has no single common name (CN)".into());
    };
    let name = cn
        .as_str()
        .map_err(|_| "the client certificate's CN is not text".to_string())?;
    crate::core::tokens::check_name(name)
        .map_err(|e| format!("the client certificate's CN: {e}"))?;
    Ok(name.to_string())
}
