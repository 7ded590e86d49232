//! `meow sensor`: a simulated IoT sensor that reports readings to a contact over MEOW, each in the
//! smallest envelope class (176 bytes, one LoRa frame when sealed per packet).

use std::time::Duration;

use anyhow::Context;
use meow_net::gateway::GatewayClient;
use meow_node::Node;
use meow_node::sync::{self, Delivery};
use meow_proto::Address;
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
    })
}

/// One reading in the compact form through a gateway link (the usual way while the
/// conversation is not at version 2): the line to print.
async fn report_over_link(
    node: &Mutex<Node>,
    to: &str,
    reading: &str,
    address: &Address,
    gateway: &mut Option<GatewayClient>,
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
    let size = item.envelope.len();
    let client = match gateway {
        Some(g) => g,
        None => {
            let server = item
                .servers
                .first()
                .with_context(|| format!("{to} lists no server to use as the gateway"))?;
            gateway.insert(GatewayClient::connect(address, server.key, LINK_TIMEOUT).await?)
        }
    };
    Ok(match sync::deliver_over_link(node, item, client).await? {
        Ok(air) => {
            let open = air
                .open
                .map(|(o, a)| format!("; session opened with {o} + {a} bytes"))
                .unwrap_or_default();
            format!(
                "{reading} -> {to} ({size}-byte compact envelope, {} bytes on the air, answer {}{open}, via {address})",
                air.frame, air.answer
            )
        }
        Err(e) => format!("{reading} -> {to} queued: {e} (the next send or sync delivers it)"),
    })
}

/// How long the sensor waits for the gateway's answer.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the sensor loop; with `link`, readings go through a link session with that gateway.
pub async fn run(
    node: &Mutex<Node>,
    to: &str,
    every: Duration,
    count: Option<u64>,
    sim: &mut Simulator,
    link: Option<&Address>,
) -> anyhow::Result<()> {
    node.lock().await.contact(to)?;
    let mut gateway = None;
    let mut sent = 0u64;
    loop {
        let (_, reading) = sim.next_reading();
        let line = match link {
            Some(address) => report_over_link(node, to, &reading, address, &mut gateway).await?,
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
