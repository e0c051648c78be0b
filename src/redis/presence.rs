//! This process's hold on its `server.instance_id` in Redis (the `instance:<id>` key): taken at
//! startup ([`Redis::join`]), renewed by each of the watcher's pings, given back at a clean stop
//! ([`Redis::leave`]). Apart from the claims and the limit because it is about who runs, not about
//! what a request may do: two live processes under one name are refused, and one found while
//! running is a warning.

use std::time::Duration;

use redis::ScriptInvocation;

use super::{NoAnswer, Redis, Unavailable, PRESENCE, PRESENCE_TTL, RELEASE};

/// Another live process holds this instance's id in Redis: this one must not start under it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "instance id `{instance}`{} is in use by another running stagehook ({holder}) that shares {shown_url}: \
     give each instance its own server.instance_id (in [server], or STAGEHOOK_SERVER_INSTANCE_ID)",
    if *.default_name { ", the host name, as server.instance_id is not set" } else { "" }
)]
pub struct NameTaken {
    pub instance: String,
    /// The holder, as its presence names it: `host <host>, pid <pid>`.
    pub holder: String,
    shown_url: String,
    default_name: bool,
}

impl Redis {
    /// Takes this instance's id for this process at startup, before it serves. A process that
    /// holds it and still renews it is alive: then [`NameTaken`]. One that stopped cleanly gave it
    /// back; one that was killed holds it until it expires, at most [`PRESENCE_TTL`] from now, and
    /// this waits for that, so that a restart under the same name is not refused. A Redis that
    /// does not answer is no reason to wait: the watcher takes the id once it answers.
    pub async fn join(&self) -> Result<(), NameTaken> {
        let mut deadline = None;
        loop {
            let held = match self.call::<(i64, String, i64)>(&self.presence_call()).await {
                Ok((1, _, _)) | Err(Unavailable) => return Ok(()),
                Ok((_, held, ttl_ms)) => (held, Duration::from_millis(ttl_ms.max(0) as u64)),
            };
            let (holder, ttl) = held;
            let now = tokio::time::Instant::now();
            // Waited for one whole expiry of the holder's presence, and it was renewed: alive.
            let until = *deadline.get_or_insert_with(|| {
                tracing::warn!(instance = %self.instance, holder = %shown_holder(&holder), "the instance id is held by another process; waiting up to {} ms for it to expire, as a killed one's does", ttl.as_millis());
                now + ttl + Duration::from_millis(250)
            });
            if now >= until {
                return Err(NameTaken {
                    instance: self.instance.clone(),
                    holder: shown_holder(&holder),
                    shown_url: self.shown_url.clone(),
                    default_name: self.instance == self.host,
                });
            }
            tokio::time::sleep((ttl + Duration::from_millis(20)).min(until - now)).await;
        }
    }

    /// Gives this instance's id back when the process stops, if it still holds it, so that a
    /// restart need not wait for it to expire. A Redis that does not answer is no reason to wait.
    pub async fn leave(&self) {
        let mut call = RELEASE.key(&self.presence_key);
        call.arg(&self.presence);
        let call = &call;
        let _ = self.resent_once(|mut conn| async move { call.invoke_async::<i64>(&mut conn).await }).await;
    }

    fn presence_call(&self) -> ScriptInvocation<'static> {
        let mut call = PRESENCE.key(&self.presence_key);
        call.arg(&self.presence).arg(PRESENCE_TTL.as_millis() as u64);
        call
    }

    /// What the watcher found holding this instance's id, each time it changes: another live
    /// process is a warning (its claims and this one's stay apart, but `/stats` and duplicate
    /// answers cannot tell the two instances apart).
    pub(super) fn note_holder(&self, holder: Option<String>) {
        let mut known = self.other_holder.lock();
        if *known == holder {
            return;
        }
        match &holder {
            Some(other) => {
                tracing::warn!(instance = %self.instance, holder = %shown_holder(other), "another running stagehook uses this instance id on this Redis; duplicates are still found, but the two cannot be told apart: give each its own server.instance_id")
            }
            None => tracing::info!(instance = %self.instance, "the instance id is this process's again"),
        }
        *known = holder;
    }

    /// The watcher's ping: renews this process's hold on its instance id (or takes it, when it
    /// expired or Redis restarted empty), and says who else holds it.
    pub(super) async fn renew_presence(&self) -> Result<Option<String>, NoAnswer> {
        let call = &self.presence_call();
        let (held, holder, _): (i64, String, i64) =
            self.resent_once(|mut conn| async move { call.invoke_async(&mut conn).await }).await?;
        Ok((held == 0).then_some(holder))
    }
}

/// A new identity for this process, 128 random bits as hex: the keys of std's `RandomState` come
/// from the operating system's random source, so two processes draw two identities even when
/// they start in the same instant on one machine.
pub(super) fn process_identity() -> String {
    use std::hash::BuildHasher;
    let word = |n: u8| std::collections::hash_map::RandomState::new().hash_one((n, std::process::id()));
    format!("{:016x}{:016x}", word(0), word(1))
}

/// A presence value (`<process> <pid> <host>`) as a person reads it.
pub(super) fn shown_holder(presence: &str) -> String {
    match presence.splitn(3, ' ').collect::<Vec<_>>()[..] {
        [_, pid, host] => format!("host {host}, pid {pid}"),
        _ => format!("`{presence}`"),
    }
}
