//! Finding migration files on disk, in the order they apply, with their checksums.
//!
//! A migration is one file in the migrations folder: `.sql` (raw SQL), `.toml`, `.yaml`/`.yml`
//! or `.json`. Its name is the file name without the extension; files apply in byte order of
//! their names. Sub-folders (such as `data/`, for data migrations) and dot-files are not
//! schema migrations and are skipped.

use crate::diag::Diagnostic;
use crate::error::{Error, Result};
use crate::model::{self, Format, Migration};
use crate::sql::{self, Statement};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The kind of a migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Sql,
    Toml,
    Yaml,
    Json,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sql => "sql",
            Kind::Toml => "toml",
            Kind::Yaml => "yaml",
            Kind::Json => "json",
        }
    }

    fn from_path(path: &Path) -> Option<Kind> {
        if path.extension().and_then(|e| e.to_str()) == Some("sql") {
            return Some(Kind::Sql);
        }
        Format::from_path(path).map(|f| match f {
            Format::Toml => Kind::Toml,
            Format::Yaml => Kind::Yaml,
            Format::Json => Kind::Json,
        })
    }
}

/// A migration file as found on disk, read but not yet parsed.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub name: String,
    pub path: PathBuf,
    pub kind: Kind,
    pub source: String,
    pub checksum: String,
}

/// A migration file parsed and checked into what it will run.
#[derive(Debug, Clone)]
pub enum Body {
    Sql(Vec<Statement>),
    Operations(Migration),
}

impl MigrationFile {
    pub fn read(path: &Path) -> Result<MigrationFile> {
        let kind = Kind::from_path(path).ok_or_else(|| {
            Error::usage(
                format!("{} is not a migration file", path.display()),
                Some("migration files end in .sql, .toml, .yaml, .yml or .json"),
            )
        })?;
        let raw = read_text(path)?;
        // The checksum is of the file as it is, byte-order mark included, so that files
        // recorded before marks were stripped keep their checksums.
        let checksum = checksum(&raw);
        let source = raw
            .strip_prefix('\u{feff}')
            .map(str::to_owned)
            .unwrap_or(raw);
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        Ok(MigrationFile {
            checksum,
            name,
            path: path.to_path_buf(),
            kind,
            source,
        })
    }

    /// Parses the file and checks everything that can be checked without a database.
    pub fn parse(&self) -> Result<Body, Diagnostic> {
        match self.kind {
            Kind::Sql => sql::split(&self.path, &self.source).map(Body::Sql),
            Kind::Toml => {
                model::parse_migration(&self.path, &self.source, Format::Toml).map(Body::Operations)
            }
            Kind::Yaml => {
                model::parse_migration(&self.path, &self.source, Format::Yaml).map(Body::Operations)
            }
            Kind::Json => {
                model::parse_migration(&self.path, &self.source, Format::Json).map(Body::Operations)
            }
        }
    }
}

/// A migration file's text; one that is not UTF-8 is refused with the position of its first
/// bad byte (exit 2).
pub fn read_text(path: &Path) -> Result<String> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
        Error::Input(vec![Diagnostic::at_offset(
            path,
            &text,
            offset,
            "the file is not valid UTF-8",
        )
        .with_hint("save the file as UTF-8")])
    })
}

/// SHA-256 of the file's text with line endings normalised, so that a checkout with CRLF
/// line endings does not count as an edit.
pub fn checksum(source: &str) -> String {
    let normalised = source.replace("\r\n", "\n");
    let digest = Sha256::digest(normalised.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads every migration file in `dir`, in apply order.
pub fn discover(dir: &Path) -> Result<Vec<MigrationFile>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::usage(
                format!("the migrations folder {} does not exist", dir.display()),
                Some("create it, or point --dir at the folder that holds your migrations"),
            )
        } else {
            Error::io(format!("reading the folder {}", dir.display()), e)
        }
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            return Err(Error::usage(
                format!("{} has a file name that is not UTF-8", path.display()),
                Some("rename the file"),
            ));
        };
        if file_name.starts_with('.') || !path.is_file() || Kind::from_path(&path).is_none() {
            continue;
        }
        paths.push(path);
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let files = paths
        .iter()
        .map(|p| MigrationFile::read(p))
        .collect::<Result<Vec<_>>>()?;
    for pair in files.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(Error::usage(
                format!(
                    "{} and {} have the same migration name {:?}",
                    pair[0].path.display(),
                    pair[1].path.display(),
                    pair[0].name
                ),
                Some(
                    "a migration's name is its file name without the extension; rename one of them",
                ),
            ));
        }
    }
    Ok(files)
}

