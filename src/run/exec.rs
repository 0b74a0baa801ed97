//! Child processes and signals for the single-threaded executor (run.md §3).
//!
//! Every step is a child in its own process group (`setpgid(0, 0)`), stdin `/dev/null`, stdout
//! and stderr appended to a log file. There are no threads: SIGCHLD, SIGINT and SIGTERM handlers
//! only write one byte to a non-blocking self-pipe, and [`wait_event`] sleeps in `poll(2)` on that
//! pipe until a child changed state, a signal arrived, or the next deadline (a step timeout, a
//! heartbeat) is due. The caller then polls each running child with `try_wait`.
//!
//! While a secret is registered ([`crate::mask`]), a step's stdout and stderr do not go to the
//! log file directly: they go to a pipe whose read end is non-blocking and polled by
//! [`wait_event`] with the self-pipe; [`Running::poll`] drains it and appends the output masked
//! to the log (one pipe when both streams go to the same file, so their order is kept). A secret
//! split across two reads is still masked ([`crate::mask::Stream`]), and no unmasked byte reaches
//! the disk even when prodigy is killed mid-step (the step then gets SIGPIPE on its next write).
//!
//! A timeout sends SIGTERM to the step's whole process group, then SIGKILL after
//! [`KILL_GRACE`]; after a timed-out leader exits the group gets SIGKILL too, so a grandchild
//! (`sleep` started by `sh`) cannot outlive its step.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Time between SIGTERM and SIGKILL of a timed-out step's process group (run.md §3: 5 s).
pub const KILL_GRACE: Duration = Duration::from_secs(5);

#[cfg(unix)]
static PIPE_READ: AtomicI32 = AtomicI32::new(-1);
#[cfg(unix)]
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

#[cfg(unix)]
extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGINT || sig == libc::SIGTERM {
        // The first interrupting signal wins; a second one does not change the exit code.
        let _ = SIGNALLED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    }
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe (EAGAIN) already means "wake up".
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

