//! Validated identifiers.
//!
//! Ids travel in URLs, JSON and file names (a session's directory under the
//! data dir is named after its id), so they are restricted to a safe alphabet:
//! ASCII letters, digits, `-`, `_`, `.` and `:`, 1 to 128 characters, not
//! starting with `.`. Validation happens once, at deserialization; code that
//! holds a `SessionId` may rely on it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_ID_LEN`].
    TooLong { len: usize },
    /// The id holds a character outside the safe alphabet, or starts with `.`.
    BadChar { ch: char },
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => write!(f, "id must not be empty"),
            IdError::TooLong { len } => {
                write!(f, "id is {len} bytes long; at most {MAX_ID_LEN} are allowed")
            }
            IdError::BadChar { ch } => write!(
                f,
                "id holds {ch:?}; only ASCII letters, digits, '-', '_', '.' and ':' are allowed, and it must not start with '.'"
            ),
        }
    }
}

impl std::error::Error for IdError {}

fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: s.len() });
    }
    if s.starts_with('.') {
        return Err(IdError::BadChar { ch: '.' });
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        Some(ch) => Err(IdError::BadChar { ch }),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` against the id alphabet.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate(&s)?;
                Ok(Self(s))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                String::schema()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A session's id: given by the client at creation, or generated.
    SessionId
);
id_type!(
    /// A project groups sessions; scopes and focus sets are per project.
    ProjectId
);

impl Default for ProjectId {
    fn default() -> Self {
        ProjectId("default".to_owned())
    }
}

/// The epoch of a session's output log: random, fixed for the life of that
/// log. A client that stored `(epoch, offset)` can tell whether the log it
/// resumes is the one it knew; offsets of different epochs are unrelated.
/// Written as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Epoch {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Epoch)
    }
}

impl Serialize for Epoch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("epoch must be 16 hex digits"))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Epoch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        String::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Epoch {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(SessionId::new("build-42_a.b:c").is_ok());
        assert_eq!(SessionId::new(""), Err(IdError::Empty));
        assert_eq!(SessionId::new("../etc"), Err(IdError::BadChar { ch: '.' }));
        assert_eq!(SessionId::new("a/b"), Err(IdError::BadChar { ch: '/' }));
        assert_eq!(SessionId::new("x".repeat(129)), Err(IdError::TooLong { len: 129 }));
        let err = serde_json::from_str::<SessionId>("\"a b\"").unwrap_err();
        assert!(err.to_string().contains("only ASCII letters"), "{err}");
    }

    #[test]
    fn epoch_round_trips_as_hex() {
        let e = Epoch(0xdead_beef);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, "\"00000000deadbeef\"");
        assert_eq!(serde_json::from_str::<Epoch>(&json).unwrap(), e);
        assert!(serde_json::from_str::<Epoch>("\"zz\"").is_err());
    }
}
