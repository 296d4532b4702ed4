//! The configuration's tokens: each one's hash and scope, as the
//! `[[tokens]]` tables of the configuration file hold them. The tokens
//! themselves, and how a presented one is checked, are [`crate::auth::token`]'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a credential allows on one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// List, attach, read output and snapshots.
    Read,
    /// Everything `read` allows, plus create, input, resize, terminate, delete.
    Write,
}

/// One configured token (by hash) and its scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A name for logs; the hash prefix when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
    /// Everything, on every project, plus publishing events without a project.
    #[serde(default)]
    pub admin: bool,
    /// Projects this token may use, and how.
    #[serde(default)]
    pub projects: BTreeMap<String, Access>,
}

/// SHA-256 of a token, as lowercase hex.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
