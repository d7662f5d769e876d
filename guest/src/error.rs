//! The guest's error type: one case per wfctl sentinel, mapped onto the WIT variant in lib.rs.

use std::fmt;

/// One problem with one field of one resource, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiag {
    pub resource: String,
    pub path: String,
    pub message: String,
    pub fix: String,
}

impl FieldDiag {
    pub fn new(
        resource: &str,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        FieldDiag {
            resource: resource.to_string(),
            path: path.to_string(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for FieldDiag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.resource.is_empty() {
            write!(f, "{}: {}", self.path, self.message)?;
        } else {
            write!(
                f,
                "resource `{}`: {}: {}",
                self.resource, self.path, self.message
            )?;
        }
        if !self.fix.is_empty() {
            write!(f, " (fix: {})", self.fix)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NotFound(String),
    AlreadyExists(String),
    Validation(Vec<FieldDiag>),
    RateLimited(String),
    Transient(String),
    Unauthorized(String),
    Forbidden(String),
    Unimplemented(String),
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(
        resource: &str,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Error::Validation(vec![FieldDiag::new(resource, path, message, fix)])
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound(m) => write!(f, "iac: resource not found: {m}"),
            Error::AlreadyExists(m) => write!(f, "iac: resource already exists: {m}"),
            Error::Validation(d) => {
                write!(f, "iac: validation error: ")?;
                for (i, d) in d.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{d}")?;
                }
                Ok(())
            }
            Error::RateLimited(m) => write!(f, "iac: rate limited: {m}"),
            Error::Transient(m) => write!(f, "iac: transient error: {m}"),
            Error::Unauthorized(m) => write!(f, "iac: unauthorized: {m}"),
            Error::Forbidden(m) => write!(f, "iac: forbidden: {m}"),
            Error::Unimplemented(m) => write!(f, "iac: provider method unimplemented: {m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}
