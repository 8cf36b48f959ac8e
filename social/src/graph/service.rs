//! The rules applied before a graph write: what a valid profile is.

use super::Profile;
use crate::id::UserId;

/// A profile field out of bounds (the message names the field and its bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Empty, or over 64 characters, after trimming.
    #[error("display_name must be 1 to 64 characters")]
    DisplayName,
    /// Not an http(s) URL, or over 512 bytes.
    #[error("avatar_url must be an http(s) URL of at most 512 bytes")]
    AvatarUrl,
    /// Over 512 bytes.
    #[error("bio must be at most 512 bytes")]
    Bio,
}

/// A validated profile of `id` at `now_ms`; the display name is trimmed.
pub fn profile(
    id: UserId,
    display_name: &str,
    avatar_url: Option<String>,
    bio: Option<String>,
    now_ms: u64,
) -> Result<Profile, ProfileError> {
    let name = display_name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ProfileError::DisplayName);
    }
    if let Some(url) = &avatar_url {
        if url.len() > 512 || !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ProfileError::AvatarUrl);
        }
    }
    let bio = bio.unwrap_or_default();
    if bio.len() > 512 {
        return Err(ProfileError::Bio);
    }
    Ok(Profile {
        id,
        display_name: name.to_owned(),
        avatar_url,
        bio,
        updated_at: now_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let id = UserId(uuid::Uuid::new_v4());
        let p = profile(id, "  Ada  ", None, None, 7).unwrap();
        assert_eq!((p.display_name.as_str(), p.updated_at), ("Ada", 7));
        assert_eq!(
            profile(id, "   ", None, None, 0),
            Err(ProfileError::DisplayName)
        );
        assert_eq!(
            profile(id, &"é".repeat(65), None, None, 0),
            Err(ProfileError::DisplayName)
        );
        assert!(profile(id, &"é".repeat(64), None, None, 0).is_ok());
        assert_eq!(
            profile(id, "a", Some("ftp://x".into()), None, 0),
            Err(ProfileError::AvatarUrl)
        );
        assert_eq!(
            profile(id, "a", None, Some("x".repeat(513)), 0),
            Err(ProfileError::Bio)
        );
    }
}
