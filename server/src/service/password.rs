//! Password hashing with Argon2id (the OWASP-recommended default parameters of the `argon2` crate), run
//! off the async threads: a hash takes tens of milliseconds on purpose.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::error::Error;

/// Shortest password accepted.
pub(crate) const MIN_LENGTH: usize = 12;

/// Checks a new password of `user`: at least 12 characters, not only spaces, not the user's name.
pub(crate) fn check_new(password: &str, user: &str) -> Result<(), Error> {
    if password.chars().count() < MIN_LENGTH {
        return Err(Error::invalid(
            "password",
            format!("at least {MIN_LENGTH} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(Error::invalid("password", "at most 1024 bytes"));
    }
    if password.trim().is_empty() {
        return Err(Error::invalid("password", "not only spaces"));
    }
    if password.trim().eq_ignore_ascii_case(user.trim()) {
        return Err(Error::invalid("password", "not the user's name"));
    }
    Ok(())
}

/// Hashes at once: each holds 19 MiB (Argon2id's default memory) while it runs, and more of them than
/// cores only queue. Sign-in takes a slot of its server's own (`AppState::hashing`) without waiting and
/// answers 429 when none is free; other hashes (password changes, the command line) wait for one here.
static HASHING: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| {
        std::sync::Arc::new(tokio::sync::Semaphore::new(crate::service::context::cores()))
    });

/// A hashing slot of `hashing`, if one is free now.
pub(crate) fn slot(
    hashing: &std::sync::Arc<tokio::sync::Semaphore>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    hashing.clone().try_acquire_owned().ok()
}

/// `verify` in a slot taken with [`slot`].
pub(crate) async fn verify_in(
    slot: tokio::sync::OwnedSemaphorePermit,
    password: String,
    stored: String,
) -> Result<bool, Error> {
    let ok = verify_now(password, stored).await;
    drop(slot);
    ok
}

/// The PHC string of an Argon2id hash of `password` with a fresh salt (waiting for a slot).
pub(crate) async fn hash(password: String) -> Result<String, Error> {
    let _slot = HASHING
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    tokio::task::spawn_blocking(move || {
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        let salt = SaltString::encode_b64(&bytes)
            .map_err(|e| Error::internal(format_args!("encoding a salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(format_args!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

/// Whether `password` matches a stored PHC string (false for a malformed one), waiting for a slot.
pub(crate) async fn verify(password: String, stored: String) -> Result<bool, Error> {
    let slot = HASHING
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    verify_in(slot, password, stored).await
}

async fn verify_now(password: String, stored: String) -> Result<bool, Error> {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .map_err(|e| Error::Internal(e.into()))
}

/// A hash of a random password nobody kept, made once: verified against when the user does not exist,
/// so that sign-in takes as long for unknown users as for wrong passwords.
pub(crate) async fn dummy_hash() -> Result<String, Error> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash(crate::service::caller::new_token("dummy")))
        .await
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery".into(), h.clone())
            .await
            .expect("verify"));
        assert!(!verify("correct horse batterY".into(), h)
            .await
            .expect("verify"));
        assert!(!verify("x".into(), "not a hash".into())
            .await
            .expect("verify"));
    }

    #[test]
    fn short_blank_and_own_name_passwords_are_refused() {
        assert!(check_new("short", "ann").is_err());
        assert!(check_new("long enough!", "ann").is_ok());
        assert!(check_new("eleven char", "ann").is_err(), "12 at least");
        assert_eq!(
            check_new(&" ".repeat(12), "ann")
                .expect_err("spaces")
                .to_string(),
            "password: not only spaces"
        );
        assert!(check_new("marianne-smith", "Marianne-Smith").is_err());
    }
}
