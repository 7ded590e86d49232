//! QR codes of card texts: a PNG file and a rendering for terminals.

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module in PNG output.
const SCALE: usize = 8;
/// Quiet zone around the code, in modules (the QR standard asks for 4).
const QUIET: usize = 4;

/// The text is too long for a QR code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("text too long for a QR code")]
pub struct QrError;

fn modules(text: &str) -> Result<(usize, Vec<bool>), QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|_| QrError)?;
    let width = code.width();
    let dark = code.to_colors().into_iter().map(|c| c == Color::Dark).collect();
    Ok((width, dark))
}

fn is_dark(width: usize, dark: &[bool], x: usize, y: usize) -> bool {
    let inside = |v: usize| (QUIET..QUIET + width).contains(&v);
    inside(x) && inside(y) && dark[(y - QUIET) * width + (x - QUIET)]
}

/// The QR code of `text` as a grayscale PNG image.
pub fn png(text: &str) -> Result<Vec<u8>, QrError> {
    let (width, dark) = modules(text)?;
    let side = width + 2 * QUIET;
    let px = side * SCALE;
    let mut pixels = Vec::with_capacity(px * px);
    for y in 0..px {
        for x in 0..px {
            pixels.push(if is_dark(width, &dark, x / SCALE, y / SCALE) {
                0u8
            } else {
                255u8
            });
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, px as u32, px as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|_| QrError)?;
        writer.write_image_data(&pixels).map_err(|_| QrError)?;
    }
    Ok(out)
}

/// The QR code of `text` drawn with Unicode half blocks (two modules per character cell),
/// light modules as blocks so it scans on dark terminals.
pub fn terminal(text: &str) -> Result<String, QrError> {
    let (width, dark) = modules(text)?;
    let side = width + 2 * QUIET;
    let mut out = String::new();
    for y in (0..side).step_by(2) {
        for x in 0..side {
            let top = !is_dark(width, &dark, x, y);
            let bottom = y + 1 < side && !is_dark(width, &dark, x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_a_png_signature_and_terminal_is_square() {
        let p = png("meow:card:hello").unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        let t = terminal("meow:card:hello").unwrap();
        let lines: Vec<&str> = t.lines().collect();
        let w = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == w));
        assert_eq!(lines.len(), w.div_ceil(2));
        assert!(png(&"x".repeat(5000)).is_err());
    }
}