/// Install the SIGCHLD/SIGINT/SIGTERM handlers and the self-pipe. Idempotent.
///
/// Errors: `pipe2` or `sigaction` failures.
pub fn install_signals() -> io::Result<()> {
    #[cfg(unix)]
    {
        if PIPE_READ.load(Ordering::SeqCst) >= 0 {
            return Ok(());
        }
        let fds = self_pipe()?;
        PIPE_READ.store(fds[0], Ordering::SeqCst);
        PIPE_WRITE.store(fds[1], Ordering::SeqCst);
        for sig in [libc::SIGCHLD, libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction with a valid handler; SA_RESTART so that other code's
            // blocking calls are restarted instead of failing with EINTR.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
    }
    Ok(())
}

/// A close-on-exec, non-blocking pipe: `pipe2` where it exists; elsewhere (macOS) `pipe` then
/// `fcntl`, which is safe here because prodigy is single-threaded (no fork can come between).
#[cfg(unix)]
fn self_pipe() -> io::Result<[libc::c_int; 2]> {
    let mut fds = [0 as libc::c_int; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    // SAFETY: fds has room for two descriptors; fcntl on the two descriptors just made.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in fds {
            if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0
                || libc::fcntl(
                    fd,
                    libc::F_SETFL,
                    libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
                ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(fds)
}

/// The interrupting signal received so far (SIGINT = 2, SIGTERM = 15), if any.
pub fn interrupted() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

thread_local! {
    /// Read ends of the output pipes of running steps, polled by [`wait_event`].
    static OUTPUT_FDS: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Sleep until a signal arrives (a child exited, SIGINT, SIGTERM), a step's output pipe has
/// data, or `timeout` passes, then drain the self-pipe.
pub fn wait_event(timeout: Duration) {
    #[cfg(unix)]
    {
        let fd = PIPE_READ.load(Ordering::SeqCst);
        if fd < 0 {
            std::thread::sleep(timeout.min(Duration::from_millis(50)));
            return;
        }
        let mut fds = vec![libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        OUTPUT_FDS.with(|o| {
            fds.extend(o.borrow().iter().map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }))
        });
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a valid array of pollfds of that length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        let mut buf = [0u8; 64];
        // SAFETY: non-blocking read into a local buffer.
        while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
    #[cfg(not(unix))]
    std::thread::sleep(timeout.min(Duration::from_millis(50)));
}

/// What to start.
pub struct Spawn {
    /// Program and arguments.
    pub argv: Vec<OsString>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Variables added to (or replacing in) prodigy's own environment.
    pub env: Vec<(String, String)>,
    /// Where stdout goes (a log file, opened for append).
    pub stdout: File,
    /// Where stderr goes.
    pub stderr: File,
    /// Step timeout.
    pub timeout: Option<Duration>,
}

/// How a step's process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with this status (0 = success).
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Ran past its timeout and was killed.
    TimedOut(u64),
}

impl Outcome {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }

    /// For messages: "exit status 3", "killed by signal 9", "timed out after 5s".
    pub fn describe(&self) -> String {
        match self {
            Outcome::Exited(c) => format!("exit status {c}"),
            Outcome::Signaled(s) => format!("killed by signal {s}"),
            Outcome::TimedOut(t) => format!("timed out after {t}s (its process group was killed)"),
        }
    }
}

/// A running step.
pub struct Running {
    child: Child,
    deadline: Option<Instant>,
    timeout_secs: u64,
    term_sent: Option<Instant>,
    pipes: Vec<OutPipe>,
}

/// One output pipe of a step whose output is masked: the read end, where the masked bytes go.
struct OutPipe {
    read: File,
    dest: File,
    mask: crate::mask::Stream,
}

impl OutPipe {
    /// Read what is there (non-blocking, at most 1 MiB a call) and append it masked. Returns
    /// false at end of file or on a read error.
    fn pump(&mut self) -> bool {
        use std::io::{Read, Write};
        let mut buf = [0u8; 65536];
        for _ in 0..16 {
            match self.read.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let out = self.mask.feed(&buf[..n]);
                    let _ = self.dest.write_all(&out);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }

    /// Write what the mask held back; stop polling the read end.
    fn close(mut self) {
        use std::io::Write;
        let out = self.mask.finish();
        let _ = self.dest.write_all(&out);
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let fd = self.read.as_raw_fd();
            OUTPUT_FDS.with(|o| o.borrow_mut().retain(|&f| f != fd));
        }
    }
}

/// A pipe for a step's output: the write end for the child, the non-blocking read end for us
/// (registered with [`wait_event`] once the child runs); both close-on-exec.
#[cfg(unix)]
fn output_pipe() -> io::Result<(File, File)> {
    use std::os::fd::FromRawFd;
    let fds = self_pipe()?;
    // SAFETY: fcntl on the write end just made: the child's end blocks as a file would.
    unsafe {
        let fl = libc::fcntl(fds[1], libc::F_GETFL);
        libc::fcntl(fds[1], libc::F_SETFL, fl & !libc::O_NONBLOCK);
    }
    // SAFETY: two fresh descriptors that nothing else owns.
    let (r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    Ok((r, w))
}

/// Whether two open files are the same file (device and inode).
#[cfg(unix)]
fn same_file(a: &File, b: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Variables a step must not inherit: they would point git at another repository or index than
/// the worktree the step runs in.
const GIT_REDIRECTS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_OBJECT_DIRECTORY",
];

/// Start a step. Errors: the program cannot be started (message names it).
pub fn spawn(s: Spawn) -> io::Result<Running> {
    let mut cmd = Command::new(&s.argv[0]);
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut pipes = Vec::new();
    cmd.args(&s.argv[1..])
        .current_dir(&s.cwd)
        .stdin(Stdio::null());
    #[cfg(unix)]
    if crate::mask::active() {
        let (r, w) = output_pipe()?;
        if same_file(&s.stdout, &s.stderr) {
            cmd.stdout(w.try_clone()?).stderr(w);
            pipes.push(OutPipe {
                read: r,
                dest: s.stdout,
                mask: Default::default(),
            });
        } else {
            let (r2, w2) = output_pipe()?;
            cmd.stdout(w).stderr(w2);
            pipes.push(OutPipe {
                read: r,
                dest: s.stdout,
                mask: Default::default(),
            });
            pipes.push(OutPipe {
                read: r2,
                dest: s.stderr,
                mask: Default::default(),
            });
        }
    } else {
        cmd.stdout(s.stdout).stderr(s.stderr);
    }
    #[cfg(not(unix))]
    cmd.stdout(s.stdout).stderr(s.stderr);
    for k in GIT_REDIRECTS {
        cmd.env_remove(k);
    }
    for (k, v) in &s.env {
        cmd.env(k, v);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd.spawn();
    // Our copies of the write ends go now: the read ends see end of file when the step's
    // processes have all closed theirs.
    drop(cmd);
    #[cfg(unix)]
    if child.is_ok() {
        use std::os::fd::AsRawFd;
        OUTPUT_FDS.with(|o| {
            o.borrow_mut()
                .extend(pipes.iter().map(|p: &OutPipe| p.read.as_raw_fd()))
        });
    }
    let child = child.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot start `{}`: {}",
                s.argv[0].to_string_lossy(),
                crate::error::describe_io(&e)
            ),
        )
    })?;
    Ok(Running {
        child,
        deadline: s.timeout.map(|t| Instant::now() + t),
        timeout_secs: s.timeout.map_or(0, |t| t.as_secs()),
        term_sent: None,
        pipes,
    })
}

