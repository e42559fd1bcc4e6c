//! A reader for Java `.properties` text, the format of `zoo.cfg`.
//!
//! It follows `java.util.Properties.load`: `#` and `!` comment lines, `key=value`,
//! `key:value` or `key value`, leading whitespace ignored, a line ending in an odd number
//! of backslashes continues on the next line, escapes `\t \n \r \f \uXXXX` and `\x` → `x`.
//! ZooKeeper then trims keys and values (`String.trim`), and so does [`parse`].

use super::ConfigError;

/// One `key=value` entry with the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Line number of the first physical line of the entry.
    pub line: usize,
    /// The key, unescaped and trimmed.
    pub key: String,
    /// The value, unescaped and trimmed.
    pub value: String,
}

/// Java's `String.trim`: strips every char `<= ' '` from both ends.
pub(crate) fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{c}'
}

/// True if `s` ends in an odd number of backslashes (a line continuation).
fn continues(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits text into physical lines on `\n`, `\r` or `\r\n`.
fn physical_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(i) => {
                out.push(&rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                out.push(rest);
                rest = "";
            }
        }
    }
    out
}

/// Parses properties text into entries, in file order (duplicates are kept; the caller
/// decides, as `Properties` would, that the last one wins).
pub fn parse(text: &str) -> Result<Vec<Entry>, ConfigError> {
    let lines = physical_lines(text);
    let mut entries = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start_matches(is_ws);
        i += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = first.to_string();
        while continues(&logical) {
            logical.pop();
            match lines.get(i) {
                Some(next) => {
                    i += 1;
                    let next = next.trim_start_matches(is_ws);
                    if next.is_empty() {
                        break;
                    }
                    logical.push_str(next);
                }
                None => break,
            }
        }
        let line = start + 1;
        let (raw_key, raw_value) = split_key_value(&logical);
        let key = unescape(raw_key, line)?;
        let value = unescape(raw_value, line)?;
        entries.push(Entry {
            line,
            key: java_trim(&key).to_string(),
            value: java_trim(&value).to_string(),
        });
    }
    Ok(entries)
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace.
fn split_key_value(logical: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = logical.len();
    let mut sep = None;
    for (idx, c) in logical.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || is_ws(c) {
            key_end = idx;
            sep = Some(c);
            break;
        }
    }
    let key = &logical[..key_end];
    let Some(sep) = sep else {
        return (key, "");
    };
    let mut rest = &logical[key_end + sep.len_utf8()..];
    if is_ws(sep) {
        rest = rest.trim_start_matches(is_ws);
        if let Some(r) = rest.strip_prefix(['=', ':']) {
            rest = r;
        }
    }
    (key, rest.trim_start_matches(is_ws))
}

/// Resolves backslash escapes as `Properties.loadConvert` does.
fn unescape(s: &str, line: usize) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                    .ok_or_else(|| ConfigError::Syntax {
                        line,
                        reason: format!("malformed \\uxxxx escape: \\u{hex}"),
                    })?;
                out.push(code);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(usize, String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.line, e.key, e.value))
            .collect()
    }

    /// Expected values come from running `java.util.Properties.load` (OpenJDK 17) on the
    /// same text, then trimming as ZooKeeper does.
    #[test]
    fn matches_java_properties() {
        let text = "# comment\n! bang comment\n   # indented comment\na=1\n  b = 2  \nc:3\nd 4\n\
                    e=\nf\ng = x \\\n    continued\nh=tab\\there\ni=uni\\u0041end\n\
                    j\\ key=spaced key\nk=back\\\\slash\nl=a=b=c\nm :  colon after space\n\
                    n=trailing backslash even \\\\\no=next\n\tp\t=\ttabs\nq=\\\n\n\
                    r=after blank continuation\nserver.1=127.0.0.1:2888:3888;2181";
        let got = kv(text);
        let want: Vec<(usize, &str, &str)> = vec![
            (4, "a", "1"),
            (5, "b", "2"),
            (6, "c", "3"),
            (7, "d", "4"),
            (8, "e", ""),
            (9, "f", ""),
            (10, "g", "x continued"),
            (12, "h", "tab\there"),
            (13, "i", "uniAend"),
            (14, "j key", "spaced key"),
            (15, "k", "back\\slash"),
            (16, "l", "a=b=c"),
            (17, "m", "colon after space"),
            (18, "n", "trailing backslash even \\"),
            (19, "o", "next"),
            (20, "p", "tabs"),
            (21, "q", ""),
            (23, "r", "after blank continuation"),
            (24, "server.1", "127.0.0.1:2888:3888;2181"),
        ];
        let want: Vec<(usize, String, String)> = want
            .into_iter()
            .map(|(l, k, v)| (l, k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn crlf_and_cr_line_ends() {
        assert_eq!(
            kv("a=1\r\nb=2\rc=3"),
            vec![
                (1, "a".into(), "1".into()),
                (2, "b".into(), "2".into()),
                (3, "c".into(), "3".into())
            ]
        );
    }

    #[test]
    fn comment_with_backslash_does_not_continue() {
        assert_eq!(kv("# a \\\nb=1"), vec![(2, "b".into(), "1".into())]);
    }

    #[test]
    fn bad_unicode_escape_is_an_error_with_line() {
        let err = parse("a=1\nb=\\u12").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
        assert!(parse("b=\\uZZZZ").is_err());
    }

    #[test]
    fn trailing_backslash_at_end_of_file() {
        assert_eq!(kv("a=x\\"), vec![(1, "a".into(), "x".into())]);
    }
}
