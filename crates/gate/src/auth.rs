//! `mysql_native_password` authentication of gate clients.
//!
//! The gate stores what `mysql.user` stores — SHA1(SHA1(password)) — so the
//! cluster file never needs clear-text passwords, and verifies the client's
//! scramble response against it exactly as mysqld does.

use std::collections::HashMap;

use rand::Rng;
use sha1::{Digest, Sha1};

/// The only plugin the gate speaks; clients proposing another get an auth switch.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// A user's stored credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// The account has an empty password; only an empty response is accepted.
    Empty,
    /// SHA1(SHA1(password)), the `*HEX` value of `mysql.user.authentication_string`.
    Native([u8; 20]),
}

/// A stored hash could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a mysql_native_password hash (expected '*' and 40 hex digits): {0:?}")]
pub struct BadHash(pub String);

impl PasswordHash {
    pub fn from_password(password: &str) -> Self {
        if password.is_empty() {
            return PasswordHash::Empty;
        }
        let stage1 = Sha1::digest(password.as_bytes());
        PasswordHash::Native(Sha1::digest(stage1).into())
    }

    /// Parses the `*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9` form (or "" for
    /// an empty password), as `PASSWORD()` prints it.
    pub fn parse(s: &str) -> Result<Self, BadHash> {
        if s.is_empty() {
            return Ok(PasswordHash::Empty);
        }
        let hex = s.strip_prefix('*').ok_or_else(|| BadHash(s.into()))?;
        if hex.len() != 40 {
            return Err(BadHash(s.into()));
        }
        let mut out = [0u8; 20];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(
                hex.get(2 * i..2 * i + 2).ok_or_else(|| BadHash(s.into()))?,
                16,
            )
            .map_err(|_| BadHash(s.into()))?;
        }
        Ok(PasswordHash::Native(out))
    }

    pub fn to_mysql_string(&self) -> String {
        match self {
            PasswordHash::Empty => String::new(),
            PasswordHash::Native(h) => {
                let mut s = String::from("*");
                for b in h {
                    s.push_str(&format!("{b:02X}"));
                }
                s
            }
        }
    }

    /// Checks a client's `mysql_native_password` response to `scramble`.
    /// response = SHA1(pw) XOR SHA1(scramble || SHA1(SHA1(pw))), so
    /// SHA1(response XOR SHA1(scramble || stored)) must equal stored.
    pub fn verify(&self, scramble: &[u8], response: &[u8]) -> bool {
        match self {
            PasswordHash::Empty => response.is_empty(),
            PasswordHash::Native(stored) => {
                if response.len() != 20 {
                    return false;
                }
                let mut h = Sha1::new();
                h.update(scramble);
                h.update(stored);
                let mask = h.finalize();
                let mut stage1 = [0u8; 20];
                for i in 0..20 {
                    stage1[i] = response[i] ^ mask[i];
                }
                let candidate: [u8; 20] = Sha1::digest(stage1).into();
                // constant-time compare
                candidate
                    .iter()
                    .zip(stored)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
        }
    }
}

/// Where the gate looks up users. Implementations are shared by all
/// connections, so lookups must be cheap and non-blocking (an in-memory map
/// refreshed from the topo, typically).
pub trait Authenticator: Send + Sync {
    /// The stored credential of `user` connecting from `host`, or `None` when
    /// no such account exists (the client then gets the same 1045 as for a
    /// wrong password, as MySQL does).
    fn lookup(&self, user: &str, host: &str) -> Option<PasswordHash>;
}

/// A fixed user table, for tests, benchmarks and single-file clusters.
#[derive(Debug, Clone, Default)]
pub struct StaticUsers {
    users: HashMap<String, PasswordHash>,
}

impl StaticUsers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_user(mut self, user: &str, password: &str) -> Self {
        self.users
            .insert(user.to_string(), PasswordHash::from_password(password));
        self
    }

    pub fn insert(&mut self, user: &str, hash: PasswordHash) {
        self.users.insert(user.to_string(), hash);
    }
}

impl Authenticator for StaticUsers {
    fn lookup(&self, user: &str, _host: &str) -> Option<PasswordHash> {
        self.users.get(user).cloned()
    }
}

/// A fresh 20-byte scramble. Bytes are printable ASCII without '$' (MySQL
/// keeps them 7-bit and NUL-free because the handshake sends the scramble as
/// a NUL-terminated string; some clients also treat it as text).
pub fn new_scramble() -> [u8; 20] {
    let mut rng = rand::rng();
    let mut s = [0u8; 20];
    for b in s.iter_mut() {
        loop {
            let c: u8 = rng.random_range(0x21..=0x7E);
            if c != b'$' {
                *b = c;
                break;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hash() {
        // SELECT PASSWORD('password') in MySQL 5.7 / MariaDB
        let h = PasswordHash::from_password("password");
        assert_eq!(
            h.to_mysql_string(),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        assert_eq!(PasswordHash::parse(&h.to_mysql_string()).unwrap(), h);
        assert!(PasswordHash::parse("*12").is_err());
    }

    #[test]
    fn verify_scramble() {
        let scramble = new_scramble();
        let resp = mysql_common::scramble::scramble_native(&scramble, b"secret").unwrap();
        let h = PasswordHash::from_password("secret");
        assert!(h.verify(&scramble, &resp));
        assert!(!h.verify(&scramble, &[0u8; 20]));
        assert!(!h.verify(&scramble, &[]));
        assert!(PasswordHash::Empty.verify(&scramble, &[]));
        assert!(!PasswordHash::Empty.verify(&scramble, &resp));
        assert!(
            scramble
                .iter()
                .all(|&b| (0x21..=0x7e).contains(&b) && b != b'$')
        );
    }
}
