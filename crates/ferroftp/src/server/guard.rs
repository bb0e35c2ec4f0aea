//! Brute-force protection: failed logins counted per client address and per user name, slower
//! replies as they pile up, and escalating bans of addresses that keep failing.
//!
//! Pure bookkeeping over a clock passed in, so the policy is tested without sleeping. Memory is
//! bounded: at most [`MAX_TRACKED`] addresses and as many names are remembered; when full, the
//! entries that no longer matter go first, then arbitrary ones that are not banned.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
}

#[derive(Debug, Default)]
struct State {
    ips: HashMap<IpAddr, IpRecord>,
    users: HashMap<String, Counter>,
}

/// The failed-login bookkeeping shared by all sessions.
#[derive(Debug)]
pub(crate) struct Guard {
    cfg: std::sync::RwLock<std::sync::Arc<BanConfig>>,
    state: Mutex<State>,
}

impl Counter {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            window_start: now,
            last: now,
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

    /// How much longer `ip` is banned, if it is.
    pub(crate) fn banned(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.exempt(ip) {
            return None;
        }
        let state = self.lock();
        let until = state.ips.get(&ip)?.banned_until?;
        let left = until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
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
        let mut state = self.lock();
        self.make_room(&mut state, now);
        let by_user = match state.users.get_mut(user) {
            Some(c) => c.bump(now, window),
            None => {
                let mut c = Counter::new(now);
                let n = c.bump(now, window);
                state.users.insert(user.to_owned(), c);
                n
            }
        };
        let record = state.ips.entry(ip).or_insert_with(|| IpRecord {
            count: Counter::new(now),
            banned_until: None,
            bans: 0,
        });
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
                    || now.saturating_duration_since(r.count.last) < memory
            });
            if state.ips.len() >= MAX_TRACKED {
                let excess = state.ips.len() + 1 - MAX_TRACKED * 9 / 10;
                let victims: Vec<IpAddr> = state
                    .ips
                    .iter()
                    .filter(|(_, r)| r.banned_until.is_none_or(|u| u <= now))
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
                .retain(|_, c| now.saturating_duration_since(c.last) < window);
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
mod tests {
    use super::*;

    fn cfg() -> BanConfig {
        BanConfig {
            max_failures: 3,
            window_secs: 60,
            ban_secs: 10,
            escalation: 4,
            max_ban_secs: 100,
            delay_ms: 500,
            max_delay_ms: 1200,
            ..BanConfig::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn replies_slow_down_then_the_address_is_banned() {
        let g = Guard::new(cfg());
        let t = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(g.failure(a, "x", t).delay, Duration::ZERO);
        assert_eq!(g.failure(a, "y", t).delay, Duration::from_millis(500));
        assert_eq!(g.banned(a, t), None);
        let v = g.failure(a, "z", t);
        assert_eq!(v.banned, Some(Duration::from_secs(10)));
        assert_eq!(
            g.banned(a, t + Duration::from_secs(3)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(g.active_bans(t + Duration::from_secs(3)), 1);
        assert_eq!(g.banned(a, t + Duration::from_secs(10)), None);
        assert_eq!(g.active_bans(t + Duration::from_secs(10)), 0);
        assert_eq!(
            g.banned(ip("192.0.2.2"), t),
            None,
            "others are not affected"
        );
    }

    #[test]
    fn bans_escalate_up_to_the_maximum() {
        let g = Guard::new(cfg());
        let a = ip("2001:db8::1");
        let mut t = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..4 {
            let mut v = None;
            for _ in 0..3 {
                v = g.failure(a, "root", t).banned;
            }
            let ban = v.unwrap();
            lengths.push(ban.as_secs());
            t += ban + Duration::from_secs(1);
        }
        assert_eq!(lengths, [10, 40, 100, 100]);
    }

    #[test]
    fn failures_for_one_user_name_slow_down_every_address() {
        let g = Guard::new(cfg());
        let t = Instant::now();
        g.failure(ip("192.0.2.1"), "admin", t);
        g.failure(ip("192.0.2.2"), "admin", t);
        let v = g.failure(ip("192.0.2.3"), "admin", t);
        assert_eq!(v.delay, Duration::from_millis(1000));
        assert_eq!(v.banned, None, "names are slowed, never banned");
        let v = g.failure(ip("192.0.2.4"), "admin", t);
        assert_eq!(v.delay, Duration::from_millis(1200), "capped");
    }

    #[test]
    fn the_window_forgets_old_failures() {
        let g = Guard::new(cfg());
        let a = ip("192.0.2.1");
        let t = Instant::now();
        g.failure(a, "x", t);
        g.failure(a, "x", t);
        let later = t + Duration::from_secs(61);
        assert_eq!(g.failure(a, "x", later).banned, None);
        assert_eq!(g.failure(a, "x", later).delay, Duration::from_millis(500));
    }

    #[test]
    fn allow_listed_networks_are_never_banned_or_slowed() {
        let g = Guard::new(BanConfig {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..cfg()
        });
        let t = Instant::now();
        for _ in 0..10 {
            let v = g.failure(ip("10.1.2.3"), "x", t);
            assert_eq!(v.delay, Duration::ZERO);
            assert_eq!(v.banned, None);
        }
        assert_eq!(g.banned(ip("10.1.2.3"), t), None);
        assert_eq!(g.tracked(), (0, 0), "nothing is even recorded");
    }

    #[test]
    fn a_ban_can_be_lifted() {
        let g = Guard::new(cfg());
        let a = ip("192.0.2.9");
        let t = Instant::now();
        for _ in 0..3 {
            g.failure(a, "x", t);
        }
        assert_eq!(g.bans(t).len(), 1);
        assert!(g.lift(a, t));
        assert_eq!(g.banned(a, t), None);
        assert!(!g.lift(a, t));
    }

    #[test]
    fn memory_stays_bounded_under_a_spray_of_addresses_and_names() {
        let g = Guard::new(BanConfig {
            max_failures: 1000,
            ..cfg()
        });
        let t = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 5000) {
            let a = IpAddr::from(i.to_be_bytes());
            g.failure(a, &format!("user{i}"), t);
        }
        let (ips, users) = g.tracked();
        assert!(ips <= MAX_TRACKED && users <= MAX_TRACKED, "{ips} {users}");
    }
}
