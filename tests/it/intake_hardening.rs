//! The intake, hardened: a caller without a token holds at most a
//! connection and its headers, for a bounded time; names are checked before
//! any cache or API call; TLS from files, renewed in place.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pendingjob_operator::api::MAX_PAYLOAD_BYTES;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::Pki;
use crate::deploy::kustomize;
use crate::destinations::{apply_json, destination};
use crate::intake::{Intake, writer_token};
use crate::jobs::{SOON, setup};
use crate::processes::MockApi2;
use crate::support::{kubectl_stdin, repo_path, wait_until};

/// `host:port` of the intake at `base`.
fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Reads from `stream` until it closes or `within` passes; the bytes read,
/// or `None` if it was still open.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut got)).await;
    read.is_ok().then(|| String::from_utf8_lossy(&got).into_owned())
}

/// A connection without a token that sends the headers of a job with a
/// body of the largest size allowed, 120 KiB of it (then counts itself in
/// `sent`), then a byte every 200 ms, for at most `ticks` bytes.
async fn trickle_body(address: String, path: String, ticks: usize, sent: Arc<AtomicUsize>) {
    let Ok(mut stream) = TcpStream::connect(&address).await else {
        sent.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: intake\r\nContent-Type: application/json\r\nContent-Length: {MAX_PAYLOAD_BYTES}\r\n\r\n"
    );
    let most = vec![b' '; 120 * 1024];
    let send = async {
        let first = async {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&most).await
        };
        let first = tokio::time::timeout(Duration::from_secs(5), first).await;
        sent.fetch_add(1, Ordering::SeqCst);
        first??;
        for _ in 0..ticks {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stream.write_all(b" ").await?;
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), send).await;
}

