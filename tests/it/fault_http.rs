//! A fault injector (a test double, named as such): a tiny HTTP/1.1 front placed before the
//! real VictoriaMetrics. It answers some writes itself with an error the real database cannot
//! be made to produce on demand (500, 429 + Retry-After, 413, 400) and forwards the rest.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What to do with one write: `None` forwards it; `Some((status, extra headers, body))`
/// answers with an error.
pub type Rule = dyn Fn(usize, &[u8]) -> Option<(u16, Vec<(String, String)>, String)> + Send + Sync;

pub struct Injector {
    pub port: u16,
    /// (when, status answered) for every request, in order.
    pub log: Arc<Mutex<Vec<(Instant, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Injector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(upstream_port: u16, rule: Arc<Rule>) -> Injector {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(0usize));
    let task = {
        let log = log.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (log, rule, http, seen) =
                    (log.clone(), rule.clone(), http.clone(), seen.clone());
                tokio::spawn(async move {
                    let (rd, mut wr) = sock.into_split();
                    let mut rd = BufReader::new(rd);
                    loop {
                        // Request line and headers.
                        let mut request_line = String::new();
                        if rd.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let path = request_line
                            .split_whitespace()
                            .nth(1)
                            .unwrap_or("/")
                            .to_owned();
                        let mut len = 0usize;
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            if rd.read_line(&mut h).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if h == "\r\n" {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                                headers.push((k.trim().to_owned(), v.trim().to_owned()));
                            }
                        }
                        let mut body = vec![0u8; len];
                        if rd.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let n = {
                            let mut s = seen.lock().unwrap();
                            *s += 1;
                            *s
                        };
                        let (status, extra, text) = match rule(n, &body) {
                            Some(answer) => answer,
                            None => {
                                let mut req = http
                                    .post(format!("http://127.0.0.1:{upstream_port}{path}"))
                                    .body(body);
                                for (k, v) in &headers {
                                    if k.eq_ignore_ascii_case("authorization") {
                                        req = req.header("Authorization", v);
                                    }
                                }
                                match req.send().await {
                                    Ok(r) => (
                                        r.status().as_u16(),
                                        vec![],
                                        r.text().await.unwrap_or_default(),
                                    ),
                                    Err(e) => (502, vec![], e.to_string()),
                                }
                            }
                        };
                        log.lock().unwrap().push((Instant::now(), status));
                        let mut resp =
                            format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", text.len());
                        for (k, v) in extra {
                            resp.push_str(&format!("{k}: {v}\r\n"));
                        }
                        resp.push_str("\r\n");
                        resp.push_str(&text);
                        if wr.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        })
    };
    Injector { port, log, task }
}
