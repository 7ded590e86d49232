//! KISS framing (the TNC protocol of Chepponis and Karn, 1987, which RNodes and every KISS
//! TNC speak): a frame is `FEND command data FEND`, with `FEND` and `FESC` inside the data
//! escaped as `FESC TFEND` and `FESC TFESC`. The low nibble of the command is the command,
//! the high nibble the port. [`Decoder`] takes bytes as they arrive, in any chunks, and gives
//! whole frames back; garbage between frames and frames larger than its limit are dropped.
//!
//! A bare serial line adds a CRC-16 (the X.25 / HDLC frame check sequence, [`crc16`]) to each
//! data frame: KISS has no integrity check of its own, and a noisy line corrupts bytes. The
//! datagrams inside are authenticated anyway; the CRC lets a receiver drop noise early, count
//! it, and never mistake it for an attack.

/// Frame end.
pub const FEND: u8 = 0xC0;
/// Frame escape.
pub const FESC: u8 = 0xDB;
/// Escaped `FEND`.
pub const TFEND: u8 = 0xDC;
/// Escaped `FESC`.
pub const TFESC: u8 = 0xDD;
/// The data frame command (port 0).
pub const CMD_DATA: u8 = 0x00;

/// One KISS frame: its command byte and its unescaped data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command byte (port in the high nibble).
    pub command: u8,
    /// The data, unescaped.
    pub data: Vec<u8>,
}

/// Encodes `command` and `data` as one KISS frame, appended to `out`.
pub fn encode_into(command: u8, data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + data.len() / 16 + 3);
    out.push(FEND);
    for &b in std::iter::once(&command).chain(data) {
        match b {
            FEND => out.extend_from_slice(&[FESC, TFEND]),
            FESC => out.extend_from_slice(&[FESC, TFESC]),
            b => out.push(b),
        }
    }
    out.push(FEND);
}

/// Encodes `command` and `data` as one KISS frame.
///
/// ```
/// use meow_net::radio::kiss;
/// assert_eq!(kiss::encode(0x00, &[0x01, 0xC0, 0xDB]), [0xC0, 0x00, 0x01, 0xDB, 0xDC, 0xDB, 0xDD, 0xC0]);
/// ```
pub fn encode(command: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(command, data, &mut out);
    out
}

/// A data frame with its CRC-16 appended (little-endian, as HDLC sends it): what a bare serial
/// line carries.
pub fn encode_checked(data: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len() + 2);
    body.extend_from_slice(data);
    body.extend_from_slice(&crc16(data).to_le_bytes());
    encode(CMD_DATA, &body)
}

/// The data of a checked frame, if its CRC matches.
pub fn open_checked(frame: &Frame) -> Option<&[u8]> {
    if frame.command != CMD_DATA || frame.data.len() < 2 {
        return None;
    }
    let (data, crc) = frame.data.split_at(frame.data.len() - 2);
    (crc16(data).to_le_bytes() == crc).then_some(data)
}

/// The CRC-16 of X.25 and HDLC (CRC-16/IBM-SDLC: polynomial 0x1021 reflected, initial value
/// and final XOR 0xFFFF). Its check value, the CRC of `123456789`, is 0x906E.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x8408 } else { crc >> 1 };
        }
    }
    !crc
}

/// A streaming KISS decoder.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    escaped: bool,
    in_frame: bool,
    overflowed: bool,
    max: usize,
    /// Frames dropped for being too large or badly escaped.
    pub dropped: u64,
}

impl Decoder {
    /// A decoder that drops frames whose command and data exceed `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            escaped: false,
            in_frame: false,
            overflowed: false,
            max: max + 1,
            dropped: 0,
        }
    }

    /// Feeds `bytes`; every frame they complete is passed to `frame`.
    pub fn feed(&mut self, bytes: &[u8], mut frame: impl FnMut(Frame)) {
        for &b in bytes {
            if let Some(f) = self.push(b) {
                frame(f);
            }
        }
    }

    fn push(&mut self, b: u8) -> Option<Frame> {
        if b == FEND {
            let done = self.in_frame && !self.buf.is_empty() && !self.overflowed && !self.escaped;
            if self.in_frame && (self.overflowed || self.escaped) {
                self.dropped += 1;
            }
            let frame = done.then(|| {
                let data = self.buf.split_off(1);
                Frame {
                    command: self.buf[0],
                    data,
                }
            });
            self.reset();
            self.in_frame = true;
            return frame;
        }
        if !self.in_frame || self.overflowed {
            return None;
        }
        let byte = match (self.escaped, b) {
            (true, TFEND) => FEND,
            (true, TFESC) => FESC,
            (true, _) => {
                // A bad escape spoils the frame: wait for the next FEND.
                self.overflowed = true;
                self.escaped = false;
                self.buf.clear();
                return None;
            }
            (false, FESC) => {
                self.escaped = true;
                return None;
            }
            (false, b) => b,
        };
        self.escaped = false;
        if self.buf.len() == self.max {
            self.overflowed = true;
            self.buf.clear();
            return None;
        }
        self.buf.push(byte);
        None
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.escaped = false;
        self.overflowed = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn decode_all(bytes: &[u8], max: usize) -> (Vec<Frame>, u64) {
        let mut d = Decoder::new(max);
        let mut frames = Vec::new();
        d.feed(bytes, |f| frames.push(f));
        (frames, d.dropped)
    }

    #[test]
    fn crc16_has_the_x25_check_value() {
        assert_eq!(crc16(b"123456789"), 0x906E);
        assert_eq!(crc16(b""), 0x0000);
    }

    #[test]
    fn frames_round_trip_whatever_the_chunks() {
        let data: Vec<u8> = (0..=255u8).chain([FEND, FESC, FEND]).collect();
        let wire = [encode(CMD_DATA, &data), encode(0x05, &[5]), encode_checked(b"hi")].concat();
        for chunk in [1, 2, 7, wire.len()] {
            let mut d = Decoder::new(1024);
            let mut frames = Vec::new();
            for piece in wire.chunks(chunk) {
                d.feed(piece, |f| frames.push(f));
            }
            assert_eq!(frames.len(), 3, "chunks of {chunk}");
            assert_eq!(
                frames[0],
                Frame {
                    command: CMD_DATA,
                    data: data.clone()
                }
            );
            assert_eq!(
                frames[1],
                Frame {
                    command: 0x05,
                    data: vec![5]
                }
            );
            assert_eq!(open_checked(&frames[2]), Some(&b"hi"[..]));
        }
    }

    #[test]
    fn noise_bad_escapes_and_oversized_frames_are_dropped() {
        let mut wire = b"line noise".to_vec();
        wire.extend_from_slice(&[FEND, 0x00, FESC, 0x01, 0x02, FEND]);
        wire.extend_from_slice(&encode(CMD_DATA, &[7; 40]));
        wire.extend_from_slice(&encode(CMD_DATA, &[8; 4]));
        let (frames, dropped) = decode_all(&wire, 16);
        assert_eq!(
            frames,
            vec![Frame {
                command: CMD_DATA,
                data: vec![8; 4]
            }]
        );
        assert_eq!(dropped, 2);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut wire = encode_checked(b"reading");
        wire[3] ^= 0x10;
        let (frames, _) = decode_all(&wire, 64);
        assert_eq!(open_checked(&frames[0]), None);
    }
}
