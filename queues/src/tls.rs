//! TLS for `amqps://`: whom a broker connection trusts and, for mutual TLS, who it is.
//!
//! An `amqps://` URL always performs a TLS handshake that verifies the broker's certificate and
//! its name, against the system's roots or, when `EBOX_AMQP_CA_FILE` is set, against that CA
//! only; it never falls back to plain TCP ([`crate::driver::connect`] does the handshake
//! itself). An `amqp://` URL is plain TCP.
//!
//! The process's settings are installed once, at start-up, by [`install`]; every connection the
//! process opens uses them. A process that installs none (the demo sender, the tests) trusts the
//! system's roots and presents no client certificate.

use anyhow::Context;
use lapin::tcp::{RustlsConnector, RustlsConnectorConfig};
use runtime::config::AmqpTls;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

/// Whom a broker connection trusts and, for mutual TLS, which certificate it presents.
pub struct BrokerTls {
    /// The CA certificates trusted instead of the system's roots.
    roots: Option<Vec<CertificateDer<'static>>>,
    client: Option<ClientIdentity>,
}

/// A client certificate chain and its private key.
struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl BrokerTls {
    /// The system's roots, no client certificate.
    pub fn system_roots() -> Self {
        Self {
            roots: None,
            client: None,
        }
    }

    /// Trusts only the CA certificates of `ca_pem` (PEM), no client certificate.
    pub fn trusting(ca_pem: &[u8]) -> anyhow::Result<Self> {
        let roots = certificates(ca_pem)?;
        Ok(Self {
            roots: Some(roots),
            client: None,
        })
    }

    /// Presents the certificate chain of `cert_pem` with the private key of `key_pem` (PEM) to
    /// a broker that asks for one.
    pub fn with_client_certificate(self, cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Self> {
        let chain = certificates(cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).context("no private key in PEM")?;
        Ok(Self {
            client: Some(ClientIdentity { chain, key }),
            ..self
        })
    }

    /// Reads the files the settings name. The CA and the client certificate are tried here,
    /// at start-up, so that a CA that does not parse or a key that does not match its
    /// certificate stops the process instead of every connection.
    pub fn load(settings: &AmqpTls) -> anyhow::Result<Self> {
        let mut tls = match &settings.ca_file {
            Some(path) => Self::trusting(&read(path)?)
                .with_context(|| format!("EBOX_AMQP_CA_FILE ({})", path.display()))?,
            None => Self::system_roots(),
        };
        if let Some(client) = &settings.client_certificate {
            tls = tls
                .with_client_certificate(&read(&client.cert_file)?, &read(&client.key_file)?)
                .with_context(|| {
                    format!(
                        "EBOX_AMQP_CLIENT_CERT_FILE ({}) with EBOX_AMQP_CLIENT_KEY_FILE ({})",
                        client.cert_file.display(),
                        client.key_file.display()
                    )
                })?;
        }
        if tls.roots.is_some() || tls.client.is_some() {
            tls.connector()
                .context("the broker TLS settings are unusable")?;
        }
        Ok(tls)
    }

    /// A TLS connector for one connection. Built per connection: connections are few, and
    /// the system's roots are then only read by a process that uses them.
    pub(crate) fn connector(&self) -> std::io::Result<RustlsConnector> {
        let config = match &self.roots {
            Some(roots) => {
                RustlsConnectorConfig::default().with_parsable_certificates(roots.clone())
            }
            None => RustlsConnectorConfig::new_with_native_certs()?,
        };
        match &self.client {
            Some(client) => {
                config.connector_with_single_cert(client.chain.clone(), client.key.clone_key())
            }
            None => config.connector_with_no_client_auth(),
        }
    }
}

impl fmt::Debug for BrokerTls {
    /// Counts the certificates; never shows the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerTls")
            .field(
                "roots",
                &match &self.roots {
                    Some(roots) => format!("{} CA certificate(s)", roots.len()),
                    None => "system".to_owned(),
                },
            )
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

static INSTALLED: OnceLock<BrokerTls> = OnceLock::new();

/// Installs the process's broker TLS settings (`EBOX_AMQP_CA_FILE`, `EBOX_AMQP_CLIENT_*`):
/// once, at start-up, before the first connection.
pub fn install(settings: &AmqpTls) -> anyhow::Result<()> {
    let tls = BrokerTls::load(settings)?;
    INSTALLED
        .set(tls)
        .map_err(|_| anyhow::anyhow!("the broker TLS settings were already in use"))
}

/// The process's broker TLS settings: those installed, or the system's roots.
pub(crate) fn installed() -> &'static BrokerTls {
    INSTALLED.get_or_init(BrokerTls::system_roots)
}

fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("a certificate in PEM does not parse")?;
    anyhow::ensure!(!certificates.is_empty(), "no certificate in PEM");
    Ok(certificates)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("Failed to read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let error = BrokerTls::trusting(b"not a certificate").expect_err("refused");
        assert_eq!(error.to_string(), "no certificate in PEM");
    }

    #[test]
    fn the_debug_form_shows_no_key_material() {
        let tls = BrokerTls::system_roots();
        assert_eq!(
            format!("{tls:?}"),
            r#"BrokerTls { roots: "system", client_certificate: false }"#
        );
    }
}
