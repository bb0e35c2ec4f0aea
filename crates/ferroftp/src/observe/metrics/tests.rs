//! Unit tests of [`super`]: the listener's routing and limits, and the rendered text.

use tokio::net::TcpListener;

use super::*;

/// One request to a metrics listener serving "body": the raw answer, read to its end
/// (the server closes each connection after one answer).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    String::from_utf8(answer).unwrap()
}

#[tokio::test]
async fn requests_are_routed_by_method_and_path() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, Arc::new(|| "body\n".to_owned())));
    let r = |req: &'static str| exchange(addr, req.as_bytes());
    let status = |answer: &str| answer.split(' ').nth(1).unwrap_or_default().to_owned();
    for req in [
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /metrics?x=1 HTTP/1.0\r\n\r\n",
        "GET http://h:9/metrics HTTP/1.1\r\n\r\n",
    ] {
        let answer = r(req).await;
        // HTTP/1.0 for a 1.0 request.
        assert_eq!(status(&answer), "200", "{answer}");
        assert!(
            answer.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{answer}"
        );
        assert!(answer.contains("\r\nContent-Length: 5\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nbody\n"), "{answer}");
    }
    let head = r("HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&head), "200");
    assert!(
        head.contains("\r\nContent-Length: 5\r\n") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let post = r("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status(&post), "405");
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
    assert!(
        post.ends_with("Only GET (and HEAD) are allowed on /metrics\n"),
        "{post}"
    );
    for req in [
        "GET / HTTP/1.1\r\n\r\n",
        "GET /metricsx HTTP/1.1\r\n\r\n",
        "POST /other HTTP/1.1\r\n\r\n",
    ] {
        let answer = r(req).await;
        assert_eq!(status(&answer), "404", "{req}");
        assert!(answer.ends_with("Not found: try /metrics\n"), "{answer}");
    }
    for req in [
        "GET /metrics\r\n\r\n",
        "GET /metrics SPDY/3\r\n\r\n",
        "\u{1}\r\n\r\n",
    ] {
        assert_eq!(status(&r(req).await), "400", "{req:?}");
    }
    // A request head over 8 KiB is refused.
    let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(&exchange(addr, big.as_bytes()).await), "431");
    server.abort();
}

#[test]
fn every_family_has_help_and_type_and_fixed_series_start_at_zero() {
    let m = Arc::new(Metrics::default());
    let l = m.listener("127.0.0.1:21".parse().unwrap(), ListenerMode::Explicit);
    let open = l.open();
    m.login_ok(LoginMethod::Anonymous);
    m.login_failed();
    m.transfer(Verb::Retr, true, 10, TransferResult::Ok);
    m.transfer(Verb::Stor, false, 5, TransferResult::Aborted);
    m.transfer(Verb::List, false, 7, TransferResult::Failed);
    let held = m.passive_port();
    let text = m.render(Snapshot { bans_active: 2 });
    for line in [
        "ferroftp_sessions_open{listener=\"127.0.0.1:21\",mode=\"explicit\"} 1",
        "ferroftp_sessions_total{listener=\"127.0.0.1:21\",mode=\"explicit\"} 1",
        "ferroftp_logins_total{result=\"ok\",method=\"anonymous\"} 1",
        "ferroftp_logins_total{result=\"ok\",method=\"password\"} 0",
        "ferroftp_logins_total{result=\"failed\",method=\"password\"} 1",
        "ferroftp_transfer_bytes_total{direction=\"download\",tls=\"true\"} 10",
        "ferroftp_transfer_bytes_total{direction=\"upload\",tls=\"false\"} 5",
        "ferroftp_transfer_bytes_total{direction=\"listing\",tls=\"false\"} 7",
        "ferroftp_transfers_total{verb=\"RETR\",result=\"ok\"} 1",
        "ferroftp_transfers_total{verb=\"STOR\",result=\"aborted\"} 1",
        "ferroftp_transfers_total{verb=\"LIST\",result=\"failed\"} 1",
        "ferroftp_transfers_total{verb=\"MLSD\",result=\"ok\"} 0",
        "ferroftp_passive_ports_in_use 1",
        "ferroftp_bans_active 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    drop((open, held));
    let text = m.render(Snapshot::default());
    assert!(text.contains("ferroftp_sessions_open{listener=\"127.0.0.1:21\",mode=\"explicit\"} 0"));
    assert!(text.contains("ferroftp_passive_ports_in_use 0\n"));
    // Every sample belongs to a family announced with HELP and TYPE just before.
    let mut announced = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            announced.insert(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(announced.contains(name), "{name} has no TYPE");
        }
    }
    assert_eq!(
        text.matches("# HELP ").count(),
        text.matches("# TYPE ").count()
    );
}

#[test]
fn counters_are_exact_under_concurrency() {
    let m = Arc::new(Metrics::default());
    let l = m.listener("127.0.0.1:21".parse().unwrap(), ListenerMode::Plain);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let m = Arc::clone(&m);
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    let _open = l.open();
                    let _port = m.passive_port();
                    m.transfer(Verb::Stor, false, 3, TransferResult::Ok);
                    m.login_failed();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = m.render(Snapshot::default());
    for line in [
        "ferroftp_sessions_total{listener=\"127.0.0.1:21\",mode=\"plain\"} 80000",
        "ferroftp_sessions_open{listener=\"127.0.0.1:21\",mode=\"plain\"} 0",
        "ferroftp_transfer_bytes_total{direction=\"upload\",tls=\"false\"} 240000",
        "ferroftp_transfers_total{verb=\"STOR\",result=\"ok\"} 80000",
        "ferroftp_logins_total{result=\"failed\",method=\"password\"} 80000",
        "ferroftp_passive_ports_in_use 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}
