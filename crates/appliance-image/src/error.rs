//! The crate's one error type.
//!
//! Variants a caller branches on are typed: a missing host tool
//! ([`Error::MissingTools`], the CLI's exit status 3) and the format,
//! spec and layout errors of the crates below. Everything else is a message
//! with its context chain ([`Error::Context`]), the way the build has always
//! reported a failing step: `step \`fetch\` failed: cannot read ...: No such
//! file or directory`. The chain is part of `Display`, so printing the
//! error prints all of it.

use std::fmt;

/// A host program and the Debian package that installs it.
pub use host_tools::Tool;

/// What went wrong in a build, a fetch or an audit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Host programs a step needs are not installed.
    #[error(
        "missing host tools {why}: {}; install them with `apt-get install {}`",
        names(tools, |t| t.file),
        packages(tools)
    )]
    MissingTools {
        /// What they are needed for.
        why: String,
        /// The missing ones.
        tools: Vec<Tool>,
    },
    /// An I/O error without a path (the caller adds one as context).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The spec does not parse or validate.
    #[error(transparent)]
    Spec(#[from] appliance_spec::SpecError),
    /// A module order the layout refuses.
    #[error(transparent)]
    ModulesOrder(#[from] image_layout::ModulesOrderError),
    /// An ELF file could not be read.
    #[error(transparent)]
    Elf(#[from] image_formats::elf::ElfError),
    /// A cpio archive could not be written or read.
    #[error(transparent)]
    Cpio(#[from] image_formats::cpio::CpioError),
    /// The UKI could not be built or read.
    #[error(transparent)]
    Pe(#[from] image_formats::pe::PeError),
    /// The disk's partition table could not be written or read.
    #[error(transparent)]
    Gpt(#[from] image_formats::gpt::GptError),
    /// The ESP's filesystem could not be written or read.
    #[error(transparent)]
    Fat(#[from] image_formats::fat::FatError),
    /// A GCE archive could not be written or checked.
    #[error(transparent)]
    GceTar(#[from] image_formats::gcetar::GceTarError),
    /// `manifest.json` could not be written or read.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A size or offset does not fit where it must go.
    #[error(transparent)]
    Int(#[from] std::num::TryFromIntError),
    /// A value that does not parse: TOML, a number, UTF-8, a C string, a
    /// path prefix.
    #[error(transparent)]
    Parse(Box<dyn std::error::Error + Send + Sync>),
    /// Anything else, as a sentence.
    #[error("{0}")]
    Msg(String),
    /// An error and what was being done when it happened.
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// What went wrong.
        source: Box<Error>,
    },
}

macro_rules! parse_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Parse(Box::new(e))
            }
        }
    )*};
}

parse_errors!(
    toml::de::Error,
    std::num::ParseIntError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::ffi::NulError,
    std::path::StripPrefixError
);

fn names(tools: &[Tool], f: impl Fn(&Tool) -> &str) -> String {
    let v: Vec<&str> = tools.iter().map(f).collect();
    v.join(", ")
}

fn packages(tools: &[Tool]) -> String {
    let mut v: Vec<&str> = tools.iter().map(|t| t.package).collect();
    v.sort_unstable();
    v.dedup();
    v.join(" ")
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error that is only a message.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error::Msg(message.to_string())
    }

    /// This error, with what was being done when it happened.
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error::Context {
            context: context.to_string(),
            source: Box::new(self),
        }
    }

    /// The error under every [`Error::Context`].
    #[must_use]
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// The missing host tools, if that is what this error is about.
    #[must_use]
    pub fn missing_tools(&self) -> Option<&[Tool]> {
        match self.root() {
            Error::MissingTools { tools, .. } => Some(tools),
            _ => None,
        }
    }

    /// A program could not be started: [`Error::MissingTools`] when it is
    /// not installed, else the I/O error with the program's name.
    pub fn spawn(tool: Tool, err: std::io::Error) -> Error {
        if err.kind() == std::io::ErrorKind::NotFound {
            Error::MissingTools {
                why: format!("(`{}` could not be started)", tool.file),
                tools: vec![tool],
            }
        } else {
            Error::Io(err).context(format!("cannot start `{}`", tool.file))
        }
    }
}

/// Context for results and options, as `anyhow::Context` gives it.
pub(crate) trait Context<T> {
    /// Wraps the error (or a `None`) with `context`.
    fn context<C: fmt::Display>(self, context: C) -> Result<T>;
    /// Wraps the error (or a `None`) with a context made only on failure.
    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context<C: fmt::Display>(self, context: C) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context<C: fmt::Display>(self, context: C) -> Result<T> {
        self.ok_or_else(|| Error::msg(context))
    }

    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.ok_or_else(|| Error::msg(f()))
    }
}

/// `return Err(Error::Msg(format!(...)))`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::msg(format!($($arg)*)))
    };
}

/// `bail!` unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::error::bail!($($arg)*);
        }
    };
}

/// An [`Error::Msg`] from a format string.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::Error::msg(format!($($arg)*))
    };
}

pub(crate) use {bail, ensure, err};

/// Fails with [`Error::MissingTools`] naming every tool of `tools` that is
/// not on this host.
pub fn require_tools(tools: &[Tool], why: &str) -> Result<()> {
    let missing = missing_tools(tools);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingTools {
            why: why.to_owned(),
            tools: missing,
        })
    }
}

/// The tools of `tools` that are not on this host.
pub use host_tools::missing_tools;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_printed_and_the_root_found() {
        let e = Error::MissingTools {
            why: "to build".into(),
            tools: vec![
                Tool {
                    file: "make",
                    package: "build-essential",
                },
                Tool {
                    file: "cc",
                    package: "build-essential",
                },
                Tool {
                    file: "dpkg-deb",
                    package: "dpkg",
                },
            ],
        }
        .context("step `x` failed");
        assert_eq!(
            e.to_string(),
            "step `x` failed: missing host tools to build: make, cc, dpkg-deb; \
             install them with `apt-get install build-essential dpkg`"
        );
        assert_eq!(e.missing_tools().map(<[Tool]>::len), Some(3));
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let tool = Tool {
            file: "mkfs.ext4",
            package: "e2fsprogs",
        };
        assert!(Error::spawn(tool, io).missing_tools().is_some());
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(Error::spawn(tool, denied).missing_tools().is_none());
        assert!(missing_tools(&[Tool {
            file: "sh",
            package: "dash"
        }])
        .is_empty());
        let absent = Tool {
            file: "/nonexistent/tool",
            package: "none",
        };
        assert_eq!(missing_tools(&[absent]), [absent]);
    }
}
