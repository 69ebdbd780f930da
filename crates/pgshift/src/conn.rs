//! Connecting to PostgreSQL: where the settings come from, TLS, and how a connection is
//! described in output without ever showing its password.
//!
//! Settings come from `--database-url` / `DATABASE_URL` (an empty value counts as unset),
//! else from the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD,
//! PGSSLMODE, PGAPPNAME). libpq fills what a URL leaves out from the same variables, and so
//! does pgshift. `sslmode` follows libpq: disable, prefer and require encrypt without
//! checking the server's certificate; verify-ca and verify-full check it (both check the host
//! name too) against `sslrootcert` if given, else the Mozilla root set.
//!
//! A password missing from the URL and PGPASSWORD is looked up in the password file
//! (`PGPASSFILE`, else `~/.pgpass`) as libpq does. `connect_timeout` (URL, or
//! PGCONNECT_TIMEOUT; default 10 s, 0 waits forever) bounds the whole connection, startup
//! and authentication included: tokio-postgres bounds only the TCP connect, and a server
//! that accepts and never answers would otherwise hang every command.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
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
    /// The limit on a whole connection attempt; None waits forever (`connect_timeout=0`).
    timeout: Option<Duration>,
    /// The parameters the URL or keyword/value string gave besides where to connect and as
    /// whom (application_name, options, sslmode, ...), decoded, in their order: a client
    /// URL made from this connection keeps them.
    params: Vec<(String, String)>,
}

