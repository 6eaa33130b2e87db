//! While the TUI owns the terminal, whatever writes to this process's stderr — a kubeconfig
//! exec credential plugin that kube-client runs with stderr inherited on every token refresh
//! (`kube-client/src/client/auth/mod.rs`, `auth_exec`: interactive mode inherits stderr), a
//! library warning — would be drawn over the panels. The capture points fd 2 at a file for
//! that time and puts the terminal back when dropped, saying where the lines went.
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub struct StderrCapture {
    saved: OwnedFd,
    path: PathBuf,
}

impl StderrCapture {
    /// Points fd 2 at `path` (created or truncated); `None` if that cannot be done (the TUI
    /// then runs as before).
    pub fn to_file(path: &Path) -> Option<StderrCapture> {
        let file = File::create(path).ok()?;
        // SAFETY: dup(2) only duplicates the process's stderr descriptor; no memory is touched.
        let saved = unsafe { libc::dup(2) };
        if saved < 0 {
            return None;
        }
        // SAFETY: `saved` is a descriptor dup just returned, open and owned by nobody else.
        let saved = unsafe { OwnedFd::from_raw_fd(saved) };
        // SAFETY: both descriptors are open (the file lives until this returns; fd 2 is the
        // process's); dup2 makes fd 2 a copy of the file's and touches no memory.
        if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
            return None;
        }
        Some(StderrCapture { saved, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StderrCapture {
    fn drop(&mut self) {
        // SAFETY: puts the saved terminal descriptor back on fd 2.
        unsafe { libc::dup2(self.saved.as_raw_fd(), 2) };
        let written = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if written > 0 {
            eprintln!(
                "rtc-demo conduct: {written} bytes written to stderr during the run are in {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that inherits stderr (as an exec credential plugin does) writes into the file,
    /// not onto the terminal, and the file is kept when it holds something.
    #[test]
    fn an_inheriting_child_writes_into_the_file() {
        let dir = std::env::temp_dir().join(format!("rtc-stderr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stderr.log");
        {
            let cap = StderrCapture::to_file(&path).expect("capture");
            let st = std::process::Command::new("sh")
                .args(["-c", "echo 'plugin: refreshing token' >&2"])
                .stderr(std::process::Stdio::inherit())
                .status()
                .unwrap();
            assert!(st.success());
            assert_eq!(cap.path(), path);
            // (contains: another test of this process may write to fd 2 meanwhile)
            assert!(std::fs::read_to_string(&path).unwrap().contains("plugin: refreshing token\n"));
        }
        assert!(path.exists(), "kept: it has the plugin's line");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
