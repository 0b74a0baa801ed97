//! Facts about processes: is a pid alive, what is this host called, which directories are in use.

use std::path::PathBuf;

/// True when a process with this pid exists on this host (signal 0 succeeds or is refused with
/// `EPERM`). Pid 0 and pids beyond `i32::MAX` are never alive. On non-Unix systems liveness cannot
/// be checked and the answer is `true` (keep).
pub fn pid_alive(pid: u64) -> bool {
    #[cfg(unix)]
    {
        if pid == 0 || pid > i32::MAX as u64 {
            return false;
        }
        // SAFETY: kill with signal 0 only checks for existence and permission.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// This host's name, as resume locks and session owners record it.
pub fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
        let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if r == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return String::from_utf8_lossy(&buf[..end]).into_owned();
        }
        String::new()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_default()
    }
}

/// Working and root directories of every process we can see (Linux: `/proc/*/cwd`, `/proc/*/root`
/// other than `/`). A worktree containing one of them is in use (safety §1). Empty elsewhere.
pub fn dirs_in_use() -> Vec<PathBuf> {
    let mut out = Vec::new();
    #[cfg(target_os = "linux")]
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            for link in ["cwd", "root"] {
                if let Ok(p) = std::fs::read_link(e.path().join(link)) {
                    if p.as_os_str() != "/" {
                        out.push(p);
                    }
                }
            }
        }
    }
    crate::sort::sort(&mut out);
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_absurd_pids_are_not() {
        assert!(pid_alive(std::process::id() as u64));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u64::MAX));
        assert!(!pid_alive(i32::MAX as u64 + 1));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_cwd_is_in_use() {
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert!(dirs_in_use().iter().any(|p| p == &cwd));
    }
}
