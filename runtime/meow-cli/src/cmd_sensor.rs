//! `meow sensor`: a simulated IoT sensor that reports readings to a contact over MEOW, each in the
//! smallest envelope class (176 bytes, one LoRa frame when sealed per packet).

use std::time::Duration;

use anyhow::Context;
use meow_net::gateway::GatewayClient;
use meow_net::port::LinkAddress;
use meow_node::Node;
use meow_node::sync::{self, Delivery};
use meow_proto::envelope::ContentType;
use meow_proto::padding::LORA_CLASS;
use smol::lock::Mutex;

/// Simulated temperature and humidity: a slow drift, and a heat spike from reading `hot_at` on.
#[derive(Debug, Clone)]
pub struct Simulator {
    n: u64,
    state: u64,
    hot_at: u64,
}

impl Simulator {
    /// A simulator with a seed; readings `hot_at..hot_at+4` climb above 30 °C.
    pub fn new(seed: u64, hot_at: u64) -> Self {
        Self {
            n: 0,
            state: seed | 1,
            hot_at,
        }
    }

    fn noise(&mut self) -> f64 {
        // xorshift64: reproducible noise for a simulation (not cryptography).
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % 1000) as f64 / 1000.0 - 0.5
    }

    /// The next reading as compact JSON, e.g. `{"t":21.4,"h":41,"n":3}`.
    pub fn next_reading(&mut self) -> (f64, String) {
        self.n += 1;
        let spike = match self.n.checked_sub(self.hot_at) {
            Some(k) if k < 4 => [8.5, 10.2, 11.0, 9.1][k as usize],
            _ => 0.0,
        };
        let t = ((21.5 + self.noise() + spike) * 10.0).round() / 10.0;
        let h = (41.0 + self.noise() * 4.0).round();
        (t, format!("{{\"t\":{t},\"h\":{h},\"n\":{}}}", self.n))
    }
}

/// Seals a reading to `to`, delivers it; returns the envelope size and what became of it.
pub async fn report(node: &Mutex<Node>, to: &str, reading: &str) -> anyhow::Result<(usize, Delivery)> {
    let items = node
        .lock()
        .await
        .queue_message(to, ContentType::JSON, reading.as_bytes().to_vec())?;
    let size = items.last().map_or(0, |i| i.envelope.len());
    Ok((size, sync::deliver_message(node, items).await?))
}

/// One reading the usual way: the line to print.
async fn report_line(node: &Mutex<Node>, to: &str, reading: &str) -> anyhow::Result<String> {
    let (size, d) = report(node, to, reading).await?;
    let class = if size == LORA_CLASS {
        "LoRa class"
    } else {
        "larger class"
    };
    Ok(match d {
        Delivery::Delivered { server } => format!("{reading} -> {to} ({size}-byte envelope, {class}, via {server})"),
        Delivery::Queued { reason } => format!("{reading} -> {to} queued: {reason}"),
        Delivery::Handed => format!("{reading} -> {to} handed to the device that holds the conversation"),
    })
}

