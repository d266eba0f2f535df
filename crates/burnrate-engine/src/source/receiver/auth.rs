//! Who may send: bearer tokens from a file, one per line, optionally followed by the team the
//! token is bound to.
//!
//! ```text
//! # token                              team (optional)
//! 6f1c0e...                            payments
//! 9a2b77...
//! ```
//!
//! A token bound to a team books every row it sends to that team: the bound team replaces
//! whatever `team` attribute the export carries, so a client cannot charge its spend to another
//! team (a replaced attribute is counted in `burnrate_receiver_team_overrides_total`). The file
//! is read again when its content changes (a Kubernetes Secret is updated in place), checked
//! every [`RELOAD_EVERY`]; a file that no longer reads keeps the tokens last loaded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::EngineError;

/// How often the token file is checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// What a presented token grants.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    /// Sends for any team.
    Any,
    /// Sends for this team only.
    Team(Arc<str>),
}

/// Why a request was refused before its body was read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    Missing,
    Unknown,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "missing bearer token (send Authorization: Bearer <token>)",
            Refusal::Unknown => "unknown bearer token",
        }
    }
}

/// The tokens in force.
#[derive(Debug)]
pub struct AuthTokens {
    path: PathBuf,
    tokens: RwLock<Tokens>,
}

#[derive(Debug, Default)]
struct Tokens {
    grants: HashMap<Vec<u8>, Grant>,
    /// Hash of the file content they came from: a reload of the same content does nothing.
    content: u64,
}

impl AuthTokens {
    /// Reads the token file; a file that holds no token is refused, since it would lock every
    /// client out.
    pub fn load(path: &Path) -> Result<Arc<Self>, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        let tokens =
            parse(&text).map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))?;
        Ok(Arc::new(AuthTokens {
            path: path.to_path_buf(),
            tokens: RwLock::new(tokens),
        }))
    }

    /// How many tokens are in force.
    pub fn len(&self) -> usize {
        self.tokens.read().map(|t| t.grants.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the `Authorization` header's value grants, or why it grants nothing.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<Grant, Refusal> {
        let token = authorization
            .and_then(burnrate_otlp::request::bearer_token)
            .ok_or(Refusal::Missing)?;
        let tokens = self.tokens.read().map_err(|_| Refusal::Unknown)?;
        tokens.grants.get(token).cloned().ok_or(Refusal::Unknown)
    }

    /// Reads the file again if its content changed. Returns whether the tokens changed.
    pub fn reload(&self) -> bool {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), error = %error, "token file unreadable; the tokens last loaded stay in force");
                return false;
            }
        };
        let content = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        if self.tokens.read().is_ok_and(|t| t.content == content) {
            return false;
        }
        match parse(&text) {
            Ok(tokens) => {
                let count = tokens.grants.len();
                if let Ok(mut current) = self.tokens.write() {
                    *current = tokens;
                }
                tracing::info!(path = %self.path.display(), tokens = count, "token file reloaded");
                true
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), error = %error, "token file not reloaded; the tokens last loaded stay in force");
                false
            }
        }
    }

    /// Reloads the file every [`RELOAD_EVERY`] until the returned task is aborted.
    pub fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let tokens = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RELOAD_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let tokens = tokens.clone();
                let _ = tokio::task::spawn_blocking(move || tokens.reload()).await;
            }
        })
    }
}

fn parse(text: &str) -> Result<Tokens, String> {
    let mut grants = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let token = fields.next().unwrap_or_default();
        let grant = match fields.next() {
            None => Grant::Any,
            Some(team) => Grant::Team(Arc::from(team)),
        };
        if fields.next().is_some() {
            return Err(format!(
                "line {}: expected a token and at most a team name",
                number + 1
            ));
        }
        if let Grant::Team(team) = &grant
            && team.len() > super::wal::MAX_TEAM_BYTES
        {
            return Err(format!(
                "line {}: a team name is at most {} bytes",
                number + 1,
                super::wal::MAX_TEAM_BYTES
            ));
        }
        if token.len() < 16 {
            return Err(format!(
                "line {}: a token of {} characters is too easy to guess (16 at least)",
                number + 1,
                token.len()
            ));
        }
        if grants.insert(token.as_bytes().to_vec(), grant).is_some() {
            return Err(format!("line {}: the token appears twice", number + 1));
        }
    }
    if grants.is_empty() {
        return Err("no token in the file; every client would be refused".into());
    }
    Ok(Tokens {
        grants,
        content: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: &str = "0123456789abcdef-any";
    const PAYMENTS: &str = "0123456789abcdef-payments";

    fn tokens(text: &str) -> (tempfile::TempDir, Arc<AuthTokens>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, text).unwrap();
        let tokens = AuthTokens::load(&path).unwrap();
        (dir, tokens)
    }

    #[test]
    fn bearer_tokens_grant_any_team_or_their_own() {
        let (_dir, auth) = tokens(&format!(
            "# comment\n{ANY}\n\n{PAYMENTS}  payments # bound\n"
        ));
        assert_eq!(auth.len(), 2);
        let header = |token: &str| format!("Bearer {token}").into_bytes();
        assert_eq!(auth.check(Some(&header(ANY))), Ok(Grant::Any));
        assert_eq!(
            auth.check(Some(&header(PAYMENTS))),
            Ok(Grant::Team(Arc::from("payments")))
        );
        assert_eq!(
            auth.check(Some(format!("bearer\t{ANY} ").as_bytes())),
            Ok(Grant::Any)
        );
        assert_eq!(auth.check(None), Err(Refusal::Missing));
        assert_eq!(
            auth.check(Some(b"Basic dXNlcjpwYXNz")),
            Err(Refusal::Missing)
        );
        assert_eq!(
            auth.check(Some(format!("Bearer{ANY}").as_bytes())),
            Err(Refusal::Missing)
        );
        assert_eq!(auth.check(Some(b"Bearer ")), Err(Refusal::Missing));
        assert_eq!(
            auth.check(Some(&header("0123456789abcdef-other"))),
            Err(Refusal::Unknown)
        );
        assert_eq!(auth.check(Some(&header(&ANY[..10]))), Err(Refusal::Unknown));
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_tokens() {
        let (dir, auth) = tokens(&format!("{ANY}\n"));
        let path = dir.path().join("tokens");
        assert!(!auth.reload(), "same content");
        std::fs::write(&path, format!("{PAYMENTS} payments\n")).unwrap();
        assert!(auth.reload());
        assert_eq!(
            auth.check(Some(format!("Bearer {ANY}").as_bytes())),
            Err(Refusal::Unknown)
        );
        std::fs::write(&path, "short\n").unwrap();
        assert!(!auth.reload());
        assert!(
            auth.check(Some(format!("Bearer {PAYMENTS}").as_bytes()))
                .is_ok()
        );
        std::fs::remove_file(&path).unwrap();
        assert!(!auth.reload());
        assert!(
            auth.check(Some(format!("Bearer {PAYMENTS}").as_bytes()))
                .is_ok()
        );
    }

    #[test]
    fn a_file_that_would_lock_everyone_out_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        for text in [
            "",
            "# only a comment\n",
            "short\n",
            &format!("{ANY} team extra\n"),
            &format!("{ANY}\n{ANY} x\n"),
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(AuthTokens::load(&path).is_err(), "{text:?}");
        }
    }
}
