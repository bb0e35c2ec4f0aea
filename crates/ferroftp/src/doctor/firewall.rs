//! The firewall rules a configuration needs, for nftables, iptables, firewalld and ufw, and the
//! conntrack FTP helper caveat.

use std::collections::BTreeSet;

use crate::config::{Config, ListenerConfig, ListenerMode, TlsPolicy};

/// Whether clients of this listener can run whole sessions without TLS (so that a conntrack
/// helper could read their PASV replies).
fn allows_plain(l: &ListenerConfig) -> bool {
    match l.mode {
        ListenerMode::Plain => true,
        ListenerMode::Explicit => l.tls_policy == TlsPolicy::Optional,
        ListenerMode::Implicit => false,
    }
}

fn join(ports: &BTreeSet<u16>, sep: &str) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// nft's notation for a set of ports: `21` or `{ 21, 990 }`.
fn nft_ports(ports: &BTreeSet<u16>) -> String {
    if ports.len() == 1 {
        join(ports, ", ")
    } else {
        format!("{{ {} }}", join(ports, ", "))
    }
}

/// iptables' notation: `--dport 21` or `-m multiport --dports 21,990`.
fn ipt_ports(ports: &BTreeSet<u16>) -> String {
    if ports.len() == 1 {
        format!("--dport {}", join(ports, ","))
    } else {
        format!("-m multiport --dports {}", join(ports, ","))
    }
}

