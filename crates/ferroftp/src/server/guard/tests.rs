//! Unit tests of [`super::Guard`]: slowing down and banning, windows, allow-lists, bounded
//! memory, checks in flight, IPv6 networks and sprayed user names, all on a clock passed in.

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

fn verify(a: Admission) -> Ticket {
    match a {
        Admission::Verify { ticket, .. } => ticket,
        other => panic!("refused: {other:?}"),
    }
}

#[test]
fn checks_in_flight_count_against_the_allowance_of_the_address() {
    let g = Arc::new(Guard::new(cfg()));
    let t = Instant::now();
    let a = ip("192.0.2.1");
    let tickets: Vec<_> = (0..3).map(|_| verify(g.admit(a, "x", t))).collect();
    assert!(matches!(g.admit(a, "x", t), Admission::AddressBusy));
    drop(tickets);
    g.failure(a, "x", t);
    let one = verify(g.admit(a, "x", t));
    let two = verify(g.admit(a, "x", t));
    assert!(matches!(g.admit(a, "x", t), Admission::AddressBusy));
    g.failure(a, "x", t);
    drop(one);
    assert_eq!(g.failure(a, "x", t).banned, Some(Duration::from_secs(10)));
    drop(two);
    assert!(matches!(g.admit(a, "x", t), Admission::Banned(_)));
}

#[tokio::test]
async fn a_busy_address_waits_for_a_check_to_end_and_is_refused_only_once_banned() {
    let g = Arc::new(Guard::new(cfg()));
    let a = ip("192.0.2.1");
    let t = Instant::now();
    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
    let mut tickets: Vec<_> = (0..3).map(|_| verify(g.admit(a, "x", t))).collect();
    let waiter = {
        let g = Arc::clone(&g);
        tokio::spawn(async move { g.admit_waiting(a, "x", far).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished(), "three checks fill the allowance");
    // One ends with the right password: the waiting check takes its place.
    drop(tickets.pop());
    let fourth = verify(waiter.await.unwrap());
    // Past the deadline, a busy address is answered at once.
    assert!(matches!(
        g.admit_waiting(a, "x", tokio::time::Instant::now()).await,
        Admission::AddressBusy
    ));
    // The checks in flight fail and ban the address: a waiting check is refused.
    let waiter = {
        let g = Arc::clone(&g);
        tokio::spawn(async move { g.admit_waiting(a, "x", far).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished());
    for ticket in tickets.into_iter().chain([fourth]) {
        g.failure(a, "x", t);
        drop(ticket);
    }
    assert!(matches!(waiter.await.unwrap(), Admission::Banned(_)));
}

#[test]
fn ipv6_addresses_are_counted_per_network() {
    let g = Guard::new(cfg());
    let t = Instant::now();
    for i in 1..=3 {
        g.failure(ip(&format!("2001:db8:1:2::{i}")), "x", t);
    }
    assert!(g.banned(ip("2001:db8:1:2:ffff::9"), t).is_some());
    assert_eq!(g.banned(ip("2001:db8:1:3::1"), t), None);
    let g = Guard::new(BanConfig {
        ipv6_prefix: 128,
        ..cfg()
    });
    for i in 1..=3 {
        g.failure(ip(&format!("2001:db8:1:2::{i}")), "x", t);
    }
    assert_eq!(g.banned(ip("2001:db8:1:2::1"), t), None);
}

#[test]
fn a_sprayed_user_name_is_checked_one_at_a_time_except_from_known_addresses() {
    let g = Arc::new(Guard::new(BanConfig {
        user_interval_ms: 1000,
        max_delay_ms: 2500,
        ..cfg()
    }));
    let t = Instant::now();
    g.success(ip("198.51.100.7"), "alice", t);
    for i in 1..=3 {
        g.failure(ip(&format!("192.0.2.{i}")), "alice", t);
    }
    let waits: Vec<Duration> = (10..14)
        .filter_map(|i| match g.admit(ip(&format!("192.0.2.{i}")), "alice", t) {
            Admission::Verify { wait, .. } => Some(wait),
            Admission::UserBusy => None,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        waits,
        [0, 1000, 2000].map(Duration::from_millis),
        "one slot per interval, a queue no longer than max_delay_ms"
    );
    match g.admit(ip("198.51.100.7"), "alice", t) {
        Admission::Verify { wait, .. } => assert_eq!(wait, Duration::ZERO),
        other => panic!("the user's own address is not throttled: {other:?}"),
    }
    match g.admit(ip("192.0.2.20"), "bob", t) {
        Admission::Verify { wait, .. } => assert_eq!(wait, Duration::ZERO),
        other => panic!("other names are not throttled: {other:?}"),
    }
}
