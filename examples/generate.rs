//! Writes `completions/` and `man/` from the command-line definition:
//! `cargo run --example generate [DIR]` (default: the repository).

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").to_string());
    mp::generate::write_all(std::path::Path::new(&dir))
}
