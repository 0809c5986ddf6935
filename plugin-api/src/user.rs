//! The normalized user object.

use serde::{Deserialize, Serialize};

/// The rank from which a user counts as a moderator on every platform.
pub const MODERATOR_RANK: f64 = 2.0;

/// A user as every platform describes it, so that handlers never reach into `platform_data`.
///
/// `rank` is a number because CyTube gives a channel leader rank 1.5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserData {
    /// The user's name on the platform.
    pub username: String,
    /// The user's rank (CyTube: 0 guest, 1 registered, 1.5 leader, 2 moderator, 3+ admin).
    pub rank: f64,
    /// Whether the user is marked away.
    #[serde(default)]
    pub is_afk: bool,
    /// `rank >= 2`, precomputed so every consumer agrees.
    #[serde(default)]
    pub is_moderator: bool,
    /// Whether the user is muted (shadow-muted included).
    #[serde(default)]
    pub is_muted: bool,
    /// The platform's profile (CyTube: `{image, text}`), if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<serde_json::Value>,
}

impl UserData {
    /// A user with the given name and rank, `is_moderator` derived from the rank.
    pub fn new(username: impl Into<String>, rank: f64) -> Self {
        UserData {
            username: username.into(),
            rank,
            is_afk: false,
            is_moderator: rank >= MODERATOR_RANK,
            is_muted: false,
            profile: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moderator_follows_rank() {
        assert!(!UserData::new("a", 1.5).is_moderator);
        assert!(UserData::new("b", 2.0).is_moderator);
    }
}
