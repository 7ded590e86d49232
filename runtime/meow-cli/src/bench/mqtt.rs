//! A minimal MQTT 3.1.1 client (CONNECT, SUBSCRIBE, PUBLISH QoS 1, PUBACK): just enough to drive
//! Mosquitto with the same workload as the MEOW server benchmark, on the same async runtime.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use futures_lite::io::BufReader;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::channel::Sender;
use smol::lock::Semaphore;
use smol::net::TcpStream;

fn remaining_length(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// Reads one packet: (first byte, body).
async fn read_packet(r: &mut BufReader<TcpStream>) -> anyhow::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 1];
    r.read_exact(&mut head).await?;
    let mut len = 0usize;
    let mut mult = 1usize;
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).await?;
        len += (b[0] & 0x7f) as usize * mult;
        if b[0] & 0x80 == 0 {
            break;
        }
        mult *= 128;
        if mult > 128 * 128 * 128 {
            bail!("bad remaining length");
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok((head[0], body))
}

/// Connects with a clean session.
pub async fn connect(address: &str, client_id: &str) -> anyhow::Result<(TcpStream, BufReader<TcpStream>)> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to mosquitto at {address}"))?;
    stream.set_nodelay(true)?;
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.extend_from_slice(&[4, 0x02, 0, 60]);
    string(&mut body, client_id.as_bytes());
    let mut w = stream.clone();
    w.write_all(&packet(0x10, &body)).await?;
    let mut r = BufReader::new(stream.clone());
    let (kind, ack) = read_packet(&mut r).await?;
    if kind != 0x20 || ack.get(1) != Some(&0) {
        bail!("mosquitto refused the connection");
    }
    Ok((stream, r))
}

/// Subscribes to `topic` at QoS 1.
pub async fn subscribe(w: &mut TcpStream, r: &mut BufReader<TcpStream>, topic: &str) -> anyhow::Result<()> {
    let mut body = vec![0, 1];
    string(&mut body, topic.as_bytes());
    body.push(1);
    w.write_all(&packet(0x82, &body)).await?;
    let (kind, _) = read_packet(r).await?;
    if kind != 0x90 {
        bail!("no SUBACK");
    }
    Ok(())
}

/// Publishes `count` messages at QoS 1 with up to `window` unacknowledged; `payload(i)` makes
/// message i. Returns publish->PUBACK latencies in µs.
pub async fn publish(
    address: &str,
    client_id: &str,
    topic: &str,
    count: u64,
    window: usize,
    pacing: Option<(std::time::Duration, std::time::Duration)>,
    payload: impl Fn(u64) -> Vec<u8>,
) -> anyhow::Result<Vec<u64>> {
    let (mut w, mut r) = connect(address, client_id).await?;
    let sem = Arc::new(Semaphore::new(window));
    let sent: Arc<Mutex<HashMap<u16, Instant>>> = Arc::default();
    let (lat_tx, lat_rx) = smol::channel::unbounded::<u64>();
    let reader = {
        let (sem, sent) = (sem.clone(), sent.clone());
        smol::spawn(async move {
            let mut acked = 0;
            while acked < count {
                let Ok((kind, body)) = read_packet(&mut r).await else {
                    return;
                };
                if kind == 0x40 && body.len() == 2 {
                    let id = u16::from_be_bytes([body[0], body[1]]);
                    if let Some(t) = sent.lock().remove(&id) {
                        let _ = lat_tx.try_send(t.elapsed().as_micros() as u64);
                    }
                    sem.add_permits(1);
                    acked += 1;
                }
            }
        })
    };
    let mut body = Vec::new();
    let start = Instant::now();
    for i in 0..count {
        if let Some((iv, phase)) = pacing {
            smol::Timer::at(start + phase + iv * (i as u32)).await;
        }
        sem.acquire().await.forget();
        let id = (i % 65_535 + 1) as u16;
        body.clear();
        string(&mut body, topic.as_bytes());
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&payload(i));
        sent.lock().insert(id, Instant::now());
        w.write_all(&packet(0x32, &body)).await?;
    }
    reader.await;
    drop(w);
    let mut lats = Vec::new();
    while let Ok(l) = lat_rx.try_recv() {
        lats.push(l);
    }
    Ok(lats)
}

/// Receives `count` QoS 1 messages on `topic`, acknowledging each; `on_payload` sees each payload.
pub async fn consume(
    address: &str,
    client_id: &str,
    topic: &str,
    count: u64,
    ready: Sender<()>,
    mut on_payload: impl FnMut(&[u8]),
) -> anyhow::Result<()> {
    let (mut w, mut r) = connect(address, client_id).await?;
    subscribe(&mut w, &mut r, topic).await?;
    let _ = ready.send(()).await;
    let mut got = 0;
    let mut acks = Vec::new();
    while got < count {
        let (kind, body) = read_packet(&mut r).await?;
        if kind & 0xf0 != 0x30 {
            continue;
        }
        let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
        let id = [body[2 + tlen], body[3 + tlen]];
        on_payload(&body[4 + tlen..]);
        acks.extend_from_slice(&[0x40, 0x02, id[0], id[1]]);
        got += 1;
        if r.buffer().is_empty() || acks.len() > 4096 {
            w.write_all(&acks).await?;
            acks.clear();
        }
    }
    if !acks.is_empty() {
        w.write_all(&acks).await?;
    }
    Ok(())
}
