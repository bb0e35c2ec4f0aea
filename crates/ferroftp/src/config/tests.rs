//! The configuration as a whole: defaults, errors that name the key, round trips.

use super::*;

fn parse(text: &str) -> Result<Config, String> {
    let c = Config::from_toml(text)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

#[test]
fn an_empty_file_gives_the_safe_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.listeners[0].bind.to_string(), "127.0.0.1:2121");
    assert!(!c.anonymous.enabled);
    assert!(!c.passive.allow_foreign_ip && !c.active.allow_foreign_ip);
    assert!(!c.active.allow_privileged_ports);
}

#[test]
fn errors_name_the_key_and_the_reason() {
    let e = parse("[passive]\nports = \"9-3\"\n").unwrap_err();
    assert!(e.contains("ports") && e.contains("backwards"), "{e}");
    let e = parse("[limits]\nidle_timeout_secs = 0\n").unwrap_err();
    assert!(e.contains("limits.idle_timeout_secs"), "{e}");
    let e = parse("[passive]\nport = \"1-2\"\n").unwrap_err();
    assert!(
        e.contains("unknown key `port`") && e.contains("`ports`"),
        "{e}"
    );
    let e = parse("[[listener]]\nbind = \"nonsense\"\n").unwrap_err();
    assert!(e.contains("bind"), "{e}");
    let e = parse("[passive]\naddress = \"::1\"\n").unwrap_err();
    assert!(e.contains("passive.address"), "{e}");
    let e = parse("[anonymous]\npermissions = [\"fly\"]\n").unwrap_err();
    assert!(e.contains("fly"), "{e}");
}

#[test]
fn the_admin_api_needs_a_token_and_stays_on_loopback_unless_told() {
    let e = parse("[admin]\nlisten = \"127.0.0.1:9022\"\n").unwrap_err();
    assert!(e.contains("admin.token_file"), "{e}");
    let e = parse("[admin]\nlisten = \"0.0.0.0:9022\"\ntoken_file = \"/t\"\n").unwrap_err();
    assert!(
        e.contains("admin.listen") && e.contains("allow_remote"),
        "{e}"
    );
    parse("[admin]\nlisten = \"0.0.0.0:9022\"\ntoken_file = \"/t\"\nallow_remote = true\n")
        .unwrap();
    parse("[admin]\nlisten = \"[::1]:9022\"\ntoken_file = \"/t\"\n").unwrap();
    parse("[admin]\nlisten = \"[::ffff:127.0.0.1]:9022\"\ntoken_file = \"/t\"\n").unwrap();
    assert!(parse("").unwrap().admin.listen.is_none());
}

#[test]
fn the_effective_config_round_trips() {
    let c = parse("root = \"/srv\"\n[passive]\nports = \"50000-50010\"\n").unwrap();
    let again = parse(&c.to_toml()).unwrap();
    assert_eq!(
        again.passive.ports,
        Some(PortRange {
            low: 50000,
            high: 50010
        })
    );
    assert_eq!(again.root, PathBuf::from("/srv"));
}

#[test]
fn ban_and_home_keys_are_validated() {
    let e = parse("[bans]\nipv6_prefix = 8\n").unwrap_err();
    assert!(e.to_string().contains("bans.ipv6_prefix"), "{e}");
    assert!(parse("[bans]\nipv6_prefix = 128\nuser_interval_ms = 0\n").is_ok());
    let e = parse("[anonymous]\nhome = \"\"\n").unwrap_err();
    assert!(e.to_string().contains("anonymous.home"), "{e}");
    let c = parse("[auth]\nallow_homes_outside_root = true\n").unwrap();
    assert!(c.auth.allow_homes_outside_root);
    assert!(!Config::default().auth.allow_homes_outside_root);
}

#[test]
fn the_example_file_is_valid_and_matches_the_defaults() {
    let text = include_str!("../../../../ferroftp.example.toml");
    let example = parse(text).unwrap();
    assert_eq!(example.to_toml(), Config::default().to_toml());
}

#[test]
fn several_mistakes_are_reported_one_at_a_time_in_the_same_order() {
    // One error at a time, in the order the checks have always run, across sections.
    let cases = [
        (
            "[tls]\ncert = \"/c\"\nhandshake_timeout_secs = 0\n[bans]\nban_secs = 0\n",
            "tls.key",
        ),
        (
            "[tls]\nhandshake_timeout_secs = 0\n[bans]\nban_secs = 0\n",
            "bans.ban_secs",
        ),
        (
            "[limits]\nmax_login_failures = 0\n[anonymous]\nhome = \"\"\n",
            "anonymous.home",
        ),
        (
            "[limits]\nmax_login_failures = 0\nidle_timeout_secs = 0\n",
            "limits.idle_timeout_secs",
        ),
        (
            "[log]\nlevel = \"inf\"\n[limits]\nmax_login_failures = 0\n",
            "limits.max_login_failures",
        ),
        (
            "[passive]\naddress = \"::1\"\n[tls]\nhandshake_timeout_secs = 0\n",
            "tls.handshake_timeout_secs",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:21\"\nmode = \"plain\"\ntls_policy = \"login\"\n[tls]\nkey = \"/k\"\n",
            "listener.tls_policy",
        ),
    ];
    for (text, key) in cases {
        let e = parse(text).unwrap_err();
        assert!(
            e.starts_with(&format!("config key `{key}`: ")),
            "{text:?}: {e}"
        );
    }
}
