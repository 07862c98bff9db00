//! Which process records a run, so that a run whose Braid was killed (SIGKILL, a crash, the machine
//! stopping) reads as *interrupted* rather than *running* forever. Stored per running run in the
//! `recorders` table; removed when the run's end is written.
//!
//! An owner is `host`, boot id, pid and the process's start time (so a reused pid is not mistaken for
//! the recorder). Linux's `/proc` tells; where it can't (another OS, another machine sharing the folder),
//! nothing is claimed and the run keeps reading as running.

use std::path::Path;

/// This process as an owner; `None` where `/proc` can't tell.
pub(super) fn this_process() -> Option<String> {
    identity(std::process::id())
}

/// Whether the process that recorded a run is certainly gone.
pub(super) fn is_gone(owner: &str) -> bool {
    let mut parts = owner.split('\t');
    let (Some(host), Some(_boot), Some(pid)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if read_trimmed(Path::new("/proc/sys/kernel/hostname")).as_deref() != Some(host) {
        // Recorded on another machine (a shared folder): that machine alone can tell.
        return false;
    }
    match identity(pid) {
        Some(now) => now != owner,
        // The pid is not running: gone, provided /proc works here at all.
        None => Path::new("/proc/self/stat").exists(),
    }
}

fn identity(pid: u32) -> Option<String> {
    let host = read_trimmed(Path::new("/proc/sys/kernel/hostname"))?;
    let boot = read_trimmed(Path::new("/proc/sys/kernel/random/boot_id"))?;
    let process = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses): state is the first, the
    // start time (clock ticks since boot) the 20th.
    let start = process.rsplit_once(')')?.1.split_whitespace().nth(19)?;
    Some(format!("{host}\t{boot}\t{pid}\t{start}"))
}

fn read_trimmed(path: &Path) -> Option<String> {
    Some(std::fs::read_to_string(path).ok()?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_not_gone_and_a_finished_one_is() {
        let Some(me) = this_process() else {
            return; // no /proc here: nothing is ever claimed
        };
        assert!(!is_gone(&me), "{me}");

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let owner = identity(child.id()).unwrap_or_else(|| {
            // It may have ended already; an owner made up for its pid is as good.
            let mut parts: Vec<&str> = me.split('\t').collect();
            let pid = child.id().to_string();
            parts[2] = &pid;
            parts.join("\t")
        });
        child.wait().unwrap();
        assert!(is_gone(&owner), "{owner}");

        // The same pid started at another time (reused) is another process.
        let mut parts: Vec<&str> = me.split('\t').collect();
        parts[3] = "1";
        assert!(is_gone(&parts.join("\t")));
        // Another machine's runs, or text that is no owner, are never called gone.
        parts[0] = "some-other-host";
        assert!(!is_gone(&parts.join("\t")));
        assert!(!is_gone("nonsense"));
    }
}
