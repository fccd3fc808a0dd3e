//! A recording TCP relay in front of an emulator: the tests read every request a store or a
//! probe really sent (method, path, Host header), to count them or check their addressing.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the relay saw: one (method, path, host) per request.
#[derive(Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<Vec<u8>>>>);

impl RequestLog {
    pub fn requests(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for conn in self.0.lock().unwrap().iter() {
            let text = String::from_utf8_lossy(conn);
            let mut lines = text.split("\r\n");
            while let Some(line) = lines.next() {
                let mut parts = line.split(' ');
                let (Some(method), Some(path), Some("HTTP/1.1")) = (parts.next(), parts.next(), parts.next()) else { continue };
                if !["GET", "PUT", "POST", "DELETE", "HEAD"].contains(&method) {
                    continue;
                }
                let host = lines.by_ref().take_while(|l| !l.is_empty()).find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("host").then(|| value.trim().to_string())
                });
                out.push((method.to_string(), path.to_string(), host.unwrap_or_default()));
            }
        }
        out
    }
}

/// A TCP relay on 127.0.0.1 to `upstream` (`http://host:port`) that keeps every byte the
/// client sent. Returns its port and log; it runs until the test's runtime ends.
pub async fn recording_relay(upstream: &str) -> (u16, RequestLog) {
    let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = RequestLog::default();
    let conns = log.0.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            let upstream = upstream.clone();
            let conns = conns.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let index = {
                    let mut all = conns.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let upward = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        conns.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let downward = async {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(upward, downward);
            });
        }
    });
    (port, log)
}
