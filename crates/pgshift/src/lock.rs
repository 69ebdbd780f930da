//! The advisory lock that keeps two pgshift runs on one database from interleaving.
//!
//! It is a session-level advisory lock on the main connection, taken with
//! `pg_try_advisory_lock` so that a second pgshift learns at once that it must wait, and who
//! holds the lock, instead of queueing silently. The server releases it when the session
//! ends, so a pgshift that was killed never leaves it behind.

use crate::error::{Error, LockHolder, Result};
use tokio_postgres::Client;

/// The two-part key: "pgsh" as a number, and the lock's purpose.
const KEY_CLASS: i32 = 0x7067_7368;
const KEY_RUNNER: i32 = 1;

/// Takes the lock, or fails with [`Error::LockHeld`] naming the session that holds it.
pub async fn acquire(client: &Client) -> Result<()> {
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&KEY_CLASS, &KEY_RUNNER],
        )
        .await?
        .try_get(0)?;
    if got {
        return Ok(());
    }
    Err(Error::LockHeld {
        holder: Box::new(holder(client).await?),
    })
}

pub async fn release(client: &Client) -> Result<()> {
    client
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&KEY_CLASS, &KEY_RUNNER],
        )
        .await?;
    Ok(())
}

/// The session holding the lock, if any: a pgshift run is under way.
pub async fn current_holder(client: &Client) -> Result<Option<LockHolder>> {
    let holder = holder(client).await?;
    Ok(holder.pid.is_some().then_some(holder))
}

async fn holder(client: &Client) -> Result<LockHolder> {
    // A two-int advisory lock shows in pg_locks with classid = key1, objid = key2, objsubid = 2.
    let row = client
        .query_opt(
            &format!(
                "SELECT a.pid, a.usename::text, a.application_name, a.client_addr::text, {}, a.state
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
               AND l.classid = $1::int::oid AND l.objid = $2::int::oid
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             LIMIT 1",
                crate::state::rfc3339_sql("a.backend_start")
            ),
            &[&KEY_CLASS, &KEY_RUNNER],
        )
        .await?;
    Ok(match row {
        Some(r) => LockHolder {
            pid: r.try_get(0)?,
            user: r.try_get(1)?,
            application_name: r.try_get(2)?,
            client_addr: r
                .try_get::<_, Option<String>>(3)?
                .or(Some("local socket".to_owned())),
            backend_start: r.try_get(4)?,
            state: r.try_get(5)?,
        },
        None => LockHolder::default(),
    })
}
