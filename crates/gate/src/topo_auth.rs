//! Gate users from the topo's `/gate/users/` records.
//!
//! The authenticator is consulted on every handshake, so lookups read an
//! in-memory map; the gate service refreshes it from the same topo watch
//! that rebuilds routing, so adding or removing a user needs no restart.

use std::collections::HashMap;
use std::sync::RwLock;

use keyshift_cluster::model::{GateUserRecord, keys};
use keyshift_topo::{Topo, TopoError};

use crate::auth::{Authenticator, PasswordHash};

/// The users the gate accepts, as last read from the topo.
#[derive(Debug, Default)]
pub struct TopoUsers {
    users: RwLock<HashMap<String, PasswordHash>>,
}

impl TopoUsers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every user record. A record that cannot be decoded or whose
    /// hash is malformed is skipped with a warning rather than failing the
    /// load: one bad record must not lock every other user out.
    pub async fn read(topo: &dyn Topo) -> Result<HashMap<String, PasswordHash>, TopoError> {
        let mut out = HashMap::new();
        for kv in topo.list(keys::GATE_USERS).await? {
            let rec: GateUserRecord = match serde_json::from_slice(&kv.value) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(key = %kv.key, "ignoring unreadable gate user record: {e}");
                    continue;
                }
            };
            match PasswordHash::parse(&rec.auth_string) {
                Ok(h) => {
                    out.insert(rec.name, h);
                }
                Err(e) => tracing::warn!(user = %rec.name, "ignoring gate user: {e}"),
            }
        }
        Ok(out)
    }

    /// Loads the users now and returns the authenticator holding them.
    pub async fn load(topo: &dyn Topo) -> Result<TopoUsers, TopoError> {
        let users = Self::read(topo).await?;
        Ok(TopoUsers {
            users: RwLock::new(users),
        })
    }

    /// Re-reads the records and swaps the map in one step.
    pub async fn refresh(&self, topo: &dyn Topo) -> Result<(), TopoError> {
        let users = Self::read(topo).await?;
        self.replace(users);
        Ok(())
    }

    pub fn replace(&self, users: HashMap<String, PasswordHash>) {
        match self.users.write() {
            Ok(mut g) => *g = users,
            Err(poisoned) => *poisoned.into_inner() = users,
        }
    }

    pub fn len(&self) -> usize {
        self.users.read().map(|g| g.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Authenticator for TopoUsers {
    fn lookup(&self, user: &str, _host: &str) -> Option<PasswordHash> {
        self.users.read().ok()?.get(user).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyshift_topo::{Cond, TopoExt};

    #[tokio::test]
    async fn reads_and_refreshes_users() {
        let topo = keyshift_topo::open("mem:").await.expect("mem topo");
        keyshift_cluster::ops::set_gate_users(
            topo.as_ref(),
            &[("app".to_string(), "secret".to_string())],
        )
        .await
        .expect("users");
        topo.put_json(
            &keys::gate_user("broken"),
            &serde_json::json!({"name": "broken", "auth_string": "nope"}),
            Cond::Any,
        )
        .await
        .expect("put");
        let users = TopoUsers::load(topo.as_ref()).await.expect("load");
        assert_eq!(
            users.lookup("app", "h"),
            Some(PasswordHash::from_password("secret"))
        );
        assert_eq!(users.lookup("broken", "h"), None);
        keyshift_cluster::ops::set_gate_users(topo.as_ref(), &[])
            .await
            .expect("users");
        users.refresh(topo.as_ref()).await.expect("refresh");
        assert!(users.is_empty());
    }
}
