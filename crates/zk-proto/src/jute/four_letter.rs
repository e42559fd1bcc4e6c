//! Four-letter words: admin commands sent in place of the first length prefix of a fresh
//! connection (`echo ruok | nc host 2181`).

/// The four-letter words ZooKeeper 3.8 recognises (`FourLetterCommands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FourLetterWord {
    /// Serving configuration.
    Conf,
    /// Connection details.
    Cons,
    /// Reset connection statistics.
    Crst,
    /// Snapshot and log sizes.
    Dirs,
    /// Sessions and ephemeral nodes.
    Dump,
    /// Server environment.
    Envi,
    /// Get the trace mask.
    Gtmk,
    /// Liveness: answers `imok`.
    Ruok,
    /// Set the trace mask (an 8-byte mask follows the word).
    Stmk,
    /// Reset server statistics.
    Srst,
    /// Server details.
    Srvr,
    /// Server details and connections.
    Stat,
    /// Watches by session.
    Wchc,
    /// Watches by path.
    Wchp,
    /// Watch summary.
    Wchs,
    /// Metrics as `key\tvalue` lines.
    Mntr,
    /// `ro` or `rw`.
    Isro,
    /// Tree digest history.
    Hash,
    /// A telnet "interrupt process" sequence (`0xfff4fffd`): close the connection.
    TelnetClose,
}

impl FourLetterWord {
    /// Every word, in ZooKeeper's order.
    pub const ALL: &'static [FourLetterWord] = &[
        FourLetterWord::Conf,
        FourLetterWord::Cons,
        FourLetterWord::Crst,
        FourLetterWord::Dirs,
        FourLetterWord::Dump,
        FourLetterWord::Envi,
        FourLetterWord::Gtmk,
        FourLetterWord::Ruok,
        FourLetterWord::Stmk,
        FourLetterWord::Srst,
        FourLetterWord::Srvr,
        FourLetterWord::Stat,
        FourLetterWord::Wchc,
        FourLetterWord::Wchp,
        FourLetterWord::Wchs,
        FourLetterWord::Mntr,
        FourLetterWord::Isro,
        FourLetterWord::Hash,
        FourLetterWord::TelnetClose,
    ];

    /// The four bytes on the wire.
    pub const fn bytes(self) -> [u8; 4] {
        match self {
            FourLetterWord::Conf => *b"conf",
            FourLetterWord::Cons => *b"cons",
            FourLetterWord::Crst => *b"crst",
            FourLetterWord::Dirs => *b"dirs",
            FourLetterWord::Dump => *b"dump",
            FourLetterWord::Envi => *b"envi",
            FourLetterWord::Gtmk => *b"gtmk",
            FourLetterWord::Ruok => *b"ruok",
            FourLetterWord::Stmk => *b"stmk",
            FourLetterWord::Srst => *b"srst",
            FourLetterWord::Srvr => *b"srvr",
            FourLetterWord::Stat => *b"stat",
            FourLetterWord::Wchc => *b"wchc",
            FourLetterWord::Wchp => *b"wchp",
            FourLetterWord::Wchs => *b"wchs",
            FourLetterWord::Mntr => *b"mntr",
            FourLetterWord::Isro => *b"isro",
            FourLetterWord::Hash => *b"hash",
            FourLetterWord::TelnetClose => [0xff, 0xf4, 0xff, 0xfd],
        }
    }

    /// The command name, as used by `4lw.commands.whitelist` (`"telnet close"` for
    /// [`FourLetterWord::TelnetClose`], as ZooKeeper names it).
    pub const fn name(self) -> &'static str {
        match self {
            FourLetterWord::Conf => "conf",
            FourLetterWord::Cons => "cons",
            FourLetterWord::Crst => "crst",
            FourLetterWord::Dirs => "dirs",
            FourLetterWord::Dump => "dump",
            FourLetterWord::Envi => "envi",
            FourLetterWord::Gtmk => "gtmk",
            FourLetterWord::Ruok => "ruok",
            FourLetterWord::Stmk => "stmk",
            FourLetterWord::Srst => "srst",
            FourLetterWord::Srvr => "srvr",
            FourLetterWord::Stat => "stat",
            FourLetterWord::Wchc => "wchc",
            FourLetterWord::Wchp => "wchp",
            FourLetterWord::Wchs => "wchs",
            FourLetterWord::Mntr => "mntr",
            FourLetterWord::Isro => "isro",
            FourLetterWord::Hash => "hash",
            FourLetterWord::TelnetClose => "telnet close",
        }
    }

    /// The word whose bytes are `first4` (the first 4 bytes of a fresh connection), if any.
    /// Every word, read as a big-endian length, is far above any frame limit, so a match
    /// is never a real frame.
    pub fn from_bytes(first4: [u8; 4]) -> Option<Self> {
        Self::ALL.iter().copied().find(|w| w.bytes() == first4)
    }

    /// The word whose name is `name` (case-sensitive, as in the whitelist).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|w| w.name() == name)
    }
}

impl std::fmt::Display for FourLetterWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_are_no_valid_length() {
        for w in FourLetterWord::ALL {
            assert_eq!(FourLetterWord::from_bytes(w.bytes()), Some(*w));
            assert_eq!(FourLetterWord::from_name(w.name()), Some(*w));
            let as_len = i32::from_be_bytes(w.bytes());
            assert!(
                !(0..=0x10_0000 * 64).contains(&as_len),
                "{w} reads as {as_len}"
            );
        }
        assert_eq!(
            FourLetterWord::from_bytes(*b"ruok"),
            Some(FourLetterWord::Ruok)
        );
        assert_eq!(FourLetterWord::from_bytes([0, 0, 0, 45]), None);
        assert_eq!(FourLetterWord::from_bytes(*b"RUOK"), None);
    }
}
