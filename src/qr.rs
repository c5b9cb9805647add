//! QR codes of the link that opens the web page with a code: on the terminal, and as SVG or
//! PNG files for printing (the code written beneath).
//!
//! On a terminal the code is drawn in explicit colours, black modules on a white ground with
//! the four-module quiet zone the standard asks for, so a phone reads it on dark and light
//! themes alike (drawn in the terminal's own colours, it came out inverted on dark themes,
//! which most scanners do not read).

use std::io::Write;
use std::path::Path;

use qrcode::{Color, EcLevel, QrCode};

/// Modules of white around the code (ISO/IEC 18004's quiet zone).
const QUIET: usize = 4;

/// The link that opens the page at `page` with `code` in its fragment.
pub fn link(page: &str, code: &str) -> String {
    crate::signal::web::page_link(page, code)
}

/// The modules of `text`'s QR code with the quiet zone around them, row by row (true: dark).
fn modules(text: &str) -> Option<Vec<Vec<bool>>> {
    let qr = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let width = qr.width();
    let colors = qr.to_colors();
    let size = width + 2 * QUIET;
    let mut rows = vec![vec![false; size]; size];
    for (i, color) in colors.iter().enumerate() {
        rows[QUIET + i / width][QUIET + i % width] = *color == Color::Dark;
    }
    Some(rows)
}

/// The QR code as lines of half blocks, black on white (256-colour escapes), each line reset
/// at its end.
pub fn terminal(text: &str) -> Option<String> {
    const INK: &str = "\x1b[38;5;16;48;5;231m";
    const RESET: &str = "\x1b[0m";
    let rows = modules(text)?;
    let mut out = String::new();
    for pair in rows.chunks(2) {
        out.push_str(INK);
        for x in 0..pair[0].len() {
            let top = pair[0][x];
            let bottom = pair.get(1).is_some_and(|row| row[x]);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push_str(RESET);
        out.push('\n');
    }
    Some(out)
}

/// Writes the QR code of `link` to `path`, as SVG or PNG by its extension, with `code` as text
/// beneath.
pub fn write_file(path: &Path, link: &str, code: &str) -> std::io::Result<()> {
    let bytes = match extension(path).as_deref() {
        Some("svg") => svg(link, code),
        Some("png") => png(link, code),
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the file name must end in .svg or .png",
            ))
        }
    }
    .ok_or_else(|| std::io::Error::other("the link is too long for a QR code"))?;
    let mut file = std::fs::File::create(path)?;
    file.write_all(&bytes)?;
    file.sync_all()
}

/// `svg` or `png` (lower case) when `path` ends so.
pub fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .filter(|e| e == "svg" || e == "png")
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// An SVG of the code: one module per unit, the code in text beneath.
fn svg(link: &str, code: &str) -> Option<Vec<u8>> {
    let rows = modules(link)?;
    let n = rows.len();
    let text_height = 8;
    let mut path = String::new();
    for (y, row) in rows.iter().enumerate() {
        for (x, dark) in row.iter().enumerate() {
            if *dark {
                path.push_str(&format!("M{x} {y}h1v1h-1z"));
            }
        }
    }
    let height = n + text_height;
    Some(
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {n} {height}\" \
             width=\"{w}\" height=\"{h}\" shape-rendering=\"crispEdges\">\n\
             <rect width=\"{n}\" height=\"{height}\" fill=\"#ffffff\"/>\n\
             <path d=\"{path}\" fill=\"#000000\"/>\n\
             <text x=\"{mid}\" y=\"{ty}\" font-family=\"monospace\" font-size=\"4\" \
             text-anchor=\"middle\" fill=\"#000000\">{text}</text>\n</svg>\n",
            w = n * 8,
            h = height * 8,
            mid = n as f32 / 2.0,
            ty = n + 3,
            text = xml_escape(code),
        )
        .into_bytes(),
    )
}

/// Pixels per module in the PNG.
const SCALE: usize = 8;
/// Pixels per dot of the PNG's lettering.
const DOT: usize = 4;

