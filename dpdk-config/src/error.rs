//! The error type and the mapping from byte offsets to `line:column`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

/// A configuration file that could not be read, parsed or validated.
///
/// Displays as `{path}:{line}:{column}: {message}` (1-based line and column of the offending key
/// or value), or as `{path}: cannot read: {err}` when the file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file the error is in, as given by the caller.
    pub path: PathBuf,
    /// 1-based line of the offending key or value; 0 for an unreadable file.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value; 0 for an unreadable file.
    pub column: usize,
    /// What is wrong and what was expected, without the `path:line:column: ` prefix.
    pub message: String,
    /// The I/O error, when the file could not be read.
    #[source]
    pub io: Option<std::io::Error>,
}

impl ConfigError {
    /// An error at a 1-based `line` and `column` of `path`.
    pub fn new(path: &Path, line: usize, column: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
            io: None,
        }
    }

    /// An error for a file that could not be read.
    pub fn io(path: &Path, err: std::io::Error) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {err}"),
            io: Some(err),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.io.is_some() {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// The text being parsed, used to turn byte offsets into `line:column` errors.
pub(crate) struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str, path: &'a Path) -> Source<'a> {
        Source { text, path }
    }

    /// An error at byte `offset` of the text.
    pub(crate) fn error_at(&self, offset: usize, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, offset);
        ConfigError::new(self.path, line, column, message)
    }

    /// An error at the start of a spanned key or value.
    pub(crate) fn error<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error_at(value.span().start, message)
    }

    /// Converts an error of the `toml` deserializer, keeping its position.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span: Range<usize> = err.span().unwrap_or(0..0);
        // Keep the message on one line, and say "an integer" where serde says the Rust type that
        // `raw` happens to use for range checking.
        let lines: Vec<&str> = err.message().lines().map(str::trim).collect();
        let mut message = lines
            .join("; ")
            .replace(", expected i64", ", expected an integer");
        if message.is_empty() {
            // The parser says nothing for some ends of input (`key =` at the end of the file).
            message = match self.text[span.start.min(self.text.len())..].chars().next() {
                None => "the file ends here: expected a value".to_string(),
                Some(c) => format!("invalid TOML at {c:?}: expected a value"),
            };
        }
        self.error_at(span.start, message)
    }
}

/// 1-based line and column (counted in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn display_forms() {
        let e = ConfigError::new(Path::new("x.toml"), 3, 7, "bad");
        assert_eq!(e.to_string(), "x.toml:3:7: bad");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = ConfigError::io(Path::new("y.toml"), io);
        assert_eq!(e.to_string(), "y.toml: cannot read: gone");
    }
}
