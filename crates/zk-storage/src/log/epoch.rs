//! `acceptedEpoch` and `currentEpoch`, stored durably.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File name of the accepted epoch (ZooKeeper's name).
pub const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
/// File name of the current epoch (ZooKeeper's name).
pub const CURRENT_EPOCH_FILE: &str = "currentEpoch";
/// The longest epoch file accepted (a decimal i64 and a newline fit easily).
const MAX_EPOCH_FILE_BYTES: u64 = 64;

/// Errors of an epoch store.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    /// Reading or writing an epoch file failed.
    #[error("epoch file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An epoch file does not hold a decimal epoch.
    #[error("epoch file {path} does not hold an epoch: {content:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it holds (lossy, cut to 64 bytes).
        content: String,
    },
    /// The stored epochs break `currentEpoch ≤ acceptedEpoch`.
    #[error("{location}: currentEpoch {current} is greater than acceptedEpoch {accepted}")]
    Inconsistent {
        /// Where the epochs live.
        location: String,
        /// The stored acceptedEpoch.
        accepted: i64,
        /// The stored currentEpoch.
        current: i64,
    },
    /// A write that would lower an epoch, or raise currentEpoch above acceptedEpoch, or a
    /// negative epoch.
    #[error("{location}: refusing to set {name} to {to}: {reason}")]
    Refused {
        /// Where the epochs live.
        location: String,
        /// `acceptedEpoch` or `currentEpoch`.
        name: &'static str,
        /// The refused value.
        to: i64,
        /// Why.
        reason: String,
    },
}

/// Durable storage of the two Zab epochs of a node.
///
/// `acceptedEpoch` is the last epoch the node acknowledged in LEADERINFO (or proposed as a
/// leader); `currentEpoch` the epoch of the last NEWLEADER it accepted. Both only grow, and
/// `currentEpoch ≤ acceptedEpoch` always holds. A setter returns once the value is durable.
pub trait EpochStore {
    /// The stored acceptedEpoch (`None` if it was never written).
    fn accepted_epoch(&self) -> Option<i64>;
    /// The stored currentEpoch (`None` if it was never written).
    fn current_epoch(&self) -> Option<i64>;
    /// Durably sets acceptedEpoch. Refused when lower than the stored one or than
    /// currentEpoch.
    fn set_accepted_epoch(&mut self, epoch: i64) -> Result<(), EpochError>;
    /// Durably sets currentEpoch. Refused when lower than the stored one or above
    /// acceptedEpoch.
    fn set_current_epoch(&mut self, epoch: i64) -> Result<(), EpochError>;
}

fn check_accepted(
    location: &dyn Fn() -> String,
    accepted: Option<i64>,
    current: Option<i64>,
    to: i64,
) -> Result<(), EpochError> {
    let refuse = |reason: String| EpochError::Refused {
        location: location(),
        name: ACCEPTED_EPOCH_FILE,
        to,
        reason,
    };
    if to < 0 {
        return Err(refuse("epochs are not negative".into()));
    }
    if let Some(a) = accepted
        && to < a
    {
        return Err(refuse(format!("it is already {a}")));
    }
    if let Some(c) = current
        && to < c
    {
        return Err(refuse(format!("currentEpoch is {c}")));
    }
    Ok(())
}

fn check_current(
    location: &dyn Fn() -> String,
    accepted: Option<i64>,
    current: Option<i64>,
    to: i64,
) -> Result<(), EpochError> {
    let refuse = |reason: String| EpochError::Refused {
        location: location(),
        name: CURRENT_EPOCH_FILE,
        to,
        reason,
    };
    if to < 0 {
        return Err(refuse("epochs are not negative".into()));
    }
    if let Some(c) = current
        && to < c
    {
        return Err(refuse(format!("it is already {c}")));
    }
    match accepted {
        Some(a) if to <= a => Ok(()),
        Some(a) => Err(refuse(format!("acceptedEpoch is only {a}"))),
        None => Err(refuse("acceptedEpoch was never set".into())),
    }
}