impl MigrationFile {
    /// `path:line:col: error: operation N (kind): message`, at the operation's place in the file.
    pub(crate) fn operation_diagnostic(
        &self,
        index: usize,
        kind: impl std::fmt::Display,
        message: &str,
    ) -> Diagnostic {
        let (line, col) = operation_location(&self.source, index);
        Diagnostic::at_line_col(
            &self.path,
            &self.source,
            line,
            col,
            format!("operation {} ({kind}): {message}", index + 1),
        )
    }

    /// Where field `key` with `value` is written inside the n-th operation (YAML `key: value`,
    /// TOML `key = value`, JSON `"key": value`), for pointing at the field rather than the
    /// operation; None when it cannot be found (a value on several lines, say).
    pub(crate) fn field_location(
        &self,
        index: usize,
        key: &str,
        value: &str,
    ) -> Option<(usize, usize)> {
        let source = &self.source;
        let (from, _) = operation_location(source, index);
        let to = match operation_location(source, index + 1) {
            (1, 1) => usize::MAX,
            (line, _) => line,
        };
        let first_value_line = value.lines().next().unwrap_or(value).trim();
        source
            .lines()
            .enumerate()
            .skip(from - 1)
            .take_while(|(i, _)| i + 1 < to)
            .find_map(|(i, line)| {
                let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
                let names_key = [format!("{key}:"), format!("{key} ="), format!("\"{key}\"")]
                    .iter()
                    .any(|k| trimmed.starts_with(k.as_str()));
                let col = line.find(trimmed).unwrap_or(0) + 1;
                (names_key && line.contains(first_value_line)).then_some((i + 1, col))
            })
    }
}

/// Where the n-th operation starts in the file (best effort: the n-th line that opens an
/// operation), for pointing a diagnostic at it.
fn operation_location(source: &str, index: usize) -> (usize, usize) {
    source
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
            let opens = crate::model::OPERATION_NAMES.iter().any(|k| {
                trimmed.starts_with(&format!("{k}:"))
                    || trimmed.starts_with(&format!("\"{k}\""))
                    || trimmed.starts_with(&format!("{{\"{k}\""))
                    || trimmed.starts_with(&format!("[operations.{k}]"))
            });
            opens.then(|| (i + 1, line.len() - line.trim_start().len() + 1))
        })
        .nth(index)
        .unwrap_or((1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_in_name_order_and_skips_others() {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in [
            ("0002_b.sql", "SELECT 1;"),
            ("0001_a.yaml", "operations: []"),
            ("0010_c.toml", ""),
            ("README.md", "hi"),
            (".hidden.sql", "SELECT 1;"),
        ] {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/0001_x.sql"), "SELECT 1;").unwrap();
        let names: Vec<_> = discover(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("0001_a".to_owned(), Kind::Yaml),
                ("0002_b".to_owned(), Kind::Sql),
                ("0010_c".to_owned(), Kind::Toml)
            ]
        );
    }

    #[test]
    fn same_name_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_a.sql"), "SELECT 1;").unwrap();
        std::fs::write(dir.path().join("0001_a.yaml"), "operations: []").unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn checksum_ignores_crlf_but_not_content() {
        assert_eq!(checksum("a\nb\n"), checksum("a\r\nb\r\n"));
        assert_ne!(checksum("a\nb\n"), checksum("a\nc\n"));
    }
}
