//! Files other programs may change under the editor (the project, its variables' values): each is
//! looked at once a second, by its modification time and length.

use std::path::Path;

/// What a file on disk looks like: its modification time and length (`None` when it is not there). The
/// length catches most changes made within the file system's time resolution.
pub type DiskStamp = Option<(std::time::SystemTime, u64)>;

fn disk_stamp(path: &Path) -> DiskStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Notices when another program changes a file, looking at most once a second (each look is a
/// `stat`, and the editor asks for a frame a second to make it).
#[derive(Debug)]
pub struct FileWatch {
    stamp: DiskStamp,
    checked_at: f64,
}

impl Default for FileWatch {
    fn default() -> Self {
        Self {
            stamp: None,
            checked_at: f64::NEG_INFINITY,
        }
    }
}

impl FileWatch {
    /// Whether a second has passed since the last look (cheap: no file system call).
    pub fn due(&self, now_secs: f64) -> bool {
        const RECHECK_SECS: f64 = 1.0;
        now_secs - self.checked_at >= RECHECK_SECS
    }

    /// The file is as it is now (just read or written by Braid itself).
    pub fn seen(&mut self, path: &Path, now_secs: f64) {
        self.stamp = disk_stamp(path);
        self.checked_at = now_secs;
    }

    /// `Some(stamp)` when, looking again (a second after the last look), the file is not as last seen;
    /// it then counts as seen.
    pub fn changed(&mut self, path: &Path, now_secs: f64) -> Option<DiskStamp> {
        if !self.due(now_secs) {
            return None;
        }
        self.checked_at = now_secs;
        let stamp = disk_stamp(path);
        (stamp != self.stamp).then(|| {
            self.stamp = stamp;
            stamp
        })
    }
}
