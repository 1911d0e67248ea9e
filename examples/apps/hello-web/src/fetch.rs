//! `hello-web fetch [--timeout-ms N] http://host:port/path`: a minimal HTTP/1.0 client inside the
//! image, which has no shell, curl or wget. Tests run it with `kubectl exec` to see what a pod
//! can reach (NetworkPolicies, cluster DNS). Prints the body and exits 0 on a 2xx answer; exits 1
//! with the reason (DNS, refused, timed out, status) otherwise.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Default time for DNS, connect and the whole answer together.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read (an example app's pages are small).
const MAX_ANSWER: u64 = 1 << 20;

/// The parts of an `http://` URL the client needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses `http://host[:port][/path]` (no https: in-cluster traffic here is plain HTTP).
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{url}: bad port {p:?}"))?),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Target {
        host: host.to_string(),
        port,
        path,
    })
}

/// Parses the arguments after `fetch`.
pub fn parse_args(args: &[String]) -> Result<(Duration, Target), String> {
    let mut timeout = DEFAULT_TIMEOUT;
    let mut url = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--timeout-ms" => {
                let v = it.next().ok_or("--timeout-ms needs a value")?;
                timeout = Duration::from_millis(v.parse().map_err(|_| format!("--timeout-ms {v}: not a number"))?);
            }
            u if url.is_none() => url = Some(parse_url(u)?),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok((
        timeout,
        url.ok_or("usage: hello-web fetch [--timeout-ms N] http://host:port/path")?,
    ))
}

/// GETs the target; returns the body of a 2xx answer.
pub async fn fetch(timeout: Duration, t: &Target) -> Result<String, String> {
    let what = format!("http://{}:{}{}", t.host, t.port, t.path);
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| format!("{what}: cannot connect: {e}"))?;
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            t.path, t.host
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("{what}: reading the answer: {e}"))?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer.as_str(), ""));
        let status = head.split_whitespace().nth(1).unwrap_or_default();
        if status.starts_with('2') {
            Ok(body.to_string())
        } else {
            Err(format!(
                "{what}: answered {:?}",
                head.lines().next().unwrap_or_default()
            ))
        }
    })
    .await
    .map_err(|_| format!("{what}: no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_arguments_parse() {
        let t = parse_url("http://peer-web.ns.svc.cluster.local:8080/x?y=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("peer-web.ns.svc.cluster.local", 8080, "/x?y=1")
        );
        assert_eq!(parse_url("http://10.96.0.1").unwrap().port, 80);
        assert!(parse_url("https://x").unwrap_err().contains("only http://"));
        assert!(parse_url("http://x:99999/").unwrap_err().contains("bad port"));
        let (timeout, _) = parse_args(&["--timeout-ms".into(), "250".into(), "http://a:1/".into()]).unwrap();
        assert_eq!(timeout, Duration::from_millis(250));
        assert!(parse_args(&[]).unwrap_err().contains("usage"));
    }

    #[tokio::test]
    async fn fetches_a_page_and_reports_what_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let app = crate::router(crate::Config::from_lookup(|_| None).unwrap());
            axum::serve(listener, app).await.unwrap();
        });
        let ok = Target {
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
        };
        assert!(
            fetch(DEFAULT_TIMEOUT, &ok)
                .await
                .unwrap()
                .contains(crate::DEFAULT_GREETING)
        );
        let missing = Target {
            host: "127.0.0.1".into(),
            port,
            path: "/nope".into(),
        };
        assert!(fetch(DEFAULT_TIMEOUT, &missing).await.unwrap_err().contains("404"));
        let closed = Target {
            host: "127.0.0.1".into(),
            port: 1,
            path: "/".into(),
        };
        assert!(
            fetch(DEFAULT_TIMEOUT, &closed)
                .await
                .unwrap_err()
                .contains("cannot connect")
        );
    }
}
