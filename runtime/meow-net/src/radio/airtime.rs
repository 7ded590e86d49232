//! Time on air of a LoRa frame and the duty-cycle budget a radio keeps.
//!
//! The time on air is Semtech's formula (SX1276 datasheet §4.1.1.6, application note
//! AN1200.13): symbols of 2^SF / BW seconds, a preamble of `preamble + 4.25` symbols, and
//! `8 + max(ceil((8·PL − 4·SF + 28 + 16·CRC − 20·IH) / (4·(SF − 2·DE))) · (CR + 4), 0)` payload
//! symbols, with the low-data-rate optimisation (DE) on when a symbol lasts more than 16 ms.
//!
//! The duty cycle is the European rule for the 868 MHz sub-bands (ETSI EN 300 220): at most a
//! share of any one hour on the air, 1 % by default. [`DutyCycle`] keeps the transmissions of
//! the last hour and says when the next frame may go; a radio queues until then instead of
//! transmitting over the budget.

use std::collections::VecDeque;
use std::time::Duration;

/// LoRa modulation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoraParams {
    /// Spreading factor, 6..=12.
    pub spreading_factor: u8,
    /// Bandwidth, Hz (125 000, 250 000, 500 000, …).
    pub bandwidth_hz: u32,
    /// Coding rate denominator: 5..=8 for 4/5..4/8.
    pub coding_rate: u8,
    /// Preamble symbols (8 on most LoRa networks).
    pub preamble: u16,
    /// Whether the payload carries the radio's CRC (on by default).
    pub crc: bool,
    /// Whether the header is implicit (off: an explicit header, the default).
    pub implicit_header: bool,
}

impl LoraParams {
    /// Settings with the common defaults: bandwidth 125 kHz, coding rate 4/5, preamble 8,
    /// CRC on, explicit header.
    pub const fn sf(spreading_factor: u8) -> Self {
        Self {
            spreading_factor,
            bandwidth_hz: 125_000,
            coding_rate: 5,
            preamble: 8,
            crc: true,
            implicit_header: false,
        }
    }

    /// Whether the settings are ones a LoRa radio has.
    pub fn check(&self) -> Result<(), String> {
        if !(6..=12).contains(&self.spreading_factor) {
            return Err(format!("spreading factor {} is not 6..12", self.spreading_factor));
        }
        if !(5..=8).contains(&self.coding_rate) {
            return Err(format!("coding rate 4/{} is not 4/5..4/8", self.coding_rate));
        }
        if !(7_800..=500_000).contains(&self.bandwidth_hz) {
            return Err(format!("bandwidth {} Hz is not 7.8..500 kHz", self.bandwidth_hz));
        }
        Ok(())
    }

    /// One symbol, seconds.
    pub fn symbol_secs(&self) -> f64 {
        f64::from(1u32 << self.spreading_factor) / f64::from(self.bandwidth_hz)
    }

    /// Time on air of one frame of `payload` bytes.
    ///
    /// ```
    /// use meow_net::radio::airtime::LoraParams;
    /// // Semtech's calculator: 51 bytes at SF7/125 kHz take 102.66 ms.
    /// assert_eq!(LoraParams::sf(7).airtime(51).as_micros(), 102_656);
    /// ```
    pub fn airtime(&self, payload: usize) -> Duration {
        let sf = f64::from(self.spreading_factor);
        let t_sym = self.symbol_secs();
        let de = if t_sym > 0.016 { 1.0 } else { 0.0 };
        let crc = if self.crc { 16.0 } else { 0.0 };
        let ih = if self.implicit_header { 20.0 } else { 0.0 };
        let numerator = 8.0 * payload as f64 - 4.0 * sf + 28.0 + crc - ih;
        let per_block = 4.0 * (sf - 2.0 * de);
        let blocks = (numerator / per_block).ceil().max(0.0);
        let payload_symbols = 8.0 + blocks * f64::from(self.coding_rate);
        let preamble = f64::from(self.preamble) + 4.25;
        Duration::from_secs_f64((preamble + payload_symbols) * t_sym)
    }
}

/// The share of each hour a radio may transmit, and its log of the last hour.
#[derive(Debug, Clone)]
pub struct DutyCycle {
    budget: Duration,
    window_ms: u64,
    /// (start ms, airtime) of the transmissions in the window, oldest first.
    log: VecDeque<(u64, Duration)>,
}

