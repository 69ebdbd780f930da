//! Diagnostics for bad input: where (file, line, column), what was expected, and what to do.
//!
//! A diagnostic renders like a compiler error: `path:line:col: error: message`, the source
//! line with a caret under the column, then a hint.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem found in an input file, located by 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The text of the offending line, shown under the message with a caret.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at a byte offset of `source`.
    pub fn at_offset(path: &Path, source: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_col(source, offset);
        Self::at_line_col(path, source, line, column, message)
    }

    /// A diagnostic at a 1-based line and column of `source`.
    pub fn at_line_col(
        path: &Path,
        source: &str,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        let line = line.max(1);
        Diagnostic {
            path: path.to_path_buf(),
            line,
            column: column.max(1),
            message: message.into(),
            hint: None,
            source_line: source.lines().nth(line - 1).map(str::to_owned),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// `path:line:col`, the location alone.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

impl Diagnostic {
    /// Renders with `label` (such as `error` or `warning[rule]`) after the location.
    pub fn render(&self, f: &mut dyn fmt::Write, label: &str) -> fmt::Result {
        write!(f, "{}: {label}: {}", self.location(), self.message)?;
        if let Some(src) = &self.source_line {
            let gutter = self.line.to_string().len();
            let caret_pad: String = src
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}^",
                "", self.line, src, "", caret_pad
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(f, "error")
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let mut boundary = offset;
    while !source.is_char_boundary(boundary) {
        boundary -= 1;
    }
    let before = &source[..boundary];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = source[line_start..boundary].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let src = "ab\ncdé\nfg";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 3), (2, 1));
        assert_eq!(line_col(src, 7), (2, 4));
        assert_eq!(line_col(src, 8), (3, 1));
        assert_eq!(line_col(src, 9), (3, 2));
        assert_eq!(line_col(src, 999), (3, 3));
    }

    #[test]
    fn renders_location_caret_and_hint() {
        let d = Diagnostic::at_line_col(Path::new("m/1.toml"), "x = 1\nbad line\n", 2, 5, "oops")
            .with_hint("fix it");
        let text = d.to_string();
        assert_eq!(
            text,
            "m/1.toml:2:5: error: oops\n  |\n2 | bad line\n  |     ^\nhint: fix it"
        );
    }
}
