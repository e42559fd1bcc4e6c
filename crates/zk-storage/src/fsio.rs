//! Small file-system helpers shared by the log, the epochs and the snapshots.

use std::fs::File;
use std::io;
use std::path::Path;

/// fsyncs a directory, so that a rename or an unlink inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