/// A connection that sends a header line every 200 ms and never ends them,
/// for at most `ticks` lines.
async fn trickle_headers(address: String, ticks: usize) {
    let Ok(mut stream) = TcpStream::connect(&address).await else {
        return;
    };
    let _ = stream.write_all(b"POST /healthz HTTP/1.1\r\nHost: intake\r\n").await;
    for _ in 0..ticks {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream.write_all(b"X-Slow: a\r\n").await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_requests_are_answered_while_unauthenticated_connections_trickle() {
    let env = setup("intake-flood").await;
    let token = writer_token(&env).await;
    let api2 = MockApi2::start(&[]);
    apply_json(&env, &destination("api2", json!({"url": api2.base})));
    let intake = Intake::start(&[]).await;
    let idle = intake.rss_mib();
    let path = format!("/v1/namespaces/{}/destinations/api2/jobs", env.namespace);
    let mut tricklers = Vec::new();
    let sent = Arc::new(AtomicUsize::new(0));
    for _ in 0..200 {
        let trickler = trickle_body(address(&intake.base), path.clone(), 50, sent.clone());
        tricklers.push(tokio::spawn(trickler));
    }
    for _ in 0..50 {
        tricklers.push(tokio::spawn(trickle_headers(address(&intake.base), 50)));
    }
    wait_until("200 connections to send most of their bodies", SOON, || async {
        (sent.load(Ordering::SeqCst) == 200).then_some(())
    })
    .await;
    let mut slowest = Duration::ZERO;
    let mut peak = idle;
    for n in 0..10 {
        let started = Instant::now();
        let (code, body) = intake
            .post(&env.namespace, "api2", Some(&token), None, &format!("{{\"n\":{n}}}"))
            .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(code, 202, "{body}");
        peak = peak.max(intake.rss_mib());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for trickler in tricklers {
        trickler.abort();
    }
    eprintln!(
        "intake under 250 trickling unauthenticated connections: slowest of 10 real requests {:.3} s; \
         RSS {idle:.1} MiB idle, {peak:.1} MiB at most",
        slowest.as_secs_f64()
    );
    assert!(slowest < Duration::from_secs(1), "a real request took {slowest:?}");
    // Before the body was read only after authentication: 10 -> 92 MiB
    // (half of 512 KiB each); 200 x 120 KiB read would be 23 MiB.
    assert!(peak < idle + 12.0, "the intake grew from {idle:.1} to {peak:.1} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_slow_bodies_and_too_many_connections_are_cut() {
    let env = setup("intake-limits").await;
    let token = writer_token(&env).await;
    let args = [
        "--header-read-timeout-seconds",
        "2",
        "--body-read-timeout-seconds",
        "1",
        "--max-connections",
        "4",
    ];
    let intake = Intake::start(&args).await;
    let address = address(&intake.base);

    // Headers that never end: closed after the header read timeout.
    let mut slow = TcpStream::connect(&address).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: intake\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    assert!(
        read_until_closed(&mut slow, Duration::from_secs(10)).await.is_some(),
        "the connection stayed open"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "closed too soon: {:?}",
        started.elapsed()
    );

    // A kept-alive connection that sends nothing more: closed likewise.
    let mut idle = TcpStream::connect(&address).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: intake\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut idle, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // An authenticated body that never arrives: 408 after the body read timeout.
    let mut body = TcpStream::connect(&address).await.expect("connect");
    let head = format!(
        "POST /v1/namespaces/{}/destinations/api2/jobs HTTP/1.1\r\nHost: intake\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 100\r\nConnection: close\r\n\r\n{{\"n\":",
        env.namespace
    );
    body.write_all(head.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut body, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Names are checked before anything else, the token included.
    for path in [
        "/v1/namespaces/Not_A_Namespace/pendingjobs/x",
        "/v1/namespaces/shop/pendingjobs/a..b",
    ] {
        let response = intake
            .http
            .get(format!("{}{path}", intake.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status().as_u16(), 400, "{path}");
        let answer: serde_json::Value = response.json().await.expect("JSON");
        assert!(
            answer["error"].as_str().unwrap_or_default().contains("DNS-1123"),
            "{answer}"
        );
    }

    // Four connections held open: a fifth is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("write");
        held.push(stream);
    }
    wait_until("a connection over the cap to be closed at once", SOON, || async {
        let mut extra = TcpStream::connect(&address).await.ok()?;
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: intake\r\n\r\n").await;
        let answer = read_until_closed(&mut extra, Duration::from_millis(300)).await?;
        answer.is_empty().then_some(())
    })
    .await;
    drop(held);
    wait_until("the intake to serve again once they close", SOON, || async {
        let response = intake.http.get(format!("{}/healthz", intake.base)).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_files_and_a_renewed_certificate_is_used_in_place() {
    let env = setup("intake-tls").await;
    let token = writer_token(&env).await;
    let api2 = MockApi2::start(&[]);
    apply_json(&env, &destination("api2", json!({"url": api2.base})));
    let first = Pki::new();
    let (cert, key) = (first.path("server.crt"), first.path("server.key"));
    let trusting = |pki: &Pki| {
        let roots = reqwest::Certificate::from_pem_bundle(pki.ca.as_bytes()).expect("CA PEM");
        reqwest::Client::builder()
            .tls_certs_only(roots)
            .build()
            .expect("client")
    };
    // The intake runs with the arguments deploy/intake-tls/ gives it, the
    // Secret's files where the pod would mount them.
    let (args, mounted) = tls_overlay();
    let args: Vec<String> = args
        .iter()
        .filter(|arg| !arg.starts_with("--listen"))
        .map(|arg| {
            arg.replace(&format!("{mounted}/tls.crt"), cert.to_str().expect("utf-8"))
                .replace(&format!("{mounted}/tls.key"), key.to_str().expect("utf-8"))
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let intake = Intake::start_with(&args, "https", trusting(&first)).await;
    let (code, body) = intake.post(&env.namespace, "api2", Some(&token), None, "{}").await;
    assert_eq!(code, 202, "{body}");
    let plain = reqwest::get(format!("{}/healthz", intake.base.replace("https://", "http://"))).await;
    assert!(
        plain.is_err() || !plain.expect("answer").status().is_success(),
        "no plain HTTP"
    );

    // A renewal writes new files in place: the new certificate is served.
    let second = Pki::new();
    std::fs::copy(second.path("server.crt"), &cert).expect("new certificate");
    std::fs::copy(second.path("server.key"), &key).expect("new key");
    let renewed = trusting(&second);
    wait_until("the renewed certificate to be served", SOON, || async {
        let response = renewed.get(format!("{}/healthz", intake.base)).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
}

/// The intake's arguments in `deploy/intake-tls/`, and where its
/// certificate Secret is mounted; checks that the API server accepts the
/// overlay and that it mounts the Secret cert-manager is told to write.
fn tls_overlay() -> (Vec<String>, String) {
    let rendered = kustomize("intake-tls");
    let dry_run = kubectl_stdin(&["apply", "--server-side", "--dry-run=server", "-f", "-"], &rendered);
    assert!(dry_run.status.success(), "{dry_run:?}");
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&rendered).expect("YAML");
    let intake = documents
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "pendingjob-intake")
        .expect("the intake's Deployment");
    let pod = &intake["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    let secret = pod["volumes"][0]["secret"]["secretName"]
        .as_str()
        .expect("a Secret volume");
    let certificate =
        std::fs::read_to_string(repo_path("deploy/intake-tls/certificate.yaml")).expect("certificate.yaml");
    let certificate: serde_json::Value = serde_saphyr::from_str(&certificate).expect("YAML");
    assert_eq!(
        certificate["spec"]["secretName"], secret,
        "cert-manager writes the Secret the pod mounts"
    );
    let mounted = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("mounted")
        .to_owned();
    let args = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string").to_owned())
        .collect();
    (args, mounted)
}
