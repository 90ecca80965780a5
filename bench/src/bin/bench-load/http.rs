//! Scenario 5's client: keep-alive HTTP/1.1 connections POSTing envelopes in a closed loop.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wshub_bench::burst_envelope;

/// Scenario 5's client: `concurrency` keep-alive connections POSTing in a closed loop.
pub fn http_load(addr: &str, target: &str, concurrency: usize, seconds: f64, bytes: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = Bytes::from(burst_envelope(0, bytes).to_json());
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let result = runtime.block_on(async {
        let mut senders = Vec::new();
        for _ in 0..concurrency {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(connection);
            senders.push(sender);
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
        let mut tasks = Vec::new();
        for mut sender in senders {
            let (ok, failed, body) = (Arc::clone(&ok), Arc::clone(&failed), body.clone());
            let (addr, target) = (addr.to_owned(), target.to_owned());
            tasks.push(tokio::spawn(async move {
                while tokio::time::Instant::now() < deadline {
                    let request = http::Request::post(target.as_str())
                        .header(http::header::HOST, addr.as_str())
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(body.clone()))
                        .map_err(io::Error::other)?;
                    let answered = async {
                        sender.ready().await?;
                        let response = sender.send_request(request).await?;
                        let status = response.status();
                        response.into_body().collect().await?;
                        Ok::<_, hyper::Error>(status)
                    };
                    match tokio::time::timeout_at(deadline + Duration::from_secs(5), answered).await
                    {
                        Ok(Ok(status)) if status.is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(Ok(_)) => failed.fetch_add(1, Ordering::Relaxed),
                        Ok(Err(e)) => return Err(io::Error::other(e)),
                        Err(_) => return Err(io::Error::other("no answer within 5 s")),
                    };
                }
                Ok::<_, io::Error>(())
            }));
        }
        for task in tasks {
            task.await.map_err(io::Error::other)??;
        }
        Ok::<_, io::Error>(started.elapsed())
    });
    match result {
        Ok(took) => {
            let ok = ok.load(Ordering::Relaxed);
            println!(
                "rps {:.0} {ok} {}",
                ok as f64 / took.as_secs_f64(),
                failed.load(Ordering::Relaxed)
            );
        }
        Err(e) => {
            println!("error {e}");
            std::process::exit(1);
        }
    }
}