/// The rules to open for `config`: comment lines start with `#`, the others are commands to
/// run as they are.
pub fn firewall_rules(config: &Config) -> String {
    let mut out: Vec<String> = Vec::new();
    let fixed = |l: &&ListenerConfig| l.bind.port() != 0;
    let control: BTreeSet<u16> = config
        .listeners
        .iter()
        .filter(fixed)
        .map(|l| l.bind.port())
        .collect();
    let ipv6 = config.listeners.iter().any(|l| l.bind.is_ipv6());
    if config.listeners.iter().all(|l| l.bind.ip().is_loopback()) {
        out.push(
            "# Every listener is on loopback: these rules matter once a listener is on the network."
                .into(),
        );
    }
    let passive = config.passive.ports;
    out.push(format!(
        "# Control port(s): {}. Passive range: {}.",
        if control.is_empty() {
            "none fixed (port 0)".to_owned()
        } else {
            join(&control, ", ")
        },
        passive.map_or_else(|| "not fixed".to_owned(), |r| r.to_string())
    ));
    out.push(
        "# nftables (a table \"inet filter\" with an \"input\" chain, as in Debian's /etc/nftables.conf):"
            .into(),
    );
    out.push("nft add rule inet filter input ct state established,related accept".into());
    if !control.is_empty() {
        out.push(format!(
            "nft add rule inet filter input tcp dport {} ct state new accept",
            nft_ports(&control)
        ));
    }
    if let Some(r) = passive {
        out.push(format!(
            "nft add rule inet filter input tcp dport {}-{} ct state new accept",
            r.low, r.high
        ));
    }
    out.push(format!(
        "# iptables{}:",
        if ipv6 {
            " (and the same lines with ip6tables for the IPv6 listeners)"
        } else {
            ""
        }
    ));
    out.push("iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT".into());
    if !control.is_empty() {
        out.push(format!(
            "iptables -A INPUT -p tcp {} -m conntrack --ctstate NEW -j ACCEPT",
            ipt_ports(&control)
        ));
    }
    if let Some(r) = passive {
        out.push(format!(
            "iptables -A INPUT -p tcp --dport {}:{} -m conntrack --ctstate NEW -j ACCEPT",
            r.low, r.high
        ));
    }
    // firewalld and ufw: one rule covers IPv4 and IPv6, and both let replies in by themselves.
    let firewalld: Vec<String> = control
        .iter()
        .map(u16::to_string)
        .chain(passive.map(|r| format!("{}-{}", r.low, r.high)))
        .map(|p| format!(" --add-port={p}/tcp"))
        .collect();
    if !firewalld.is_empty() {
        out.push(
            "# firewalld (the default zone; add --zone=NAME for another), then load the permanent rules:"
                .into(),
        );
        out.push(format!("firewall-cmd --permanent{}", firewalld.concat()));
        out.push("firewall-cmd --reload".into());
        out.push("# ufw:".into());
        if !control.is_empty() {
            out.push(format!("ufw allow {}/tcp", join(&control, ",")));
        }
        if let Some(r) = passive {
            out.push(format!("ufw allow {}:{}/tcp", r.low, r.high));
        }
    }
    if passive.is_none() {
        out.push(
            "# No passive range (passive.ports is unset): PASV/EPSV use any free port, which a firewall cannot open narrowly; set passive.ports = \"50000-50100\" and run doctor again."
                .into(),
        );
    }
    if config.active.enabled {
        let low = if config.active.allow_privileged_ports {
            1
        } else {
            1024
        };
        // With source_port_below_listener each listener connects out from the port below its
        // control port (20 for 21, 989 for 990); rules keyed on that source port then match.
        let sources: BTreeSet<u16> = config
            .listeners
            .iter()
            .filter(fixed)
            .map(|l| l.bind.port().saturating_sub(1))
            .collect();
        if config.active.source_port_below_listener && !sources.is_empty() {
            out.push(format!(
                "# Active mode (PORT/EPRT) is on, from the port below each listener's control port (active.source_port_below_listener): the server connects out from source port(s) {} to the client's port ({low}-65535). Ports below 1024 need CAP_NET_BIND_SERVICE. An output chain with policy drop needs:",
                join(&sources, ", ")
            ));
            out.push(format!(
                "nft add rule inet filter output tcp sport {} tcp dport {low}-65535 ct state new accept",
                nft_ports(&sources)
            ));
            let ipt_sport = if sources.len() == 1 {
                format!("--sport {}", join(&sources, ","))
            } else {
                format!("-m multiport --sports {}", join(&sources, ","))
            };
            out.push(format!(
                "iptables -A OUTPUT -p tcp {ipt_sport} --dport {low}:65535 -m conntrack --ctstate NEW -j ACCEPT"
            ));
            out.push(
                "# firewalld lets outgoing connections through (it filters incoming only). ufw too, unless its outgoing policy is deny; then:"
                    .into(),
            );
            out.push(format!(
                "ufw allow out proto tcp from any port {} to any port {low}:65535",
                join(&sources, ",")
            ));
            out.push(format!(
                "# Client-side firewalls that let active data in only from source port 20/989 accept these connections (source port(s) {}).",
                join(&sources, ", ")
            ));
        } else {
            out.push(format!(
                "# Active mode (PORT/EPRT) is on: the server connects out to the client's port ({low}-65535) from an ephemeral source port, not from 20 or 989 (set active.source_port_below_listener = true for that), so no rule for 20/989 is needed. Only an output chain with policy drop needs:"
            ));
            out.push(format!(
                "nft add rule inet filter output tcp dport {low}-65535 ct state new accept"
            ));
            out.push(format!(
                "iptables -A OUTPUT -p tcp --dport {low}:65535 -m conntrack --ctstate NEW -j ACCEPT"
            ));
            out.push(
                "# firewalld lets outgoing connections through (it filters incoming only). ufw too, unless its outgoing policy is deny; then:"
                    .into(),
            );
            out.push(format!("ufw allow out proto tcp to any port {low}:65535"));
        }
    }
    out.push(String::new());
    out.push("# The conntrack FTP helper (nf_conntrack_ftp) reads PASV/EPSV replies on the control connection and lets the data connection in as RELATED.".into());
    if config.listeners.iter().any(|l| l.mode.offers_tls()) {
        out.push(format!(
            "# FTPS: the helper cannot see inside TLS, so with FTPS the passive range must be opened explicitly{}.",
            if passive.is_some() {
                " (the rules above do)"
            } else {
                ""
            }
        ));
    }
    let plain: BTreeSet<u16> = config
        .listeners
        .iter()
        .filter(fixed)
        .filter(|l| allows_plain(l))
        .map(|l| l.bind.port())
        .collect();
    if plain.is_empty() {
        out.push("# No listener allows whole sessions without TLS: the helper cannot help here; keep the passive range open.".into());
    } else {
        out.push(format!(
            "# Plain FTP (port(s) {}): the helper could open data ports by itself, but automatic helper assignment is off by default since Linux 4.7 (sysctl net.netfilter.nf_conntrack_helper = 0). To rely on it instead of opening the range, assign it explicitly:",
            join(&plain, ", ")
        ));
        out.push("modprobe nf_conntrack_ftp".into());
        out.push("nft add table inet ftphelper".into());
        out.push(
            "nft add ct helper inet ftphelper ftp-standard '{ type \"ftp\" protocol tcp; }'".into(),
        );
        out.push("nft add chain inet ftphelper prerouting '{ type filter hook prerouting priority filter; }'".into());
        out.push(format!(
            "nft add rule inet ftphelper prerouting tcp dport {} ct helper set \"ftp-standard\"",
            nft_ports(&plain)
        ));
        out.push(format!(
            "iptables -t raw -A PREROUTING -p tcp {} -j CT --helper ftp",
            ipt_ports(&plain)
        ));
        out.push("# Opening the passive range explicitly works for plain FTP and FTPS alike and needs no helper.".into());
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortRange;

    fn config(text: &str) -> Config {
        let c: Config = toml::from_str(text).unwrap();
        c.validate().unwrap();
        c
    }

    #[test]
    fn rules_name_the_control_ports_and_the_passive_range() {
        let c = config(
            "[[listener]]\nbind = \"0.0.0.0:21\"\n[[listener]]\nbind = \"0.0.0.0:990\"\nmode = \"implicit\"\n[passive]\nports = \"50000-50100\"\n",
        );
        let text = firewall_rules(&c);
        assert!(
            text.contains(
                "nft add rule inet filter input tcp dport { 21, 990 } ct state new accept"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "nft add rule inet filter input tcp dport 50000-50100 ct state new accept"
            ),
            "{text}"
        );
        assert!(text.contains("iptables -A INPUT -p tcp -m multiport --dports 21,990 -m conntrack --ctstate NEW -j ACCEPT"), "{text}");
        assert!(
            text.contains(
                "iptables -A INPUT -p tcp --dport 50000:50100 -m conntrack --ctstate NEW -j ACCEPT"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "firewall-cmd --permanent --add-port=21/tcp --add-port=990/tcp --add-port=50000-50100/tcp\nfirewall-cmd --reload\n"
            ),
            "{text}"
        );
        assert!(text.contains("\nufw allow 21,990/tcp\n"), "{text}");
        assert!(text.contains("\nufw allow 50000:50100/tcp\n"), "{text}");
        assert!(text.contains("cannot see inside TLS"), "{text}");
        // Port 21 (explicit, TLS optional) can be plain; 990 (implicit) cannot.
        assert!(
            text.contains("tcp dport 21 ct helper set \"ftp-standard\""),
            "{text}"
        );
        assert!(text.contains("-j CT --helper ftp"), "{text}");
        assert!(text.contains("1024-65535"), "{text}");
        assert_eq!(
            c.passive.ports,
            Some(PortRange {
                low: 50000,
                high: 50100
            })
        );
    }

    #[test]
    fn without_plain_sessions_there_is_no_helper_recipe() {
        let c = config(
            "[[listener]]\nbind = \"[::]:990\"\nmode = \"implicit\"\n[active]\nenabled = false\n",
        );
        let text = firewall_rules(&c);
        assert!(text.contains("ip6tables"), "{text}");
        assert!(!text.contains("--helper ftp"), "{text}");
        assert!(text.contains("passive.ports is unset"), "{text}");
        assert!(!text.contains("Active mode"), "{text}");
        assert!(
            text.contains("\nfirewall-cmd --permanent --add-port=990/tcp\n"),
            "{text}"
        );
        assert!(text.contains("\nufw allow 990/tcp\n"), "{text}");
        assert!(!text.contains("ufw allow out"), "{text}");
    }

    #[test]
    fn active_rules_name_the_source_port_below_each_listener_when_asked() {
        let listeners = "[[listener]]\nbind = \"0.0.0.0:21\"\n[[listener]]\nbind = \"0.0.0.0:990\"\nmode = \"implicit\"\n";
        let ephemeral = firewall_rules(&config(listeners));
        assert!(ephemeral.contains("ephemeral source port"), "{ephemeral}");
        assert!(!ephemeral.contains("sport"), "{ephemeral}");
        assert!(
            ephemeral.contains("\nufw allow out proto tcp to any port 1024:65535\n"),
            "{ephemeral}"
        );
        let text = firewall_rules(&config(&format!(
            "{listeners}[active]\nsource_port_below_listener = true\n"
        )));
        assert!(!text.contains("ephemeral source port"), "{text}");
        assert!(
            text.contains(
                "nft add rule inet filter output tcp sport { 20, 989 } tcp dport 1024-65535 ct state new accept"
            ),
            "{text}"
        );
        assert!(
            text.contains("iptables -A OUTPUT -p tcp -m multiport --sports 20,989 --dport 1024:65535 -m conntrack --ctstate NEW -j ACCEPT"),
            "{text}"
        );
        assert!(text.contains("CAP_NET_BIND_SERVICE"), "{text}");
        assert!(
            text.contains(
                "\nufw allow out proto tcp from any port 20,989 to any port 1024:65535\n"
            ),
            "{text}"
        );
    }
}
