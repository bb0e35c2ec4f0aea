//! The login effects: password checks (bans, throttling, the hash pool), homes, rehashing.

use super::*;

/// Resolves `user`'s home (`None`: the root) and opens it with the server's storage back-end
/// (the local one creates a missing home below the root, and shares open homes). Blocks: runs
/// on a blocking thread.
pub(super) fn land(
    shared: &Shared,
    live: &Live,
    user: &str,
    home: Option<&std::path::Path>,
) -> Landing {
    let home = live.home_dir(home)?;
    let opened = shared.storage.open_home(user, &home, &live.root);
    Ok((home, opened))
}

pub(super) fn maybe_rehash(shared: &Arc<Shared>, live: &Live, user: &User, password: String) {
    let legacy = user.has_legacy_hash();
    let Some(path) = live.config.users_file.clone() else {
        return;
    };
    if !legacy || !live.config.auth.rehash_to_argon2 {
        return;
    }
    let first = live
        .rehashed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(user.name.clone());
    if !first {
        return;
    }
    let shared = Arc::clone(shared);
    let user = user.clone();
    let task = async move {
        let Ok(_permit) = shared.hash_pool.acquire().await else {
            return;
        };
        let name = user.name.clone();
        let file = path.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            auth::upgrade_hash(&path, &user, &password, HashParams::default())
        })
        .await;
        match outcome {
            Ok(Ok(Upgrade::Upgraded(from))) => info!(
                user = %name,
                from = %from,
                file = %file.display(),
                "password hash upgraded to argon2id in the users file (in force from the next reload or restart)"
            ),
            Ok(Ok(Upgrade::Unchanged)) => debug!(
                user = %name,
                "password hash not upgraded: the users file no longer holds the hash that was checked"
            ),
            Ok(Err(e)) => warn!(
                user = %name,
                error = %e,
                "cannot upgrade the password hash to argon2id (auth.rehash_to_argon2); the old hash stays in use. The server's user must be able to create files in the users file's directory (ferroftp doctor checks it)"
            ),
            Err(e) => warn!(user = %name, error = %e, "the password hash upgrade failed"),
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
}

