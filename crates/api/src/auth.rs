//! Bearer-token authentication.
//!
//! The node creates one random token on its first `up` and keeps it in
//! `<data_dir>/api-token` with mode 0600: whoever can read the data dir can
//! already read the topo and the tablets' passwords, so the file's owner is
//! exactly the set of people the token should admit. The token is never
//! logged nor printed; `up` prints the file's path instead.

use crate::error::{ApiError, Code};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file name of the token inside the data dir.
pub const TOKEN_FILE: &str = "api-token";

/// Random bytes in a token: 256 bits, hex-encoded.
const TOKEN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold an API token (expected {} hex digits); delete it and run `keyshift up` again to make a new one", TOKEN_BYTES * 2)]
    Malformed { path: PathBuf },
}

/// The API's shared secret. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct ApiToken(Arc<str>);

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// A token from a caller that manages its own (tests, embedding).
    pub fn new(secret: impl Into<String>) -> ApiToken {
        ApiToken(Arc::from(secret.into()))
    }

    pub fn generate() -> ApiToken {
        let bytes: [u8; TOKEN_BYTES] = rand::random();
        ApiToken::new(hex::encode(bytes))
    }

    /// The secret itself, for the one place that writes it to disk and for
    /// tests; never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is, so
    /// response timing does not reveal a prefix of the token.
    pub fn matches(&self, presented: &str) -> bool {
        let a = self.0.as_bytes();
        let b = presented.as_bytes();
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Reads the node's token, creating it (mode 0600) on first use. A token
/// file readable by others is narrowed back to 0600 rather than refused:
/// the secret may already have leaked, but keeping it open helps nobody.
pub fn load_or_create(data_dir: &Path) -> Result<(ApiToken, PathBuf), TokenError> {
    let path = token_path(data_dir);
    let io = |action, source| TokenError::Io {
        action,
        path: path.clone(),
        source,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            let token = ApiToken::generate();
            f.write_all(format!("{}\n", token.expose()).as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| io("writing", e))?;
            return Ok((token, path));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating", e)),
    }
    let meta = std::fs::metadata(&path).map_err(|e| io("reading", e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("restricting", e))?;
    }
    let text = std::fs::read_to_string(&path).map_err(|e| io("reading", e))?;
    let secret = text.trim();
    if secret.len() != TOKEN_BYTES * 2 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed { path });
    }
    Ok((ApiToken::new(secret), path))
}

/// Middleware on every `/api/v1` route: `Authorization: Bearer <token>` or
/// 401, before any handler runs (so nothing is done for a bad token).
pub async fn require_token(
    State(token): State<ApiToken>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        None => Err(ApiError::new(
            Code::Unauthorized,
            "missing bearer token: send `Authorization: Bearer <token>` (the token is in <data_dir>/api-token)",
        )),
        Some(t) if !token.matches(t) => Err(ApiError::new(
            Code::Unauthorized,
            "wrong bearer token (the token is in <data_dir>/api-token)",
        )),
        Some(_) => Ok(next.run(req).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_private_and_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, path) = load_or_create(dir.path()).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(a.expose().len(), 64);
        let (b, _) = load_or_create(dir.path()).expect("reload");
        assert!(b.matches(a.expose()));
        assert!(!format!("{a:?}").contains(a.expose()));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        load_or_create(dir.path()).expect("reload");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        std::fs::write(&path, "short\n").expect("write");
        assert!(matches!(
            load_or_create(dir.path()),
            Err(TokenError::Malformed { .. })
        ));
    }

    #[test]
    fn matching_needs_the_whole_token() {
        let t = ApiToken::new("abcd");
        assert!(t.matches("abcd"));
        assert!(!t.matches("abc"));
        assert!(!t.matches("abce"));
        assert!(!t.matches(""));
    }
}
