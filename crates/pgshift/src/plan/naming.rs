//! Names of the objects pgshift creates: `_pgshift_<kind>_<parts>`, kept within 63 bytes
//! by cutting and appending a short hash, so that two long names never collide.

use sha2::{Digest, Sha256};

/// `_pgshift_<kind>_<part1>_<part2>...`, at most 63 bytes.
pub fn internal_name(kind: &str, parts: &[&str]) -> String {
    fit(&format!(
        "{}{kind}_{}",
        super::INTERNAL_PREFIX,
        parts.join("_")
    ))
}

/// `name` itself if it fits in 63 bytes, else cut with a hash (for names PostgreSQL would
/// otherwise truncate silently, such as `<table>_<column>_key`).
pub fn fit(name: &str) -> String {
    if name.len() <= crate::quote::MAX_IDENTIFIER_BYTES {
        return name.to_owned();
    }
    let hash: String = Sha256::digest(name.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut cut = crate::quote::MAX_IDENTIFIER_BYTES - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_long_ones_are_cut_and_hashed() {
        assert_eq!(internal_name("new", &["price"]), "_pgshift_new_price");
        let a = internal_name("new", &[&"é".repeat(40)]);
        let b = internal_name("new", &[&format!("{}x", "é".repeat(40))]);
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert!(a.starts_with("_pgshift_new_"));
    }
}