impl DutyCycle {
    /// The EU868 default: 1 % of any hour.
    pub fn eu868() -> Self {
        Self::new(0.01)
    }

    /// `share` of any hour (0 < share ≤ 1; 1 means no limit).
    pub fn new(share: f64) -> Self {
        let share = share.clamp(f64::MIN_POSITIVE, 1.0);
        Self {
            budget: Duration::from_secs_f64(3600.0 * share),
            window_ms: 3_600_000,
            log: VecDeque::new(),
        }
    }

    /// Airtime per hour.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    fn forget(&mut self, now_ms: u64) {
        while self.log.front().is_some_and(|(at, _)| at + self.window_ms <= now_ms) {
            self.log.pop_front();
        }
    }

    /// Airtime still available now.
    pub fn left(&mut self, now_ms: u64) -> Duration {
        self.forget(now_ms);
        let used: Duration = self.log.iter().map(|(_, d)| *d).sum();
        self.budget.saturating_sub(used)
    }

    /// When (Unix ms, ≥ `now_ms`) a frame of `airtime` may start. A frame longer than the whole
    /// budget may start when the window is empty (it could never go otherwise).
    pub fn next_slot(&mut self, now_ms: u64, airtime: Duration) -> u64 {
        self.forget(now_ms);
        let mut used: Duration = self.log.iter().map(|(_, d)| *d).sum();
        let mut at = now_ms;
        for (start, d) in &self.log {
            if used + airtime <= self.budget {
                break;
            }
            used = used.saturating_sub(*d);
            at = start + self.window_ms;
        }
        at
    }

    /// Records a frame of `airtime` sent at `at_ms`.
    pub fn record(&mut self, at_ms: u64, airtime: Duration) {
        self.log.push_back((at_ms, airtime));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    #[test]
    fn airtime_matches_semtechs_calculator() {
        // Figures of Semtech's LoRa calculator (and The Things Network's, which uses it):
        // preamble 8, explicit header, CRC on, coding rate 4/5, 125 kHz.
        let cases = [
            (7, 13, 46.336),
            (7, 51, 102.656),
            (9, 51, 328.704),
            (10, 51, 616.448),
            (12, 51, 2465.792),
            (12, 13, 1155.072),
        ];
        for (sf, len, want) in cases {
            let got = ms(LoraParams::sf(sf).airtime(len));
            assert!((got - want).abs() < 0.01, "SF{sf} {len} bytes: {got} ms, want {want}");
        }
        let wide = LoraParams {
            bandwidth_hz: 250_000,
            coding_rate: 8,
            ..LoraParams::sf(8)
        };
        assert!((ms(wide.airtime(20)) - 69.888).abs() < 0.01, "{}", ms(wide.airtime(20)));
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(LoraParams::sf(13).check().unwrap_err().contains("spreading factor 13"));
        let cr = LoraParams {
            coding_rate: 9,
            ..LoraParams::sf(7)
        };
        assert!(cr.check().unwrap_err().contains("4/9"));
        assert!(LoraParams::sf(7).check().is_ok());
    }

    #[test]
    fn the_duty_cycle_holds_over_any_hour() {
        let mut dc = DutyCycle::eu868();
        let frame = Duration::from_secs(4);
        let mut sent = Vec::new();
        let mut now = 0;
        for _ in 0..30 {
            let at = dc.next_slot(now, frame);
            assert!(at >= now);
            dc.record(at, frame);
            sent.push(at);
            now = at;
        }
        // 36 s an hour: nine 4-second frames, then the window must slide.
        assert!(sent[..9].iter().all(|&t| t == 0));
        assert_eq!(sent[9], 3_600_000);
        for (i, &start) in sent.iter().enumerate() {
            let in_hour = sent[i..].iter().take_while(|&&t| t < start + 3_600_000).count();
            assert!(in_hour as u64 * 4 <= 36, "{in_hour} frames in the hour from {start}");
        }
        assert_eq!(
            dc.left(sent[29]),
            Duration::from_secs(24),
            "three frames in the fourth hour"
        );
        assert_eq!(dc.left(sent[29] + 3_600_000), Duration::from_secs(36));
    }
}
