//! Brute-force protection: failed logins counted per client address and per user name, slower
//! replies as they pile up, and escalating bans of addresses that keep failing.
//!
//! Every password check is admitted first ([`Guard::admit`]): a banned address is refused, and
//! checks still running count against the address's allowance, so sessions opened before a
//! ban cannot get more than `max_failures` wrong passwords checked between them. A check that
//! would go past the allowance waits for a running one to end ([`Guard::admit_waiting`]), since
//! running checks are not failures: parallel logins with the right password (rclone, lftp's
//! `mirror -P`, an office behind one NAT) all get in, a few at a time. IPv6 clients
//! are counted per network (`bans.ipv6_prefix`, a /64 by default), since one host usually
//! has a whole /64 to pick addresses from. A user name that failed `max_failures` times in
//! the window (from any addresses) is checked at most once per `bans.user_interval_ms`
//! across all sessions, except from addresses that logged in as that user before: spraying
//! one name from many addresses slows down, and its owner is not locked out.
//!
//! Pure bookkeeping over a clock passed in, so the policy is tested without sleeping; the only
//! waiting is [`Guard::admit_waiting`]'s, a loop around [`Guard::admit`]. Memory is
//! bounded: at most [`MAX_TRACKED`] addresses and as many names are remembered; when full, the
//! entries that no longer matter go first, then arbitrary ones that are not banned.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::BanConfig;

/// Entries kept per table before old ones are dropped.
pub(crate) const MAX_TRACKED: usize = 100_000;

/// What a failed login leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// How long to hold back the reply.
    pub(crate) delay: Duration,
    /// Set when this failure got the address banned, for how long.
    pub(crate) banned: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Counter {
    failures: u32,
    window_start: Instant,
    last: Instant,
}

#[derive(Debug, Clone)]
struct IpRecord {
    count: Counter,
    banned_until: Option<Instant>,
    bans: u32,
    /// Password checks admitted and not finished yet.
    in_flight: u32,
}

impl IpRecord {
    fn new(now: Instant) -> Self {
        Self {
            count: Counter::new(now),
            banned_until: None,
            bans: 0,
            in_flight: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct UserRecord {
    count: Counter,
    /// The earliest a throttled name's next check may start.
    next_slot: Instant,
}

/// Addresses a user logged in from at most, remembered per name.
const KNOWN_PER_USER: usize = 8;

#[derive(Debug, Default)]
struct State {
    ips: HashMap<IpAddr, IpRecord>,
    users: HashMap<String, UserRecord>,
    /// Where each user last logged in from (address keys, newest last), with when.
    known: HashMap<String, Vec<(IpAddr, Instant)>>,
}

/// Whether a password check may run now.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Run it after waiting `wait` (the user name's turn); the ticket ends the check.
    Verify {
        /// Held while the check runs.
        ticket: Ticket,
        /// How long to wait before checking.
        wait: Duration,
    },
    /// The address is banned for this much longer.
    Banned(Duration),
    /// The address has as many checks running as it has failures left before a ban: ask
    /// again when one ends ([`Guard::admit_waiting`] does).
    AddressBusy,
    /// The user name is throttled and its queue is longer than `max_delay_ms`.
    UserBusy,
}

/// A password check in progress for an address; counted against it until dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    guard: Option<(Arc<Guard>, IpAddr)>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((guard, key)) = self.guard.take() {
            if let Some(r) = guard.lock().ips.get_mut(&key) {
                r.in_flight = r.in_flight.saturating_sub(1);
            }
            // Checks waiting for a place ask again (the lock is released by now). Nobody
            // waits, almost always: then the notification and its lock are skipped. A
            // waiter counts itself before it asks under the state lock taken above, so it
            // is seen here whenever it saw the check that ended as still in flight.
            if guard.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                guard.released.notify_waiters();
            }
        }
    }
}

/// One waiter of [`Guard::admit_waiting`], counted until dropped (cancelled included).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a std::sync::atomic::AtomicUsize) -> Self {
        waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The failed-login bookkeeping shared by all sessions.