/// The connect timeout when neither the URL nor PGCONNECT_TIMEOUT sets one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
        let params = url.map(connection_params).unwrap_or_default();
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
            } else if let Some(pw) = password_from_file(&config) {
                config.password(pw);
            }
        }
        // Read from the parameters, not the parsed config: tokio-postgres drops an explicit 0.
        let given = params
            .iter()
            .find(|(k, _)| k == "connect_timeout")
            .map(|(_, v)| ("connect_timeout", v.clone()))
            .or_else(|| env("PGCONNECT_TIMEOUT").map(|v| ("PGCONNECT_TIMEOUT", v)));
        let timeout = match given {
            Some((name, v)) => Some(Duration::from_secs(v.trim().parse().map_err(|_| {
                Error::usage(
                    format!("{name}={v:?} is not a whole number of seconds"),
                    Some("give connect_timeout in whole seconds, or 0 to wait forever"),
                )
            })?)),
            None => Some(DEFAULT_CONNECT_TIMEOUT),
        }
        // libpq: 0 means no limit, and anything shorter than 2 s is taken as 2 s.
        .filter(|t| !t.is_zero())
        .map(|t| t.max(Duration::from_secs(2)));
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
        Ok(ConnectionSpec {
            config,
            tls,
            timeout,
            params,
        })
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

    /// A URL for clients of a version: this connection (without its password) with every
    /// parameter it was given, and `-c search_path=schema` added to its `options`. `None`
    /// leaves the search_path alone.
    pub fn url_with_search_path(&self, schema: Option<&str>) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    Host::Tcp(h) => url_encode(h),
                    Host::Unix(p) => url_encode(&p.display().to_string()),
                };
                let ports = self.config.get_ports();
                match ports.get(i).or(ports.first()) {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                }
            })
            .collect();
        let mut params: Vec<(String, String)> = self.params.clone();
        if let Some(schema) = schema {
            // A backslash escapes a space inside one -c value, as libpq's options parser reads it.
            let set = format!(
                "-c search_path={}",
                crate::quote::ident(schema)
                    .replace('\\', "\\\\")
                    .replace(' ', "\\ ")
            );
            match params.iter_mut().find(|(k, _)| k == "options") {
                Some((_, v)) if !v.trim().is_empty() => *v = format!("{v} {set}"),
                Some((_, v)) => *v = set,
                None => params.insert(0, ("options".to_owned(), set)),
            }
        }
        if !params.iter().any(|(k, _)| k == "sslmode") {
            match self.tls {
                TlsMode::Disable => params.push(("sslmode".to_owned(), "disable".to_owned())),
                TlsMode::Require => params.push(("sslmode".to_owned(), "require".to_owned())),
                TlsMode::VerifyFull { .. } => {
                    params.push(("sslmode".to_owned(), "verify-full".to_owned()))
                }
                TlsMode::Prefer => {}
            }
        }
        let mut url = format!(
            "postgresql://{}@{}/{}",
            url_encode(self.config.get_user().unwrap_or("")),
            hosts.join(","),
            url_encode(self.config.get_dbname().unwrap_or(""))
        );
        for (i, (k, v)) in params.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("{}={}", url_encode(k), url_encode(v)));
        }
        url
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("")
    }

    pub fn application_name(&self) -> &str {
        self.config.get_application_name().unwrap_or("pgshift")
    }

    /// Opens a connection; its driver task runs on the current tokio runtime. Gives up after
    /// the connect timeout, naming the host.
    pub async fn connect(&self) -> Result<Client> {
        self.connect_with(None).await
    }

    /// A connection for a command that promises to change nothing (plan, status, latest):
    /// every transaction on it is read-only, so that a user expression it evaluates (an
    /// `up` calling `nextval()`) cannot write either.
    pub async fn connect_read_only(&self) -> Result<Client> {
        let client = self.connect().await?;
        client
            .batch_execute("SET default_transaction_read_only = on")
            .await?;
        Ok(client)
    }

    /// A connection whose server notices and warnings (RAISE NOTICE, "identifier will be
    /// truncated", deprecation warnings) are kept in [`Notices`] for the caller to show.
    pub async fn connect_with_notices(&self) -> Result<(Client, Notices)> {
        let notices = Notices::default();
        let client = self.connect_with(Some(notices.clone())).await?;
        Ok((client, notices))
    }

    /// Every connection goes through here, under the connect timeout.
    async fn connect_with(&self, notices: Option<Notices>) -> Result<Client> {
        let Some(limit) = self.timeout else {
            return self.connect_now_with(notices).await;
        };
        match tokio::time::timeout(limit, self.connect_now_with(notices)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                target: self.describe(),
                message: format!(
                    "no answer from the server within {} s (connect_timeout)",
                    limit.as_secs()
                ),
                hint: "check that the host and port are those of a PostgreSQL server and that nothing between drops the connection; raise the limit with ?connect_timeout=N in the URL or PGCONNECT_TIMEOUT".to_owned(),
            }),
        }
    }

    async fn connect_now_with(&self, notices: Option<Notices>) -> Result<Client> {
        let client = match &self.tls {
            TlsMode::Disable => {
                let (client, conn) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(|e| self.connect_error(e))?;
                tokio::spawn(drive(conn, notices));
                client
            }
            mode => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_config(mode)?);
                let (client, conn) = self
                    .config
                    .connect(tls)
                    .await
                    .map_err(|e| self.connect_error(e))?;
                tokio::spawn(drive(conn, notices));
                client
            }
        };
        // pgshift reads and copies every row or none: a policy that would hide rows from
        // its role makes its statements fail instead of filtering them silently.
        client
            .batch_execute("SET row_security = off")
            .await
            .map_err(|e| self.connect_error(e))?;
        Ok(client)
    }

    fn connect_error(&self, e: tokio_postgres::Error) -> Error {
        let message = crate::error::pg_error_text(&e);
        let hint = if message.contains("password missing") {
            format!(
                "the server asks for a password for user {:?} and none was given: set PGPASSWORD, put it in the URL, or add a line host:port:database:user:password to ~/.pgpass (or the file PGPASSFILE names)",
                self.config.get_user().unwrap_or("")
            )
        } else {
            "check that the server is up and the connection settings (--database-url, DATABASE_URL, or PGHOST, PGPORT, PGUSER, PGDATABASE)".to_owned()
        };
        Error::Connect {
            target: self.describe(),
            message,
            hint,
        }
    }
}

