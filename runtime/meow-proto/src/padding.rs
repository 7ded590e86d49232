//! Padding size classes: every envelope is padded to one of a few fixed sizes, so a server or an
//! observer learns only the class of a message, never its length.
//!
//! The smallest class is sized for LoRa: a deposit of a class-0 envelope sealed per packet to a
//! server (see [`crate::datagram`]) is at most [`LORA_FRAME_MAX`] bytes with every header included.

/// Largest LoRa frame payload.
pub const LORA_FRAME_MAX: usize = 255;

/// Envelope sizes in bytes, smallest first.
pub const SIZE_CLASSES: [usize; 6] = [176, 512, 2048, 8192, 32768, 131072];

/// The LoRa class.
pub const LORA_CLASS: usize = SIZE_CLASSES[0];

/// The largest envelope.
pub const MAX_ENVELOPE: usize = SIZE_CLASSES[SIZE_CLASSES.len() - 1];

/// The smallest class that holds `len` bytes, if any.
pub fn class_for(len: usize) -> Option<usize> {
    SIZE_CLASSES.iter().copied().find(|&c| c >= len)
}

/// Whether `len` is exactly a class size.
pub fn is_class_size(len: usize) -> bool {
    SIZE_CLASSES.contains(&len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_increasing_and_chosen_minimally() {
        assert!(SIZE_CLASSES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(class_for(1), Some(176));
        assert_eq!(class_for(176), Some(176));
        assert_eq!(class_for(177), Some(512));
        assert_eq!(class_for(MAX_ENVELOPE + 1), None);
    }
}
