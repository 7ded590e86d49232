//! The canonical binary encoding every MEOW wire type is built from.
//!
//! Fixed-size fields are written raw, integers as minimal LEB128 varints, byte strings and lists
//! with a varint length in front. There is exactly one encoding of each value: decoding rejects
//! non-minimal varints, trailing bytes and out-of-range lengths, so `decode -> encode` gives back
//! the same bytes and a signature over the encoding is a signature over the value.

use core::fmt;

/// Why bytes could not be decoded. `what` names the field being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated input while reading {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// The input goes on after the value ended.
    #[error("{count} unexpected trailing byte(s) after {what}")]
    TrailingBytes {
        /// The value that ended.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// A varint was longer than needed or overflowed 64 bits.
    #[error("invalid varint in {what}")]
    BadVarint {
        /// The field being read.
        what: &'static str,
    },
    /// A length or count is above the limit for that field.
    #[error("{what} is too long: {len} > {max}")]
    TooLong {
        /// The field being read.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The largest length accepted.
        max: u64,
    },
    /// A text field is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    BadUtf8 {
        /// The field being read.
        what: &'static str,
    },
    /// A tag, flag or enum value that this version does not know.
    #[error("unknown {what} value {value}")]
    UnknownValue {
        /// The field being read.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// The object's version byte names a version this implementation does not speak.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// The object.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// The magic bytes at the start do not match.
    #[error("not a MEOW {what}")]
    BadMagic {
        /// The object expected.
        what: &'static str,
    },
    /// A key field does not hold a valid key.
    #[error("invalid {what}")]
    BadKey {
        /// The key field.
        what: &'static str,
    },
    /// A value breaks a rule of its type (for example unsorted or duplicate list items).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field being read.
        what: &'static str,
        /// The rule broken.
        reason: &'static str,
    },
}

/// A cursor over bytes being decoded.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reader({}/{})", self.pos, self.buf.len())
    }
}

impl<'a> Reader<'a> {
    /// Starts reading at the first byte of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was read.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { what, count }),
        }
    }

    /// Reads an object's version byte; fails unless it is `version`.
    pub fn version(&mut self, version: u8, what: &'static str) -> Result<(), DecodeError> {
        match self.u8(what)? {
            v if v == version => Ok(()),
            v => Err(DecodeError::UnsupportedVersion { what, version: v }),
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { what });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// A big-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A minimal unsigned LEB128 varint of at most 64 bits.
    pub fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.u8(what)?;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                return Err(DecodeError::BadVarint { what });
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(DecodeError::BadVarint { what });
                }
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint { what })
    }

    /// A varint that must not exceed `max`.
    pub fn varint_max(&mut self, max: u64, what: &'static str) -> Result<u64, DecodeError> {
        let len = self.varint(what)?;
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        Ok(len)
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.varint_max(max as u64, what)?;
        self.take(len as usize, what)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, max: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.bytes(max, what)?).map_err(|_| DecodeError::BadUtf8 { what })
    }

    /// A boolean written as 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::UnknownValue {
                what,
                value: value.into(),
            }),
        }
    }

    /// An optional value: a presence byte (0 or 1), then the value.
    pub fn option<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool(what)? { f(self).map(Some) } else { Ok(None) }
    }

    /// A list: a varint count of at most `max`, then the items.
    pub fn list<T>(
        &mut self,
        max: usize,
        what: &'static str,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.varint_max(max as u64, what)? as usize;
        // Each item takes at least one byte: never reserve more than the input could hold.
        let mut out = Vec::with_capacity(count.min(self.remaining()));
        for _ in 0..count {
            out.push(f(self)?);
        }
        Ok(out)
    }
}

/// Appends encoded fields to a buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Raw bytes, no length.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// A big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// A big-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// A minimal LEB128 varint.
    pub fn varint(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return self;
            }
            self.buf.push(byte | 0x80);
        }
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.varint(bytes.len() as u64).raw(bytes)
    }

    /// A length-prefixed UTF-8 string.
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// A boolean as 0 or 1.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// An optional value: a presence byte, then the value.
    pub fn option<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
                self
            }
        }
    }

    /// A list: a varint count, then the items.
    pub fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.varint(items.len() as u64);
        for item in items {
            f(self, item);
        }
        self
    }
}

/// Number of bytes the varint encoding of `v` takes.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

/// Lowercase hex of `bytes` (ids shown to people and in JSON).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `N` bytes from exactly `2 * N` hex digits (either case).
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A type with one canonical encoding.
pub trait Encode {
    /// Appends the encoding to `w`.
    fn encode(&self, w: &mut Writer);

    /// Appends the encoding to an existing buffer.
    fn encode_into(&self, buf: &mut Vec<u8>) {
        let mut w = Writer {
            buf: core::mem::take(buf),
        };
        self.encode(&mut w);
        *buf = w.buf;
    }

    /// The encoding as a new buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }
}

/// A type that can be read back from its canonical encoding.
pub trait Decode: Sized {
    /// Name used in errors.
    const WHAT: &'static str;

    /// Reads one value from `r`.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Reads a value that must use every byte of `bytes`.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish(Self::WHAT)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_lengths() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX.into(), u64::MAX] {
            let mut w = Writer::new();
            w.varint(v);
            assert_eq!(w.len(), varint_len(v), "length of {v}");
            let mut r = Reader::new(w.as_slice());
            assert_eq!(r.varint("v").unwrap(), v);
            r.finish("v").unwrap();
        }
    }

    #[test]
    fn varint_rejects_non_minimal_and_overflow() {
        let bad: [&[u8]; 4] = [
            &[0x80, 0x00],
            &[0xff, 0x00],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ];
        for b in bad {
            assert_eq!(Reader::new(b).varint("v"), Err(DecodeError::BadVarint { what: "v" }));
        }
    }

    #[test]
    fn bytes_respect_the_limit_and_do_not_overread() {
        let mut w = Writer::new();
        w.bytes(b"hello");
        assert!(matches!(
            Reader::new(w.as_slice()).bytes(4, "b"),
            Err(DecodeError::TooLong { .. })
        ));
        assert_eq!(Reader::new(w.as_slice()).bytes(5, "b").unwrap(), b"hello");
        assert!(matches!(
            Reader::new(&w.as_slice()[..3]).bytes(5, "b"),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn huge_list_count_does_not_allocate() {
        let mut w = Writer::new();
        w.varint(1_000_000);
        let err = Reader::new(w.as_slice()).list(usize::MAX, "l", |r| r.u8("x"));
        assert!(matches!(err, Err(DecodeError::Truncated { .. })));
    }
}
