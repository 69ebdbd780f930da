//! Connecting to PostgreSQL: where the settings come from, TLS, and how a connection is
//! described in output without ever showing its password.
//!
//! Settings come from `--database-url` / `DATABASE_URL` (an empty value counts as unset),
//! else from the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD,
//! PGSSLMODE, PGAPPNAME). libpq fills what a URL leaves out from the same variables, and so
//! does pgshift. `sslmode` follows libpq: disable, prefer and require encrypt without
//! checking the server's certificate; verify-ca and verify-full check it (both check the host
//! name too) against `sslrootcert` if given, else the Mozilla root set.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyFull { root_cert: Option<PathBuf> },
}

/// Everything needed to open connections to one database.
#[derive(Clone)]
pub struct ConnectionSpec {
    config: Config,
    tls: TlsMode,
}

impl std::fmt::Debug for ConnectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionSpec({})", self.describe())
    }
}

const HINT_URL: &str = "give --database-url postgres://user@host:5432/dbname (or set DATABASE_URL, or the libpq variables PGHOST, PGPORT, PGUSER, PGDATABASE)";

impl ConnectionSpec {
    /// Resolves the connection from a URL (or keyword/value string) and the environment.
    pub fn resolve(url: Option<&str>) -> Result<ConnectionSpec> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let url = url.filter(|u| !u.trim().is_empty());
        let (mut config, mut sslmode, mut root_cert) = match url {
            Some(url) => parse_url(url)?,
            None => (Config::new(), None, None),
        };
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(hosts) => {
                    for h in hosts.split(',') {
                        config.host(h);
                    }
                }
                None if std::path::Path::new("/var/run/postgresql").is_dir() => {
                    config.host("/var/run/postgresql");
                }
                None => {
                    config.host("localhost");
                }
            }
        }
        if config.get_ports().is_empty() {
            if let Some(port) = env("PGPORT") {
                let port: u16 = port.parse().map_err(|_| {
                    Error::usage(
                        format!("PGPORT={port:?} is not a port number"),
                        Some(HINT_URL),
                    )
                })?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = env("PGUSER").unwrap_or_else(whoami::username);
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let db = env("PGDATABASE")
                .unwrap_or_else(|| config.get_user().unwrap_or("postgres").to_owned());
            config.dbname(&db);
        }
        if config.get_password().is_none() {
            if let Some(pw) = env("PGPASSWORD") {
                config.password(pw);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name(env("PGAPPNAME").as_deref().unwrap_or("pgshift"));
        }
        if sslmode.is_none() {
            sslmode = env("PGSSLMODE");
        }
        if root_cert.is_none() {
            root_cert = env("PGSSLROOTCERT").map(PathBuf::from);
        }
        let tls = match sslmode.as_deref().unwrap_or("prefer") {
            "disable" | "allow" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" | "verify-full" => TlsMode::VerifyFull { root_cert },
            other => {
                return Err(Error::usage(
                    format!("sslmode={other:?} is not a TLS mode"),
                    Some("use disable, prefer, require, verify-ca or verify-full"),
                ))
            }
        };
        // libpq never uses TLS on a Unix-domain socket, whatever sslmode says: the server
        // does not offer it there, and a socket path is no name to check a certificate for.
        let hosts = config.get_hosts();
        let tls = if !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_))) {
            TlsMode::Disable
        } else {
            tls
        };
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyFull { .. } => SslMode::Require,
        });
        Ok(ConnectionSpec { config, tls })
    }

    /// `user@host:port/dbname`, for output. Never includes the password.
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_default();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{}:{}/{}",
            self.config.get_user().unwrap_or(""),
            host,
            port,
            self.config.get_dbname().unwrap_or("")
        )
    }

    /// A URL for clients of a version: this connection (without its password) with
    /// `search_path` set to `schema` through the `options` parameter.
    pub fn url_with_search_path(&self, schema: &str) -> String {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => enc(h),
            Some(Host::Unix(p)) => enc(&p.display().to_string()),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let mut url = format!(
            "postgresql://{}@{host}:{port}/{}?options={}",
            enc(self.config.get_user().unwrap_or("")),
            enc(self.config.get_dbname().unwrap_or("")),
            enc(&format!(
                "-c search_path={}",
                crate::quote::ident(schema).replace(' ', "\\ ")
            ))
        );
        match self.tls {
            TlsMode::Disable => url.push_str("&sslmode=disable"),
            TlsMode::Require => url.push_str("&sslmode=require"),
            TlsMode::VerifyFull { .. } => url.push_str("&sslmode=verify-full"),
            TlsMode::Prefer => {}
        }
        url
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("")
    }

    pub fn application_name(&self) -> &str {
        self.config.get_application_name().unwrap_or("pgshift")
    }

    /// Opens a connection; its driver task runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client> {
        let client = match &self.tls {
            TlsMode::Disable => {
                let (client, conn) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(|e| self.connect_error(e))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            }
            mode => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_config(mode)?);
                let (client, conn) = self
                    .config
                    .connect(tls)
                    .await
                    .map_err(|e| self.connect_error(e))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            }
        };
        Ok(client)
    }

    fn connect_error(&self, e: tokio_postgres::Error) -> Error {
        Error::Connect {
            target: self.describe(),
            message: crate::error::pg_error_text(&e),
        }
    }
}

