//! Long-lived tokens: how they are made, stored and looked up.
//!
//! A token is `tst_` followed by 64 random hex digits (256 bits). The server
//! never stores one: the configuration holds each token's SHA-256 (hex) and
//! its scope, and a presented token is hashed and looked up. Because the
//! lookup key is a hash of a high-entropy secret, a timing difference in the
//! map lookup tells an attacker nothing about any stored token.
//!
//! ```toml
//! [[tokens]]
//! name = "ops"
//! sha256 = "9f86d08..."
//! admin = true
//!
//! [[tokens]]
//! name = "viewer"
//! sha256 = "60303ae..."
//! projects = { web = "read", api = "write" }
//! ```
//!
//! `TERMSTREAM_ADMIN_TOKEN` may also hold one plain admin token; it is hashed
//! at start-up and never passed to sessions (their environment is built from
//! an allowlist).

use std::collections::{BTreeMap, HashMap};

pub use crate::config::tokens::{Access, TokenEntry, hash};

/// What a credential allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Projects(BTreeMap<String, Access>),
}

impl Scope {
    /// The access to `project`, if any.
    pub fn access(&self, project: &str) -> Option<Access> {
        match self {
            Scope::Admin => Some(Access::Write),
            Scope::Projects(p) => p.get(project).copied(),
        }
    }
}

/// A known token: its name (for logs and per-token limits) and scope.
#[derive(Debug, Clone)]
pub struct KnownToken {
    pub name: String,
    pub scope: Scope,
}

/// The configured tokens, by hash.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_hash: HashMap<String, KnownToken>,
}

/// Why the token configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenConfigError {
    #[error("token {name:?}: sha256 must be 64 hex digits")]
    BadHash { name: String },
    #[error("token {name:?}: give admin = true or at least one project")]
    NoScope { name: String },
}

impl TokenTable {
    pub fn new(entries: &[TokenEntry]) -> Result<TokenTable, TokenConfigError> {
        let mut by_hash = HashMap::new();
        for e in entries {
            let hash = e.sha256.trim().to_ascii_lowercase();
            let name = e.name.clone().unwrap_or_else(|| hash.chars().take(8).collect());
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(TokenConfigError::BadHash { name });
            }
            let scope = if e.admin {
                Scope::Admin
            } else if e.projects.is_empty() {
                return Err(TokenConfigError::NoScope { name });
            } else {
                Scope::Projects(e.projects.clone())
            };
            by_hash.insert(hash, KnownToken { name, scope });
        }
        Ok(TokenTable { by_hash })
    }

    /// Whether any token is configured (else the server runs without auth).
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The token `presented` is, if it is one.
    pub fn lookup(&self, presented: &str) -> Option<&KnownToken> {
        self.by_hash.get(&hash(presented))
    }
}

/// A new random token.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("tst_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let t = generate();
        let table = TokenTable::new(&[TokenEntry {
            name: None,
            sha256: hash(&t).to_uppercase(),
            admin: false,
            projects: BTreeMap::from([("web".into(), Access::Read)]),
        }])
        .unwrap();
        let known = table.lookup(&t).expect("known");
        assert_eq!(known.scope.access("web"), Some(Access::Read));
        assert_eq!(known.scope.access("api"), None);
        assert!(table.lookup(&generate()).is_none());
        assert!(table.lookup(&hash(&t)).is_none(), "the hash itself is not a credential");
    }

    #[test]
    fn bad_entries_are_refused() {
        let e = TokenEntry {
            name: None,
            sha256: "abc".into(),
            admin: true,
            projects: BTreeMap::new(),
        };
        assert!(TokenTable::new(&[e]).is_err());
        let e = TokenEntry {
            name: None,
            sha256: hash("x"),
            admin: false,
            projects: BTreeMap::new(),
        };
        assert!(TokenTable::new(&[e]).is_err());
    }
}