/// A 1-bit greyscale PNG of the code, the code lettered beneath (5×7 dots per character;
/// characters without a glyph are drawn as `?`, the SVG has the exact text).
fn png(link: &str, code: &str) -> Option<Vec<u8>> {
    let rows = modules(link)?;
    let qr_px = rows.len() * SCALE;
    let chars: Vec<char> = code.chars().collect();
    let text_px = chars.len() * 6 * DOT;
    let width = qr_px.max(text_px + 2 * QUIET * SCALE);
    let height = qr_px + 7 * DOT + QUIET * SCALE;
    // true = black
    let mut pixels = vec![false; width * height];
    let left = (width - qr_px) / 2;
    for (y, row) in rows.iter().enumerate() {
        for (x, dark) in row.iter().enumerate() {
            if *dark {
                for dy in 0..SCALE {
                    let start = (y * SCALE + dy) * width + left + x * SCALE;
                    pixels[start..start + SCALE].fill(true);
                }
            }
        }
    }
    let text_left = (width - text_px) / 2;
    for (i, c) in chars.iter().enumerate() {
        let glyph = glyph(*c);
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..5 {
                if bits & (0x10 >> gx) != 0 {
                    for dy in 0..DOT {
                        let y = qr_px + gy * DOT + dy;
                        let start = y * width + text_left + (i * 6 + gx) * DOT;
                        pixels[start..start + DOT].fill(true);
                    }
                }
            }
        }
    }
    Some(encode_png(width, height, &pixels))
}

/// 5×7 glyphs (rows top to bottom, the high bit of five on the left).
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        'a' => [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E],
        'c' => [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E],
        'd' => [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F],
        'e' => [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        'f' => [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08],
        'g' => [0x00, 0x0F, 0x11, 0x0F, 0x01, 0x11, 0x0E],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E],
        'j' => [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'm' => [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11],
        'n' => [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10],
        'q' => [0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01],
        'r' => [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'u' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D],
        'v' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'w' => [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A],
        'x' => [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11],
        'y' => [0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'z' => [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F],
        ' ' => [0; 7],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

/// A PNG of 1-bit greyscale (0 black, 1 white), its image data in stored (uncompressed)
/// deflate blocks: small enough at one bit a pixel, and no compressor needed.
fn encode_png(width: usize, height: usize, black: &[bool]) -> Vec<u8> {
    let stride = width.div_ceil(8);
    let mut raw = Vec::with_capacity((stride + 1) * height);
    for y in 0..height {
        raw.push(0); // filter: none
        let row = &black[y * width..(y + 1) * width];
        for byte in row.chunks(8) {
            let mut b = 0u8;
            for (i, dark) in byte.iter().enumerate() {
                if !dark {
                    b |= 0x80 >> i;
                }
            }
            // Padding bits past the row's end are white.
            if byte.len() < 8 {
                b |= 0xFF >> byte.len();
            }
            raw.push(b);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]); // 1 bit, greyscale, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_qr_has_explicit_colours_and_a_quiet_zone() {
        let image = terminal("http://192.0.2.1:8080/#7-guitar-ocean").unwrap();
        let lines: Vec<&str> = image.lines().collect();
        assert!(lines
            .iter()
            .all(|l| l.starts_with("\x1b[38;5;16;48;5;231m") && l.ends_with("\x1b[0m")));
        // Four blank modules on top: the first two lines are white.
        for line in &lines[..2] {
            let inner = &line["\x1b[38;5;16;48;5;231m".len()..line.len() - 4];
            assert!(inner.chars().all(|c| c == ' '), "{line:?}");
        }
    }

    #[test]
    fn files_are_valid_svg_and_png() {
        let svg = String::from_utf8(svg("http://h/#7-a-b", "7-a-b").unwrap()).unwrap();
        assert!(svg.contains("<text") && svg.contains(">7-a-b</text>"));
        let png = png("http://h/#7-a-b", "7-a-b").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        // The IEND chunk's CRC is the well-known one.
        assert_eq!(&png[png.len() - 4..], &[0xAE, 0x42, 0x60, 0x82]);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(extension(Path::new("a.PNG")).as_deref(), Some("png"));
        assert_eq!(extension(Path::new("a.jpg")), None);
    }
}
