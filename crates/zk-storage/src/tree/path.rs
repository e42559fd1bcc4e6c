//! znode paths: ZooKeeper's `PathUtils.validatePath`, parent/child split and sequential
//! names.

/// Why a path is not a valid znode path, with the messages of ZooKeeper's
/// `PathUtils.validatePath`. Positions count UTF-16 code units, as Java's do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPath {
    /// The empty string.
    #[error("Path length must be > 0")]
    Empty,
    /// Does not start with `/`.
    #[error("Path must start with / character")]
    NoLeadingSlash,
    /// Ends with `/` (and is not `/`).
    #[error("Path must not end with / character")]
    TrailingSlash,
    /// Contains a NUL character.
    #[error("null character not allowed @{0}")]
    NullCharacter(usize),
    /// Two `/` in a row.
    #[error("empty node name specified @{0}")]
    EmptyNodeName(usize),
    /// A `.` or `..` segment.
    #[error("relative paths not allowed @{0}")]
    Relative(usize),
    /// A control character, a character of U+007F..U+009F, U+D800..U+F8FF (surrogates,
    /// so every character beyond U+FFFF, and the private use area) or U+FFF0..U+FFFF.
    #[error("invalid character @{0}")]
    InvalidCharacter(usize),
}

fn invalid_char(c: u16) -> bool {
    (0x01..=0x1f).contains(&c)
        || (0x7f..=0x9f).contains(&c)
        || (0xd800..=0xf8ff).contains(&c)
        || c >= 0xfff0
}

/// Checks a znode path exactly as ZooKeeper's `PathUtils.validatePath` does.
///
/// ```
/// use zk_storage::tree::{validate_path, InvalidPath};
/// assert_eq!(validate_path("/a/b"), Ok(()));
/// assert_eq!(validate_path("/a//b"), Err(InvalidPath::EmptyNodeName(3)));
/// assert_eq!(validate_path("/a/.."), Err(InvalidPath::Relative(4)));
/// ```
pub fn validate_path(path: &str) -> Result<(), InvalidPath> {
    let bytes = path.as_bytes();
    match bytes.first() {
        None => return Err(InvalidPath::Empty),
        Some(b'/') => {}
        Some(_) => return Err(InvalidPath::NoLeadingSlash),
    }
    if bytes.len() == 1 {
        return Ok(());
    }
    if bytes.last() == Some(&b'/') {
        return Err(InvalidPath::TrailingSlash);
    }
    // Walk UTF-16 code units like Java's char[] (for ASCII, the bytes).
    if path.is_ascii() {
        check_units(path.bytes().map(u16::from))
    } else {
        check_units(path.encode_utf16())
    }
}

/// The per-character rules after the leading `/`; keeps the two previous units and peeks
/// at the next one for the `.`/`..` segment rules.
fn check_units(units: impl Iterator<Item = u16>) -> Result<(), InvalidPath> {
    let mut units = units.peekable();
    let mut before_last: u16 = 0;
    let mut last: u16 = u16::from(b'/');
    units.next(); // the leading '/'
    let mut i = 1usize;
    while let Some(c) = units.next() {
        let next = units.peek().copied();
        let segment_ends = next.is_none() || next == Some(u16::from(b'/'));
        if c == 0 {
            return Err(InvalidPath::NullCharacter(i));
        } else if c == u16::from(b'/') && last == u16::from(b'/') {
            return Err(InvalidPath::EmptyNodeName(i));
        } else if c == u16::from(b'.') && last == u16::from(b'.') {
            if before_last == u16::from(b'/') && segment_ends {
                return Err(InvalidPath::Relative(i));
            }
        } else if c == u16::from(b'.') {
            if last == u16::from(b'/') && segment_ends {
                return Err(InvalidPath::Relative(i));
            }
        } else if invalid_char(c) {
            return Err(InvalidPath::InvalidCharacter(i));
        }
        before_last = last;
        last = c;
        i += 1;
    }
    Ok(())
}

/// Splits a path into its parent path and the child's name: `/a/b` → (`/a`, `b`),
/// `/a` → (`/`, `a`). `None` for the root (or a path without `/`).
pub fn split_parent(path: &str) -> Option<(&str, &str)> {
    let slash = path.rfind('/')?;
    if path.len() <= 1 {
        return None;
    }
    let parent = if slash == 0 { "/" } else { &path[..slash] };
    Some((parent, &path[slash + 1..]))
}

/// The path of a sequential node: `prefix` followed by the parent's stored cversion before
/// the create, formatted `%010d` as a signed 32-bit value (so it wraps to negative
/// numbers after `2147483647`, as in ZooKeeper).
///
/// ```
/// assert_eq!(zk_storage::tree::sequential_path("/q/n-", 7), "/q/n-0000000007");
/// assert_eq!(zk_storage::tree::sequential_path("/q/n-", -1), "/q/n--000000001");
/// ```
pub fn sequential_path(prefix: &str, parent_cversion: i32) -> String {
    format!("{prefix}{parent_cversion:010}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_path_rules() {
        for ok in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/.a",
            "/a/..b",
            "/a/b..",
            "/zookeeper",
            "/ü/中",
        ] {
            assert_eq!(validate_path(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_path(""), Err(InvalidPath::Empty));
        assert_eq!(validate_path("a"), Err(InvalidPath::NoLeadingSlash));
        assert_eq!(validate_path("/a/"), Err(InvalidPath::TrailingSlash));
        assert_eq!(validate_path("//"), Err(InvalidPath::TrailingSlash));
        assert_eq!(validate_path("//a"), Err(InvalidPath::EmptyNodeName(1)));
        assert_eq!(validate_path("/a\0b"), Err(InvalidPath::NullCharacter(2)));
        assert_eq!(validate_path("/."), Err(InvalidPath::Relative(1)));
        assert_eq!(validate_path("/.."), Err(InvalidPath::Relative(2)));
        assert_eq!(validate_path("/a/./b"), Err(InvalidPath::Relative(3)));
        assert_eq!(validate_path("/a/../b"), Err(InvalidPath::Relative(4)));
        assert_eq!(
            validate_path("/a\u{1}"),
            Err(InvalidPath::InvalidCharacter(2))
        );
        assert_eq!(
            validate_path("/a\u{85}"),
            Err(InvalidPath::InvalidCharacter(2))
        );
        assert_eq!(
            validate_path("/\u{e000}"),
            Err(InvalidPath::InvalidCharacter(1))
        );
        assert_eq!(
            validate_path("/\u{fff5}"),
            Err(InvalidPath::InvalidCharacter(1))
        );
        // Beyond the BMP: a surrogate pair in Java, so invalid at its first unit.
        assert_eq!(validate_path("/é😀"), Err(InvalidPath::InvalidCharacter(2)));
        assert_eq!(
            InvalidPath::Relative(4).to_string(),
            "relative paths not allowed @4"
        );
    }

    #[test]
    fn parents_and_sequence_names() {
        assert_eq!(split_parent("/"), None);
        assert_eq!(split_parent("/a"), Some(("/", "a")));
        assert_eq!(split_parent("/a/bc"), Some(("/a", "bc")));
        assert_eq!(sequential_path("/x", 0), "/x0000000000");
        assert_eq!(sequential_path("/x", i32::MAX), "/x2147483647");
        assert_eq!(sequential_path("/x", i32::MIN), "/x-2147483648");
    }
}