/// Splits the TLS settings that tokio-postgres does not know (verify-ca, verify-full,
/// sslrootcert) off a URL or keyword/value string and parses the rest.
fn parse_url(url: &str) -> Result<(Config, Option<String>, Option<PathBuf>)> {
    let mut sslmode = None;
    let mut root_cert = None;
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let rest = if is_url {
        match url.split_once('?') {
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    match k {
                        "sslmode" => sslmode = Some(v.to_owned()),
                        "sslrootcert" => root_cert = Some(PathBuf::from(v)),
                        _ => kept.push(pair),
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_owned(),
        }
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some(("sslmode", v)) => sslmode = Some(v.to_owned()),
                Some(("sslrootcert", v)) => root_cert = Some(PathBuf::from(v)),
                _ => kept.push(word),
            }
        }
        kept.join(" ")
    };
    let config: Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        // The parser's message names the bad part; the URL itself is not repeated because it
        // may carry a password.
        Error::usage(
            format!("the database URL does not parse: {e}"),
            Some(HINT_URL),
        )
    })?;
    Ok((config, sslmode, root_cert))
}

fn rustls_config(mode: &TlsMode) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::usage(format!("TLS setup failed: {e}"), None))?;
    let config = match mode {
        TlsMode::VerifyFull { root_cert } => {
            let mut roots = rustls::RootCertStore::empty();
            match root_cert {
                Some(path) => {
                    use rustls::pki_types::pem::PemObject;
                    let certs =
                        rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
                            Error::usage(
                                format!("cannot read sslrootcert {}: {e}", path.display()),
                                None,
                            )
                        })?;
                    for cert in certs {
                        let cert = cert.map_err(|e| {
                            Error::usage(
                                format!("cannot read sslrootcert {}: {e}", path.display()),
                                None,
                            )
                        })?;
                        roots.add(cert).map_err(|e| {
                            Error::usage(
                                format!("bad certificate in {}: {e}", path.display()),
                                None,
                            )
                        })?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// libpq's `sslmode=require`: encrypt, but accept any server certificate. Signatures are
/// still checked so that the handshake itself is sound.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Who runs pgshift, for the record: OS user, host, and the connection's application_name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Who {
    pub os_user: String,
    pub host: String,
    pub application_name: String,
}

impl Who {
    pub fn current(spec: &ConnectionSpec) -> Who {
        Who {
            os_user: whoami::username(),
            host: whoami::fallible::hostname().unwrap_or_else(|_| "unknown".to_owned()),
            application_name: spec.application_name().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_in_description_and_tls_options_are_split_off() {
        let spec = ConnectionSpec::resolve(Some(
            "postgres://alice:s3cret@db.example:6543/shop?sslmode=verify-full&application_name=x",
        ))
        .unwrap();
        let text = format!("{} {:?}", spec.describe(), spec);
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(spec.describe(), "alice@db.example:6543/shop");
        assert_eq!(spec.tls, TlsMode::VerifyFull { root_cert: None });
        assert_eq!(spec.application_name(), "x");
    }

    #[test]
    fn bad_url_error_does_not_echo_the_password() {
        let err =
            ConnectionSpec::resolve(Some("postgres://bob:hunter2@host:notaport/db")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn keyword_value_strings_work() {
        let spec =
            ConnectionSpec::resolve(Some("host=h port=5433 user=u dbname=d sslmode=disable"))
                .unwrap();
        assert_eq!(spec.describe(), "u@h:5433/d");
        assert_eq!(spec.tls, TlsMode::Disable);
    }

    #[test]
    fn a_unix_socket_never_uses_tls() {
        for url in [
            "postgresql://u@%2Ftmp%2Fsock/d",
            "postgresql://u@%2Ftmp%2Fsock/d?sslmode=require",
            "host=/tmp/sock user=u dbname=d",
        ] {
            let spec = ConnectionSpec::resolve(Some(url)).unwrap();
            assert!(matches!(spec.tls, TlsMode::Disable), "{url}");
            assert_eq!(spec.config.get_ssl_mode(), SslMode::Disable, "{url}");
        }
        let tcp = ConnectionSpec::resolve(Some("postgres://u@db.example/d")).unwrap();
        assert!(matches!(tcp.tls, TlsMode::Prefer));
    }

    #[test]
    fn unknown_sslmode_is_refused() {
        let err = ConnectionSpec::resolve(Some("postgres://u@h/d?sslmode=maybe")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