/// One reading in the compact form through a gateway link (the usual way while the
/// conversation is not at version 2): the line to print. The reading is queued first and the
/// outbox flushed through the link in order, so readings that waited while the link was down
/// go before it.
async fn report_over_link(
    node: &Mutex<Node>,
    to: &str,
    reading: &str,
    address: &LinkAddress,
    gateway: &mut Option<GatewayClient>,
    opened_before: &mut bool,
) -> anyhow::Result<String> {
    let item = node
        .lock()
        .await
        .queue_compact(to, ContentType::JSON, reading.as_bytes().to_vec())?;
    let Some(item) = item else {
        let line = report_line(node, to, reading).await?;
        return Ok(format!(
            "{line} [conversation not at version 2 yet: sent the usual way]"
        ));
    };
    let (size, seq) = (item.envelope.len(), item.seq);
    let client = match gateway {
        Some(g) => g,
        None => {
            let server = item
                .servers
                .first()
                .with_context(|| format!("{to} lists no server to use as the gateway"))?;
            let timeout = if address.is_radio() {
                RADIO_TIMEOUT
            } else {
                LINK_TIMEOUT
            };
            let clock = meow_clock::SystemClock::shared();
            match GatewayClient::connect(address, server.key, timeout, clock).await {
                Ok(client) => gateway.insert(client),
                // A link that worked before and is gone for now (a radio unplugged): the
                // reading waits with the others. One that never opened is a mistake to show.
                Err(e) if *opened_before => {
                    let waiting = node.lock().await.outbox_len(None);
                    return Ok(format!(
                        "{reading} -> {to} queued: {e} ({waiting} waiting for the link; they go first when it is back)"
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    *opened_before = true;
    let flush = sync::flush_over_link(node, client).await?;
    let budget = airtime_left(client);
    // A link that failed (a radio unplugged), rather than a gateway that did not answer in
    // time, is opened again for the next reading.
    if matches!(flush.stopped, Some(meow_net::ClientError::Connect { .. })) {
        *gateway = None;
    }
    let earlier = flush.delivered.iter().filter(|(i, _)| i.seq != seq).count();
    let earlier = match earlier {
        0 => String::new(),
        n => format!(" (+{n} that waited for the link)"),
    };
    Ok(match flush.delivered.iter().find(|(i, _)| i.seq == seq) {
        Some((_, air)) => {
            let open = air
                .open
                .map(|(o, a)| format!("; session opened with {o} + {a} bytes"))
                .unwrap_or_default();
            format!(
                "{reading} -> {to} ({size}-byte compact envelope, {} bytes on the link, answer {}{open}, via {address}){earlier}{budget}",
                air.frame, air.answer
            )
        }
        None => {
            let why = flush.stopped.map_or_else(|| "not sent".to_owned(), |e| e.to_string());
            format!(
                "{reading} -> {to} queued: {why} ({} waiting for the link; they go first when it is back){budget}",
                flush.waiting
            )
        }
    })
}

/// `; airtime left …` for a radio link, nothing for others.
fn airtime_left(gateway: &GatewayClient) -> String {
    match gateway.status().airtime {
        Some((left, budget)) => format!(
            "; airtime left {:.1} s of {:.0} s this hour",
            left.as_secs_f64(),
            budget.as_secs_f64()
        ),
        None => String::new(),
    }
}

/// How long the sensor waits for a radio gateway's answer (which may wait for the gateway's
/// own duty cycle).
const RADIO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the sensor waits for the gateway's answer.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the sensor loop; with `link`, readings go through a link session with that gateway.
pub async fn run(
    node: &Mutex<Node>,
    to: &str,
    every: Duration,
    count: Option<u64>,
    sim: &mut Simulator,
    link: Option<&LinkAddress>,
) -> anyhow::Result<()> {
    let recorded = {
        let n = node.lock().await;
        let servers = &n.contact(to)?.servers;
        servers.iter().find_map(|s| n.server_via(&s.key))
    };
    let recorded = match (link, recorded) {
        (None, Some(via)) => {
            let via = LinkAddress::parse(&via).map_err(anyhow::Error::msg)?;
            eprintln!("note: reporting through {via} (set with `meow servers add --via`)");
            Some(via)
        }
        _ => None,
    };
    let link = link.or(recorded.as_ref());
    let mut gateway = None;
    let mut opened = false;
    let mut sent = 0u64;
    loop {
        let (_, reading) = sim.next_reading();
        let line = match link {
            Some(address) => report_over_link(node, to, &reading, address, &mut gateway, &mut opened).await?,
            None => report_line(node, to, &reading).await?,
        };
        println!("{line}");
        sent += 1;
        if count.is_some_and(|c| sent >= c) {
            return Ok(());
        }
        if sent.is_multiple_of(5) {
            // Read acknowledgements and key updates from time to time.
            let _ = sync::fetch(node, Duration::ZERO).await;
        }
        smol::Timer::after(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_fit_the_lora_class_budget_and_spike() {
        let mut s = Simulator::new(7, 3);
        let readings: Vec<(f64, String)> = (0..8).map(|_| s.next_reading()).collect();
        assert!(readings.iter().all(|(_, r)| r.len() <= 37), "{readings:?}");
        assert!(readings[..2].iter().all(|(t, _)| *t < 25.0));
        assert!(readings[2..6].iter().all(|(t, _)| *t > 29.0), "{readings:?}");
        assert!(readings[6..].iter().all(|(t, _)| *t < 25.0));
    }
}