/// An [`EpochStore`] in memory (for simulations): survives a simulated crash because it
/// is written through, like the file store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemEpochStore {
    accepted: Option<i64>,
    current: Option<i64>,
}

impl MemEpochStore {
    /// A store with neither epoch set.
    pub fn new() -> Self {
        Self::default()
    }
}

fn mem_location() -> String {
    "memory".to_owned()
}

impl EpochStore for MemEpochStore {
    fn accepted_epoch(&self) -> Option<i64> {
        self.accepted
    }

    fn current_epoch(&self) -> Option<i64> {
        self.current
    }

    fn set_accepted_epoch(&mut self, epoch: i64) -> Result<(), EpochError> {
        check_accepted(&mem_location, self.accepted, self.current, epoch)?;
        self.accepted = Some(epoch);
        Ok(())
    }

    fn set_current_epoch(&mut self, epoch: i64) -> Result<(), EpochError> {
        check_current(&mem_location, self.accepted, self.current, epoch)?;
        self.current = Some(epoch);
        Ok(())
    }
}

/// An [`EpochStore`] as two files in a directory, `acceptedEpoch` and `currentEpoch`, each a
/// decimal number, like ZooKeeper's. Each write goes to `<name>.tmp`, is fsynced, renamed
/// over the file, and the directory is fsynced, so a crash leaves the old or the new value.
#[derive(Debug)]
pub struct FileEpochStore {
    dir: PathBuf,
    accepted: Option<i64>,
    current: Option<i64>,
}

impl FileEpochStore {
    /// Opens the epoch files in `dir` (creating the directory if needed). Missing files
    /// read as `None`; stored epochs that break `currentEpoch ≤ acceptedEpoch` are an error.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, EpochError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| EpochError::Io {
            path: dir.clone(),
            source,
        })?;
        let accepted = read_epoch(&dir.join(ACCEPTED_EPOCH_FILE))?;
        let current = read_epoch(&dir.join(CURRENT_EPOCH_FILE))?;
        if let (Some(a), Some(c)) = (accepted, current)
            && c > a
        {
            return Err(EpochError::Inconsistent {
                location: dir.display().to_string(),
                accepted: a,
                current: c,
            });
        }
        Ok(Self {
            dir,
            accepted,
            current,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

impl EpochStore for FileEpochStore {
    fn accepted_epoch(&self) -> Option<i64> {
        self.accepted
    }

    fn current_epoch(&self) -> Option<i64> {
        self.current
    }

    fn set_accepted_epoch(&mut self, epoch: i64) -> Result<(), EpochError> {
        check_accepted(&|| self.location(), self.accepted, self.current, epoch)?;
        write_epoch(&self.dir, ACCEPTED_EPOCH_FILE, epoch)?;
        self.accepted = Some(epoch);
        Ok(())
    }

    fn set_current_epoch(&mut self, epoch: i64) -> Result<(), EpochError> {
        check_current(&|| self.location(), self.accepted, self.current, epoch)?;
        write_epoch(&self.dir, CURRENT_EPOCH_FILE, epoch)?;
        self.current = Some(epoch);
        Ok(())
    }
}

fn read_epoch(path: &Path) -> Result<Option<i64>, EpochError> {
    use std::io::Read;
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(EpochError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_EPOCH_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| EpochError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&bytes);
    match text.trim().parse::<i64>() {
        Ok(v) if v >= 0 && bytes.len() as u64 <= MAX_EPOCH_FILE_BYTES => Ok(Some(v)),
        _ => Err(EpochError::Parse {
            path: path.to_path_buf(),
            content: text.chars().take(64).collect(),
        }),
    }
}

fn write_epoch(dir: &Path, name: &str, epoch: i64) -> Result<(), EpochError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EpochError::Io { path, source }
    };
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(format!("{epoch}\n").as_bytes())
            .map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    crate::fsio::sync_dir(dir).map_err(io_err(dir))
}