impl Drop for Running {
    fn drop(&mut self) {
        self.close_pipes();
    }
}

impl Running {
    /// The process (and process group) id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `sig` to the step's whole process group.
    pub fn signal_group(&self, sig: i32) {
        #[cfg(unix)]
        // SAFETY: kill with a negative pid signals the group we created for this child.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), sig);
        }
        #[cfg(not(unix))]
        let _ = sig;
    }

    /// When [`Running::poll`] needs to run again for this child's timeout handling.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.term_sent {
            Some(t) => Some(t + KILL_GRACE),
            None => self.deadline,
        }
    }

    /// Move what the step wrote so far from its pipes to its log, masked.
    fn pump(&mut self) {
        let mut i = 0;
        while i < self.pipes.len() {
            if self.pipes[i].pump() {
                i += 1;
            } else {
                self.pipes.swap_remove(i).close();
            }
        }
    }

    /// The step ended: take what is left in its pipes (a background process that still holds
    /// one open is not waited for) and stop polling them.
    fn close_pipes(&mut self) {
        self.pump();
        for p in std::mem::take(&mut self.pipes) {
            p.close();
        }
    }

    /// Reap the child if it ended; enforce the timeout. `None` while it runs.
    pub fn poll(&mut self) -> Option<Outcome> {
        self.pump();
        let now = Instant::now();
        if let Some(t) = self.term_sent {
            if now >= t + KILL_GRACE {
                self.signal_group(SIGKILL);
            }
        } else if self.deadline.is_some_and(|d| now >= d) {
            self.signal_group(SIGTERM);
            self.term_sent = Some(now);
        }
        let status = match self.child.try_wait() {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(_) => {
                self.close_pipes();
                return Some(Outcome::Signaled(0));
            }
        };
        self.close_pipes();
        if self.term_sent.is_some() {
            // The leader is gone; anything left in its group goes with it.
            self.signal_group(SIGKILL);
            return Some(Outcome::TimedOut(self.timeout_secs));
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = status.signal() {
                return Some(Outcome::Signaled(sig));
            }
        }
        Some(Outcome::Exited(status.code().unwrap_or(-1)))
    }

    /// Block until the child ends (used after a forwarded signal), killing its group after
    /// `grace`.
    pub fn finish(&mut self, grace: Duration) -> Outcome {
        let until = Instant::now() + grace;
        loop {
            if let Some(o) = self.poll() {
                return o;
            }
            if Instant::now() >= until {
                self.signal_group(SIGKILL);
            }
            wait_event(Duration::from_millis(100));
        }
    }
}

/// SIGTERM's number.
#[cfg(unix)]
pub const SIGTERM: i32 = libc::SIGTERM;
/// SIGKILL's number.
#[cfg(unix)]
pub const SIGKILL: i32 = libc::SIGKILL;
/// SIGINT's number.
#[cfg(unix)]
pub const SIGINT: i32 = libc::SIGINT;
/// SIGTERM's number (POSIX value where libc has none).
#[cfg(not(unix))]
pub const SIGTERM: i32 = 15;
/// SIGKILL's number.
#[cfg(not(unix))]
pub const SIGKILL: i32 = 9;
/// SIGINT's number.
#[cfg(not(unix))]
pub const SIGINT: i32 = 2;

/// Random bytes from the OS (`/dev/urandom`; run.md §5 "random bits from the OS").
pub fn random_bytes(n: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut v = vec![0u8; n];
    File::open("/dev/urandom")?.read_exact(&mut v)?;
    Ok(v)
}

/// A random (version 4) UUID in its lowercase hyphenated form.
pub fn uuid_v4() -> io::Result<String> {
    let mut b = random_bytes(16)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}
