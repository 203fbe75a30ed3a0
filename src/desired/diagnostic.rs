//! Diagnostics: what `validate` reports about a desired-state tree.
//!
//! A diagnostic names the file (relative to the tree's root), the 1-based line and column,
//! the field it concerns (a dotted TOML path, or the file name for migration files) and a
//! message that says what to do. Spans from the toml parser are byte ranges; [`SourceText`]
//! turns them into line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a diagnostic is: errors make the tree invalid, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a desired-state tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, relative to the tree's root, with `/` separators.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// The dotted TOML path of the field (`postgres.port`), or the file name for a migration.
    pub field: String,
    pub message: String,
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: ",
            self.file, self.line, self.column, self.severity
        )?;
        if !self.field.is_empty() {
            write!(f, "{}: ", one_line(&self.field))?;
        }
        f.write_str(&one_line(&self.message))
    }
}

/// A diagnostic is one line, whatever the values it quotes hold: line breaks are written as
/// `\n` and `\r`, so that every line of the text output starts with its location.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace('\n', "\\n").replace('\r', "\\r").into()
    } else {
        text.into()
    }
}

/// The text of one file with its line starts, to turn byte offsets into line and column.
#[derive(Debug, Clone)]
pub struct SourceText {
    /// The path relative to the tree's root, as shown in diagnostics.
    pub display: String,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceText {
    pub fn new(relative: &Path, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceText {
            display: display_path(relative),
            text,
            line_starts,
        }
    }

    /// The 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }
}

/// Renders a relative path with `/` separators whatever the platform.
pub fn display_path(relative: &Path) -> String {
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Collects diagnostics while a tree is read and checked.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records a diagnostic at a byte span of a source file.
    pub fn at(
        &mut self,
        severity: Severity,
        src: &SourceText,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = src.line_col(span.start);
        self.items.push(Diagnostic {
            file: src.display.clone(),
            line,
            column,
            field: field.into(),
            message: message.into(),
            severity,
        });
    }

    pub fn error(
        &mut self,
        src: &SourceText,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.at(Severity::Error, src, span, field, message);
    }

    pub fn warning(
        &mut self,
        src: &SourceText,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.at(Severity::Warning, src, span, field, message);
    }

    /// Records a diagnostic about a whole file that has no text to point into
    /// (a missing file, or a file name that breaks a rule), at line 1, column 1.
    pub fn file_error(
        &mut self,
        relative: &Path,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.items.push(Diagnostic {
            file: display_path(relative),
            line: 1,
            column: 1,
            field: field.into(),
            message: message.into(),
            severity: Severity::Error,
        });
    }

    /// Takes over every diagnostic of `other` (as from a thread that read part of a tree).
    pub fn append(&mut self, mut other: Diagnostics) {
        self.items.append(&mut other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// The diagnostics sorted by file, line and column, as they are shown.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.severity, &a.field, &a.message)
                .cmp(&(&b.file, b.line, b.column, b.severity, &b.field, &b.message))
        });
        self.items.dedup();
        self.items
    }
}

/// The diagnostics of a tree, as `validate --format json` prints them.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub format_version: u32,
    pub root: PathBuf,
    pub valid: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: &'a [Diagnostic],
}

impl<'a> Report<'a> {
    pub fn new(root: &Path, diagnostics: &'a [Diagnostic]) -> Self {
        let errors = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        Report {
            format_version: 1,
            root: root.to_path_buf(),
            valid: errors == 0,
            errors,
            warnings: diagnostics.len() - errors,
            diagnostics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let src = SourceText::new(Path::new("a.toml"), "ab\nç = 1\n\nx".to_string());
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(1), (1, 2));
        assert_eq!(src.line_col(3), (2, 1));
        // 'ç' is two bytes but one column.
        assert_eq!(src.line_col(6), (2, 3));
        assert_eq!(src.line_col(10), (3, 1));
        assert_eq!(src.line_col(11), (4, 1));
        assert_eq!(src.line_col(999), (4, 2));
    }
}