#[derive(Debug)]
pub(crate) struct Guard {
    cfg: std::sync::RwLock<std::sync::Arc<BanConfig>>,
    state: Mutex<State>,
    /// Woken when a check in flight ends, for [`Guard::admit_waiting`].
    released: Notify,
    /// Calls of [`Guard::admit_waiting`] that wait for `released` now.
    waiting: std::sync::atomic::AtomicUsize,
}

impl Counter {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            window_start: now,
            last: now,
        }
    }

    /// Failures in the window running at `now`.
    fn current(&self, now: Instant, window: Duration) -> u32 {
        if now.saturating_duration_since(self.window_start) > window {
            0
        } else {
            self.failures
        }
    }

    /// Count one failure, starting a new window if the old one has passed; the new count.
    fn bump(&mut self, now: Instant, window: Duration) -> u32 {
        if now.saturating_duration_since(self.window_start) > window {
            self.failures = 0;
            self.window_start = now;
        }
        self.failures = self.failures.saturating_add(1);
        self.last = now;
        self.failures
    }
}

impl Guard {
    /// A guard with the given policy.
    pub(crate) fn new(cfg: BanConfig) -> Self {
        Self {
            cfg: std::sync::RwLock::new(std::sync::Arc::new(cfg)),
            state: Mutex::new(State::default()),
            released: Notify::new(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The policy in force.
    fn cfg(&self) -> std::sync::Arc<BanConfig> {
        std::sync::Arc::clone(&self.cfg.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Change the policy (a reload); counts and bans are kept.
    pub(crate) fn set_config(&self, cfg: BanConfig) {
        *self.cfg.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(cfg);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the maps consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        let cfg = self.cfg();
        !cfg.enabled || cfg.allow.iter().any(|net| net.contains(&ip))
    }

    /// The key `ip` is counted under: an IPv4 address itself, an IPv6 address's network of
    /// `bans.ipv6_prefix` bits.
    pub(crate) fn key(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => {
                let prefix = u32::from(self.cfg().ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    /// How much longer `ip` is banned, if it is.
    pub(crate) fn banned(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.exempt(ip) {
            return None;
        }
        let key = self.key(ip);
        let state = self.lock();
        let until = state.ips.get(&key)?.banned_until?;
        let left = until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// Ask to check a password from `ip` for `user` now; see [`Admission`].
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, user: &str, now: Instant) -> Admission {
        let free = Admission::Verify {
            ticket: Ticket { guard: None },
            wait: Duration::ZERO,
        };
        if self.exempt(ip) {
            return free;
        }
        let cfg = self.cfg();
        let window = Duration::from_secs(cfg.window_secs);
        let key = self.key(ip);
        let mut state = self.lock();
        if let Some(r) = state.ips.get(&key) {
            if let Some(left) = r
                .banned_until
                .map(|u| u.saturating_duration_since(now))
                .filter(|d| !d.is_zero())
            {
                return Admission::Banned(left);
            }
            // Checks already running may all fail: together with the failures counted they
            // must stay within the allowance, or the sessions opened before a ban would get
            // more guesses than max_failures. With none running there is nothing to wait
            // for: the count is below max_failures (the failure that reaches it bans), unless
            // a reload lowered it, and then this check's failure bans.
            if r.in_flight > 0
                && r.count.current(now, window).saturating_add(r.in_flight) >= cfg.max_failures
            {
                return Admission::AddressBusy;
            }
        }
        let mut wait = Duration::ZERO;
        let known = state
            .known
            .get(user)
            .is_some_and(|seen| seen.iter().any(|(k, _)| *k == key));
        if cfg.user_interval_ms > 0 && !known {
            if let Some(u) = state.users.get_mut(user) {
                if u.count.current(now, window) >= cfg.max_failures {
                    let slot = u.next_slot.max(now);
                    wait = slot.saturating_duration_since(now);
                    if wait > Duration::from_millis(cfg.max_delay_ms) {
                        return Admission::UserBusy;
                    }
                    u.next_slot = slot + Duration::from_millis(cfg.user_interval_ms);
                }
            }
        }
        self.make_room(&mut state, now);
        let record = state.ips.entry(key).or_insert_with(|| IpRecord::new(now));
        record.in_flight = record.in_flight.saturating_add(1);
        Admission::Verify {
            ticket: Ticket {
                guard: Some((Arc::clone(self), key)),
            },
            wait,
        }
    }

    /// [`Guard::admit`], waiting while the address is only busy (its checks in flight fill
    /// its allowance) for one of them to end, until `deadline`: then `AddressBusy`. A busy
    /// address is not a failing one, so its next check is delayed, not refused.
    pub(crate) async fn admit_waiting(
        self: &Arc<Self>,
        ip: IpAddr,
        user: &str,
        deadline: tokio::time::Instant,
    ) -> Admission {
        // The usual case, nothing to wait for, asks once without registering as a waiter.
        match self.admit(ip, user, Instant::now()) {
            Admission::AddressBusy => {}
            other => return other,
        }
        let _waiting = Waiting::count(&self.waiting);
        loop {
            // Registered before asking, so that a check ending in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.admit(ip, user, Instant::now()) {
                Admission::AddressBusy => {
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Admission::AddressBusy;
                    }
                }
                other => return other,
            }
        }
    }

    /// Record a successful login from `ip` as `user`: that address is no longer throttled
    /// for that name.
    pub(crate) fn success(&self, ip: IpAddr, user: &str, now: Instant) {
        if self.exempt(ip) {
            return;
        }
        let key = self.key(ip);
        let mut state = self.lock();
        if state.known.len() >= MAX_TRACKED && !state.known.contains_key(user) {
            let memory = self.memory();
            state.known.retain(|_, seen| {
                seen.iter()
                    .any(|(_, t)| now.saturating_duration_since(*t) < memory)
            });
            if state.known.len() >= MAX_TRACKED {
                let excess = state.known.len() + 1 - MAX_TRACKED * 9 / 10;
                let victims: Vec<String> = state.known.keys().take(excess).cloned().collect();
                for name in victims {
                    state.known.remove(&name);
                }
            }
        }
        let seen = state.known.entry(user.to_owned()).or_default();
        seen.retain(|(k, _)| *k != key);
        if seen.len() >= KNOWN_PER_USER {
            seen.remove(0);
        }
        seen.push((key, now));
    }

    /// How long records are worth keeping: the window, and the longest ban so that escalation
    /// remembers repeat offenders.
    fn memory(&self) -> Duration {
        let cfg = self.cfg();
        Duration::from_secs(cfg.window_secs).max(Duration::from_secs(cfg.max_ban_secs))
    }

    /// Record a failed login from `ip` as `user`.
    pub(crate) fn failure(&self, ip: IpAddr, user: &str, now: Instant) -> Verdict {
        let none = Verdict {
            delay: Duration::ZERO,
            banned: None,
        };
        if self.exempt(ip) {
            return none;
        }
        let cfg = self.cfg();
        let window = Duration::from_secs(cfg.window_secs);
        let key = self.key(ip);
        let mut state = self.lock();
        self.make_room(&mut state, now);
        let by_user = match state.users.get_mut(user) {
            Some(u) => u.count.bump(now, window),
            None => {
                let mut count = Counter::new(now);
                let n = count.bump(now, window);
                state.users.insert(
                    user.to_owned(),
                    UserRecord {
                        count,
                        next_slot: now,
                    },
                );
                n
            }
        };
        let record = state.ips.entry(key).or_insert_with(|| IpRecord::new(now));
        let by_ip = record.count.bump(now, window);
        let worst = u64::from(by_ip.max(by_user));
        let delay = Duration::from_millis(
            cfg.delay_ms
                .saturating_mul(worst.saturating_sub(1))
                .min(cfg.max_delay_ms),
        );
        if by_ip < cfg.max_failures {
            return Verdict {
                delay,
                banned: None,
            };
        }
        let factor = u64::from(cfg.escalation).saturating_pow(record.bans);
        let secs = cfg.ban_secs.saturating_mul(factor).min(cfg.max_ban_secs);
        let ban = Duration::from_secs(secs);
        record.bans = record.bans.saturating_add(1);
        record.banned_until = Some(now + ban);
        record.count = Counter::new(now);
        Verdict {
            delay: Duration::ZERO,
            banned: Some(ban),
        }
    }

    /// How many addresses are banned now (none while bans are off).
    pub(crate) fn active_bans(&self, now: Instant) -> usize {
        if !self.cfg().enabled {
            return 0;
        }
        let state = self.lock();
        state
            .ips
            .values()
            .filter(|r| r.banned_until.is_some_and(|u| u > now))
            .count()
    }

    /// Addresses banned now, with the time left.
    pub(crate) fn bans(&self, now: Instant) -> Vec<(IpAddr, Duration)> {
        let state = self.lock();
        let mut out: Vec<_> = state
            .ips
            .iter()
            .filter_map(|(ip, r)| {
                let left = r.banned_until?.saturating_duration_since(now);
                (!left.is_zero()).then_some((*ip, left))
            })
            .collect();
        out.sort();
        out
    }

    /// Lift the ban of `ip` (and forget its failures); whether it was banned.
    pub(crate) fn lift(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = self.key(ip);
        let mut state = self.lock();
        let was = state
            .ips
            .get(&ip)
            .and_then(|r| r.banned_until)
            .is_some_and(|until| until > now);
        state.ips.remove(&ip);
        was
    }

    /// Failed logins counted against `ip` in its current window (0 if none), and how often
    /// it was banned.
    pub(crate) fn ip_record(&self, ip: IpAddr) -> (u32, u32) {
        let ip = self.key(ip);
        self.lock()
            .ips
            .get(&ip)
            .map_or((0, 0), |r| (r.count.failures, r.bans))
    }

    /// Forget the failed logins counted for the user name `user` (they slow its replies);
    /// whether there were any.
    pub(crate) fn forget_user(&self, user: &str) -> bool {
        self.lock().users.remove(user).is_some()
    }

    /// Keep both tables under [`MAX_TRACKED`] entries.
    fn make_room(&self, state: &mut State, now: Instant) {
        let cfg = self.cfg();
        let window = Duration::from_secs(cfg.window_secs);
        // A record matters while its window runs, while it is banned, and for as long as the
        // longest ban after it, so that escalation remembers repeat offenders.
        let memory = window.max(Duration::from_secs(cfg.max_ban_secs));
        if state.ips.len() >= MAX_TRACKED {
            state.ips.retain(|_, r| {
                r.banned_until.is_some_and(|u| u > now)
                    || r.in_flight > 0
                    || now.saturating_duration_since(r.count.last) < memory
            });
            if state.ips.len() >= MAX_TRACKED {
                let excess = state.ips.len() + 1 - MAX_TRACKED * 9 / 10;
                let victims: Vec<IpAddr> = state
                    .ips
                    .iter()
                    .filter(|(_, r)| r.banned_until.is_none_or(|u| u <= now) && r.in_flight == 0)
                    .map(|(ip, _)| *ip)
                    .take(excess)
                    .collect();
                for ip in victims {
                    state.ips.remove(&ip);
                }
            }
        }
        if state.users.len() >= MAX_TRACKED {
            state
                .users
                .retain(|_, u| now.saturating_duration_since(u.count.last) < window);
            if state.users.len() >= MAX_TRACKED {
                let excess = state.users.len() + 1 - MAX_TRACKED * 9 / 10;
                let victims: Vec<String> = state.users.keys().take(excess).cloned().collect();
                for name in victims {
                    state.users.remove(&name);
                }
            }
        }
    }

    /// Entries held (addresses, names), for tests and metrics.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> (usize, usize) {
        let state = self.lock();
        (state.ips.len(), state.users.len())
    }
}

#[cfg(test)]
mod tests;
