//! The configuration file: `$XDG_CONFIG_HOME/seguro/config.toml` (else
//! `~/.config/seguro/config.toml`). It is optional; without it every setting has its
//! default. The format is TOML; every key is optional, and an unknown key, a wrong type
//! or a syntax error stops the program with the file, the line and what is wrong (a
//! misspelt `strict` must not silently leave strict mode off).
//!
//! ```toml
//! # Refuse to send to a verified contact whose key changed, until `/verify <user>`
//! # (compare the new safety code) or `/accept <user>`. Default: false (warn, send).
//! strict = true
//! # Keep the full-screen interface's input history (the plain text of what was
//! # typed) for the next session. Default: true.
//! history = false
//! ```
//!
//! A command-line flag (`seguro chat --strict`) turns a setting on whatever the file
//! says.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Strict mode (see the module documentation).
    #[serde(default)]
    pub strict: bool,
    /// Keep the input history on disk ([`crate::history`]).
    #[serde(default = "yes")]
    pub history: bool,
}

fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Self {
            strict: false,
            history: true,
        }
    }
}

/// Why the configuration could not be read.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub why: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config file {}: {} (the format is described in `seguro chat --help`)",
            self.path.display(),
            self.why.trim_end()
        )
    }
}

impl std::error::Error for ConfigError {}

/// Where the configuration file is looked for: `$XDG_CONFIG_HOME/seguro/config.toml`
/// if `XDG_CONFIG_HOME` is set and absolute, else `$HOME/.config/seguro/config.toml`;
/// `None` without either.
pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("seguro").join("config.toml"))
}

/// Parses configuration text (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        ConfigError {
            path: path.to_owned(),
            why: format!("{}{}", at.unwrap_or_default(), e.message().trim_end()),
        }
    })
}

/// Reads the configuration file at `path`; a missing file is the defaults.
pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
    let err = |why: String| ConfigError {
        path: path.to_owned(),
        why,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
            parse(&text, path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(err(format!("cannot read it: {e}"))),
    }
}

/// Reads the configuration file (see [`path`]).
pub fn load() -> Result<Config, ConfigError> {
    match path() {
        Some(p) => load_from(&p),
        None => Ok(Config::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/x/config.toml")
    }

    #[test]
    fn settings_and_defaults() {
        assert_eq!(parse("", p()).unwrap(), Config::default());
        assert!(!Config::default().strict);
        assert!(parse("strict = true\n", p()).unwrap().strict);
        assert!(!parse("# nothing\nstrict = false", p()).unwrap().strict);
        assert!(Config::default().history);
        assert!(parse("strict = true\n", p()).unwrap().history);
        assert!(!parse("history = false\n", p()).unwrap().history);
    }

    #[test]
    fn mistakes_are_errors_with_the_place() {
        let e = parse("strikt = true\n", p()).unwrap_err().to_string();
        assert!(e.starts_with("config file /x/config.toml: "), "{e}");
        assert!(e.contains("strikt"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let e = parse("strict = \"yes\"\n", p()).unwrap_err().to_string();
        assert!(e.contains("bool") || e.contains("boolean"), "{e}");
        let e = parse("\n\nstrict = \n", p()).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn files() {
        let dir = std::env::temp_dir().join(format!("seguro-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("config.toml");
        assert_eq!(load_from(&f).unwrap(), Config::default());
        std::fs::write(&f, b"strict = true\n").unwrap();
        assert!(load_from(&f).unwrap().strict);
        std::fs::write(&f, b"\xff\xfe").unwrap();
        assert!(load_from(&f).unwrap_err().to_string().contains("not UTF-8"));
        let e = load_from(&dir).unwrap_err().to_string();
        assert!(e.contains("cannot read it"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