/// The notices and warnings a server sent on one connection, oldest first, until taken.
#[derive(Clone, Default)]
pub struct Notices(Arc<std::sync::Mutex<Vec<Notice>>>);

/// One NOTICE or WARNING (or INFO) from the server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Notice {
    pub severity: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Notices {
    /// At most this many are kept between two takes: a statement that raises a notice per
    /// row must not grow memory without bound.
    const KEPT: usize = 100;

    pub fn take(&self) -> Vec<Notice> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    fn push(&self, notice: Notice) {
        if let Ok(mut v) = self.0.lock() {
            if v.len() < Self::KEPT {
                v.push(notice);
            }
        }
    }
}

/// Runs a connection until it closes, keeping its notices when asked to.
async fn drive<S, T>(mut conn: tokio_postgres::Connection<S, T>, notices: Option<Notices>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio_postgres::tls::TlsStream + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    use futures_util::StreamExt;
    while let Some(message) = messages.next().await {
        match message {
            Ok(tokio_postgres::AsyncMessage::Notice(n)) => {
                if let Some(notices) = &notices {
                    notices.push(Notice {
                        severity: n.severity().to_owned(),
                        message: n.message().to_owned(),
                        hint: n.hint().map(str::to_owned),
                    });
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `%XX` decoded (an invalid escape is kept as written).
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parameters of a URL's query or of a keyword/value string, decoded, except those
/// that say where to connect and as whom (a client URL carries those in its base) and the
/// password (never repeated).
fn connection_params(url: &str) -> Vec<(String, String)> {
    const BASE: &[&str] = &[
        "host", "hostaddr", "port", "user", "dbname", "password", "passfile",
    ];
    let pairs: Vec<(String, String)> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.split_once('?')
                .map(|(_, query)| {
                    query
                        .split('&')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or((p, ""));
                            (url_decode(k), url_decode(v))
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            keyword_values(url)
        };
    pairs
        .into_iter()
        .filter(|(k, _)| !BASE.contains(&k.as_str()))
        .collect()
}

/// `key=value key='quoted value'` pairs, as libpq reads them (`\\` escapes inside quotes).
fn keyword_values(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            return out;
        }
        while chars.next_if(|c| c.is_whitespace() || *c == '=').is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        out.push((key, value));
    }
}

/// The password for the first host of `config` from the password file, as libpq reads it:
/// `PGPASSFILE`, else `~/.pgpass`; lines `host:port:database:user:password` with `*` for any
/// and `\\` escaping `:` and `\\`; the first matching line wins. A file that others can read
/// is ignored, as libpq does (it warns on standard error).
fn password_from_file(config: &Config) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    password_in(&path, config)
}

fn password_in(path: &Path, config: &Config) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: password file {} has group or world access; permissions should be u=rw (0600) or less",
                path.display()
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(path).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        // libpq matches a socket in the default directory as "localhost".
        Some(Host::Unix(p)) if p == Path::new("/var/run/postgresql") || p == Path::new("/tmp") => {
            "localhost".to_owned()
        }
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let wanted = [
        host.as_str(),
        port.as_str(),
        config.get_dbname().unwrap_or(""),
        config.get_user().unwrap_or(""),
    ];
    text.lines().find_map(|line| {
        if line.trim_start().starts_with('#') {
            return None;
        }
        let fields = pgpass_fields(line);
        if fields.len() < 5 {
            return None;
        }
        let matches = fields[..4]
            .iter()
            .zip(wanted)
            .all(|(have, want)| have == "*" || have == want);
        matches.then(|| fields[4].clone())
    })
}

/// A password-file line as its five fields: split on unescaped `:` (the password, last, is
/// the rest of the line), with `\\:` and `\\\\` unescaped.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
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
        // The cause names the bad option (tokio-postgres's own message does not); the URL
        // itself is not repeated because it may carry a password.
        let cause = std::error::Error::source(&e)
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        Error::usage(
            format!("the database URL does not parse: {e}{cause}"),
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
    fn a_bad_connection_option_is_named() {
        for (url, named) in [
            ("postgres://u@h/d?frobnicate=1", "frobnicate"),
            ("postgres://u@h:abc/d", "port"),
            ("host=h bogus=1", "bogus"),
        ] {
            let err = ConnectionSpec::resolve(Some(url)).unwrap_err().to_string();
            assert!(err.contains(named), "{url}: {err}");
        }
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
    fn password_file_lines_split_on_unescaped_colons() {
        assert_eq!(
            pgpass_fields(r"db\:1:5432:*:app:pa\:ss:word\\"),
            vec!["db:1", "5432", "*", "app", "pa:ss:word\\"]
        );
        assert_eq!(pgpass_fields("a:b").len(), 2);
    }

    #[test]
    fn the_password_file_gives_the_first_matching_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(
            &path,
            "# comment\nother:5432:*:app:wrong\ndb.example:6543:shop:app:right\n*:*:*:app:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = |url: &str| parse_url(url).unwrap().0;
        let pw = password_in(&path, &config("postgres://app@db.example:6543/shop"));
        assert_eq!(pw.as_deref(), Some("right"));
        let pw = password_in(&path, &config("postgres://app@db.example/shop"));
        assert_eq!(
            pw.as_deref(),
            Some("fallback"),
            "port 5432 does not match 6543"
        );
        assert_eq!(
            password_in(&path, &config("postgres://bob@db.example/shop")),
            None
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let pw = password_in(&path, &config("postgres://app@db.example:6543/shop"));
        assert_eq!(pw, None, "a file others can read is ignored, as libpq does");
    }

    #[test]
    fn connect_timeout_comes_from_the_url_or_defaults_to_ten_seconds() {
        let spec = ConnectionSpec::resolve(Some("postgres://u@h/d?connect_timeout=5")).unwrap();
        assert_eq!(spec.timeout, Some(Duration::from_secs(5)));
        let spec = ConnectionSpec::resolve(Some("postgres://u@h/d?connect_timeout=1")).unwrap();
        assert_eq!(
            spec.timeout,
            Some(Duration::from_secs(2)),
            "libpq's minimum"
        );
        let spec = ConnectionSpec::resolve(Some("postgres://u@h/d?connect_timeout=0")).unwrap();
        assert_eq!(spec.timeout, None);
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            let spec = ConnectionSpec::resolve(Some("postgres://u@h/d")).unwrap();
            assert_eq!(spec.timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        }
    }

    #[test]
    fn client_urls_keep_every_parameter_and_add_to_options() {
        let spec = ConnectionSpec::resolve(Some(
            "postgres://app:pw@db.example:6543/shop?application_name=web&options=-c%20statement_timeout%3D5s&connect_timeout=3",
        ))
        .unwrap();
        let url = spec.url_with_search_path(Some("public_0002 x"));
        assert!(!url.contains("pw"), "{url}");
        assert_eq!(
            url,
            "postgresql://app@db.example:6543/shop?application_name=web&options=-c%20statement_timeout%3D5s%20-c%20search_path%3D%22public_0002%5C%20x%22&connect_timeout=3"
        );
        assert_eq!(
            spec.url_with_search_path(None),
            "postgresql://app@db.example:6543/shop?application_name=web&options=-c%20statement_timeout%3D5s&connect_timeout=3"
        );
        let spec = ConnectionSpec::resolve(Some(
            "host=h port=5433 user=u dbname=d password=secret options='-c lock_timeout=1s' sslmode=disable",
        ))
        .unwrap();
        assert_eq!(
            spec.url_with_search_path(Some("v2")),
            "postgresql://u@h:5433/d?options=-c%20lock_timeout%3D1s%20-c%20search_path%3D%22v2%22&sslmode=disable"
        );
    }

    #[test]
    fn unknown_sslmode_is_refused() {
        let err = ConnectionSpec::resolve(Some("postgres://u@h/d?sslmode=maybe")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