impl Session {
    /// PASS for a user (anonymous logins do not come here): the ban and throttling rules, the
    /// hash check (off the async workers when it is slow), the failure bookkeeping.
    pub(super) async fn verify_password(
        &mut self,
        name: String,
        password: String,
        scratch: &mut Scratch,
    ) -> Event {
        let shared = Arc::clone(&self.shared);
        let live = Arc::clone(&self.live);
        // The ban is checked before every password check, not only at connect: sessions
        // opened before a ban must not go on guessing. An address whose checks in flight
        // fill its allowance waits for one to end, up to the time left to log in.
        let deadline = self.core.login_deadline();
        let mut ticket = match shared
            .guard
            .admit_waiting(self.core.peer().ip(), &name, deadline.into())
            .await
        {
            Admission::Verify { ticket, wait } => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Some(ticket)
            }
            refused => {
                let (why, reason) = match refused {
                    Admission::Banned(left) => {
                        (PreCheckRefusal::Banned(left.as_secs()), "address banned")
                    }
                    Admission::UserBusy => (PreCheckRefusal::UserBusy, "user name throttled"),
                    Admission::AddressBusy | Admission::Verify { .. } => (
                        PreCheckRefusal::AddressBusy,
                        "password checks from the address did not end in time",
                    ),
                };
                warn!(ip = %self.core.peer().ip(), user = %name, reason, "login refused before the password check");
                return Event::LoginRefused(why);
            }
        };
        let users = live.users.clone();
        let user_name = name.clone();
        let checked = if users.verify_cost(&name) <= INLINE_HASH_COST {
            // Hashes this cheap (tens of microseconds) cost less than the trip to a
            // blocking thread.
            users
                .check(&user_name, &password)
                .map(|user| (user, password))
        } else {
            // argon2, bcrypt and crypt(3) are deliberately slow: off the async workers, a
            // bounded number at once. A right password's home is opened in the same trip
            // (one thread hand-off per login, not two), unless the login is refused anyway
            // for want of TLS.
            let (shared2, live2) = (Arc::clone(&shared), Arc::clone(&live));
            let has_tls = self.tls.is_some();
            match shared.hash_pool.acquire().await {
                Ok(_permit) => tokio::task::spawn_blocking(move || {
                    let user = users.check(&user_name, &password)?;
                    let found = (has_tls || !user.tls_policy.login())
                        .then(|| land(&shared2, &live2, &user.name, user.home.as_deref()));
                    Ok((user, password, found))
                })
                .await
                .unwrap_or(Err(Refusal::Incorrect))
                .map(|(user, password, found)| {
                    if let Some(landing) = found {
                        scratch.found = Some(FoundHome::Landed(landing));
                    }
                    (user, password)
                }),
                Err(_) => Err(Refusal::Incorrect),
            }
        };
        match checked {
            Ok((user, password)) => {
                shared
                    .guard
                    .success(self.core.peer().ip(), &user.name, std::time::Instant::now());
                // The check is over: the next one from this address may start.
                drop(ticket.take());
                maybe_rehash(&shared, &live, &user, password);
                if !matches!(scratch.found, Some(FoundHome::Landed(_))) {
                    scratch.found = Some(FoundHome::Configured(user.home.clone()));
                }
                Event::PasswordAccepted(Account {
                    name: user.name,
                    perms: user.permissions,
                    tls_policy: user.tls_policy,
                })
            }
            Err(refusal) => {
                shared.metrics.login_failed();
                if refusal == Refusal::Disabled {
                    // The right password for a disabled account: a line of its own for the
                    // administrator, and otherwise a failure like any other (counted, held
                    // back, banned, and the fail2ban line below), so that nothing the client
                    // sees tells that the password was right, which would be worth knowing
                    // once the account is enabled again.
                    warn!(ip = %self.core.peer().ip(), user = %name, "login refused: user disabled");
                }
                // The line fail2ban matches (contrib/fail2ban): keep its shape. The client's
                // address comes first, before the user name that the client chose.
                let failures = self.core.failed_logins() + 1;
                warn!(ip = %self.core.peer().ip(), user = %name, failures, "login failed");
                let verdict =
                    shared
                        .guard
                        .failure(self.core.peer().ip(), &name, std::time::Instant::now());
                // Counted as a failure now: no longer as a check in progress.
                drop(ticket);
                if let Some(ban) = verdict.banned {
                    shared.metrics.banned();
                    warn!(ip = %self.core.peer().ip(), ban_secs = ban.as_secs(), "address banned after repeated failed logins");
                    return Event::PasswordRejected {
                        banned: Some(ban.as_secs()),
                    };
                }
                // Slower replies as failures pile up; the same for existing and unknown users.
                tokio::time::sleep(verdict.delay).await;
                Event::PasswordRejected { banned: None }
            }
        }
    }

    /// Open the home directory of the account being logged in: resolved against the root and
    /// refused when not allowed (outside the root; the users were checked when loaded, so
    /// this is defence in depth). Resolving (symbolic links followed), the cache check,
    /// creating a missing home and opening it all touch the file system, so they run together
    /// on one blocking thread: a slow mount must not stall an async worker at every login.
    pub(super) async fn open_home(
        &mut self,
        account: Account,
        method: core::LoginMethod,
        scratch: &mut Scratch,
    ) -> Option<crate::storage::Capabilities> {
        let found = match (method, scratch.found.take()) {
            (core::LoginMethod::Anonymous, _) => {
                FoundHome::Configured(Some(self.live.config.anonymous.home.clone()))
            }
            (_, Some(found)) => found,
            (_, None) => FoundHome::Configured(None),
        };
        let landing = match found {
            FoundHome::Landed(landing) => landing,
            FoundHome::Configured(home) => {
                let shared = Arc::clone(&self.shared);
                let live = Arc::clone(&self.live);
                let user = account.name.clone();
                tokio::task::spawn_blocking(move || land(&shared, &live, &user, home.as_deref()))
                    .await
                    .unwrap_or_else(|e| Err(format!("the home lookup failed: {e}")))
            }
        };
        let (home, opened) = match landing {
            Ok(found) => found,
            Err(reason) => {
                tracing::error!(user = %account.name, %reason, "login refused: home directory not allowed");
                return None;
            }
        };
        match opened {
            Ok(fs) => {
                tracing::Span::current().record("user", account.name.as_str());
                let method = metrics_method(method);
                let how = match method {
                    LoginMethod::Certificate => "client certificate",
                    other => other.as_str(),
                };
                info!(user = %account.name, home = %home.display(), permissions = %account.perms, method = how, "login ok");
                self.shared.metrics.login_ok(method);
                let capabilities = fs.capabilities();
                self.home = Some(Home { fs, path: home });
                Some(capabilities)
            }
            Err(e) => {
                tracing::error!(user = %account.name, home = %home.display(), error = %e, "home directory unavailable");
                None
            }
        }
    }
}
