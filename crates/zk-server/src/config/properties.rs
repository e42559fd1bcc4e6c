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

/// The logical lines of `text` with the (1-based) line each starts on: a port of
/// `java.util.Properties.LineReader.readLine`, quirks included (a lone continuation
/// backslash on the last line yields an empty line when the input ends right after its
/// newline, and nothing when more — even just the `\n` of a `\r\n` — follows).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut line_of = Vec::with_capacity(chars.len());
    let mut line = 1;
    for (i, &c) in chars.iter().enumerate() {
        line_of.push(line);
        if c == '\n' || (c == '\r' && chars.get(i + 1) != Some(&'\n')) {
            line += 1;
        }
    }
    let mut out = Vec::new();
    let mut off = 0;
    let mut skip_lf = false;
    'lines: loop {
        let mut buf: Vec<char> = Vec::new();
        let mut start = 1;
        let mut skip_ws = true;
        let mut appended_line_begin = false;
        let mut preceding_backslash = false;
        let len = loop {
            let Some(&c) = chars.get(off) else {
                if buf.is_empty() {
                    break 'lines;
                }
                break buf.len() - usize::from(preceding_backslash);
            };
            off += 1;
            if skip_lf {
                skip_lf = false;
                if c == '\n' {
                    continue;
                }
            }
            if skip_ws {
                if is_ws(c) {
                    continue;
                }
                if !appended_line_begin && (c == '\r' || c == '\n') {
                    continue;
                }
                skip_ws = false;
                appended_line_begin = false;
            }
            if buf.is_empty() && (c == '#' || c == '!') {
                // A comment: skip to the end of the physical line.
                loop {
                    let Some(&b) = chars.get(off) else {
                        break 'lines;
                    };
                    off += 1;
                    if b == '\r' || b == '\n' {
                        break;
                    }
                }
                skip_ws = true;
                continue;
            }
            if c != '\n' && c != '\r' {
                if buf.is_empty() {
                    start = line_of.get(off - 1).copied().unwrap_or(line);
                }
                buf.push(c);
                preceding_backslash = c == '\\' && !preceding_backslash;
            } else {
                if buf.is_empty() {
                    skip_ws = true;
                    continue;
                }
                if off >= chars.len() {
                    break buf.len() - usize::from(preceding_backslash);
                }
                if preceding_backslash {
                    // The backslash joins the next line, minus its leading whitespace.
                    buf.pop();
                    skip_ws = true;
                    appended_line_begin = true;
                    preceding_backslash = false;
                    if c == '\r' {
                        skip_lf = true;
                    }
                } else {
                    break buf.len();
                }
            }
        };
        buf.truncate(len);
        out.push((start, buf.into_iter().collect()));
    }
    out
}

/// Parses properties text into entries, in file order (duplicates are kept; the caller
/// decides, as `Properties` would, that the last one wins).
pub fn parse(text: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    for (line, logical) in logical_lines(text) {
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

/// Resolves backslash escapes as `Properties.loadConvert` does. `\\uXXXX` escapes are
/// UTF-16 units, so surrogate pairs combine; a lone surrogate becomes U+FFFD.
fn unescape(s: &str, line: usize) -> Result<String, ConfigError> {
    let mut units: Vec<u16> = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    let push = |units: &mut Vec<u16>, c: char| {
        let mut b = [0u16; 2];
        units.extend_from_slice(c.encode_utf16(&mut b));
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            push(&mut units, c);
            continue;
        }
        match chars.next() {
            Some('t') => push(&mut units, '\t'),
            Some('n') => push(&mut units, '\n'),
            Some('r') => push(&mut units, '\r'),
            Some('f') => push(&mut units, '\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let unit = (hex.len() == 4 && hex.chars().all(|h| h.is_ascii_hexdigit()))
                    .then(|| u16::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| ConfigError::Syntax {
                        line,
                        reason: format!("malformed \\uxxxx escape: \\u{hex}"),
                    })?;
                units.push(unit);
            }
            Some(other) => push(&mut units, other),
            None => {}
        }
    }
    Ok(String::from_utf16_lossy(&units))
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

    fn unhex(h: &str) -> String {
        let bytes: Vec<u8> = (0..h.len() / 2)
            .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    /// 795 generated texts (escapes, continuations, comments, separators, CR/LF mixes)
    /// with the result of OpenJDK 17's `Properties.load(Reader)` on each, keys and values
    /// trimmed as ZooKeeper does (lone surrogates shown as U+FFFD on both sides):
    /// `hex(text) ok hex(k)=hex(v),...` or `hex(text) err`.
    #[test]
    fn agrees_with_java_on_generated_inputs() {
        let cases = include_str!("../../testdata/properties-java.txt");
        let mut checked = 0;
        for line in cases.lines() {
            let mut parts = line.split(' ');
            let text = unhex(parts.next().unwrap());
            let outcome = parts.next().unwrap();
            let got = parse(&text);
            if outcome == "err" {
                assert!(got.is_err(), "{text:?}: Java refused it, we gave {got:?}");
            } else {
                let mut want = std::collections::BTreeMap::new();
                for kv in parts
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                {
                    let (k, v) = kv.split_once('=').unwrap();
                    want.insert(unhex(k), unhex(v));
                }
                let mut have = std::collections::BTreeMap::new();
                for e in got.unwrap_or_else(|e| panic!("{text:?}: {e}")) {
                    have.insert(e.key, e.value);
                }
                assert_eq!(have, want, "{text:?}");
            }
            checked += 1;
        }
        assert_eq!(checked, 795);
    }

    #[test]
    fn java_line_reader_quirks() {
        // A lone continuation backslash on the last line: an empty entry when the input
        // ends right after its newline (or right after it), none when more follows.
        assert_eq!(
            kv("a=1\n\\\n"),
            vec![(1, "a".into(), "1".into()), (2, "".into(), "".into())]
        );
        assert_eq!(
            kv("a=1\n\\"),
            vec![(1, "a".into(), "1".into()), (2, "".into(), "".into())]
        );
        assert_eq!(kv("a=1\n\\\r\n"), vec![(1, "a".into(), "1".into())]);
        // After a continuation that left nothing, a '#' starts a comment.
        assert_eq!(kv("\\\n#x=1\ny=2"), vec![(3, "y".into(), "2".into())]);
        // ... but after a continuation with text, it is part of the value.
        assert_eq!(kv("a=1\\\n#2"), vec![(1, "a".into(), "1#2".into())]);
        // \u escapes are UTF-16: pairs combine.
        assert_eq!(
            kv("k=\\uD83D\\uDE00"),
            vec![(1, "k".into(), "\u{1F600}".into())]
        );
        assert_eq!(kv("k=\\uD800"), vec![(1, "k".into(), "\u{FFFD}".into())]);
        assert!(parse("k=\\u+123").is_err());
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
