//! The driver's processes: the sibling binaries, their command lines (pinned with `taskset`),
//! the line protocol they speak, and `perf record` for `--profile`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::Result;

/// The sibling binaries, built first when the driver runs under cargo.
pub(crate) fn binaries() -> Result<PathBuf> {
    if let Ok(cargo) = std::env::var("CARGO") {
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "wshub-bench", "--bins"])
            .status()?;
        if !status.success() {
            return Err("building bench-server and bench-load failed".into());
        }
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("no directory for the driver")?
        .to_owned();
    for bin in ["bench-server", "bench-load"] {
        if !dir.join(bin).exists() {
            return Err(format!("{} missing: cargo build --release -p wshub-bench", bin).into());
        }
    }
    Ok(dir)
}

pub(crate) struct Env {
    pub(crate) bins: PathBuf,
    pub(crate) taskset: bool,
    pub(crate) next_port: u16,
    /// `--profile FILE`: where `perf record` writes the wshub server's profile during the
    /// bursts from Rust.
    pub(crate) perf: Option<PathBuf>,
}

impl Env {
    /// `program` pinned to `core` (when there is `taskset`, which runs it in its own process).
    pub(crate) fn pinned(&self, core: u32, program: impl AsRef<OsStr>) -> Command {
        if self.taskset {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// One of the sibling binaries, pinned, spoken to through its stdin and stdout.
    pub(crate) fn command(&self, core: u32, bin: &str) -> Command {
        let mut command = self.pinned(core, self.bins.join(bin));
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        command
    }

    /// The next port below 32768 that nothing listens on.
    pub(crate) fn port(&mut self) -> Result<u16> {
        while self.next_port < 32_767 {
            let port = self.next_port;
            self.next_port += 1;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        Err("no free port below 32768".into())
    }
}

/// A child process spoken to line by line.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) stdin: ChildStdin,
    pub(crate) lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    pub(crate) fn spawn(mut command: Command, name: String) -> Result<Self> {
        let mut child = command.spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(Self {
            name,
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    pub(crate) fn pid(&self) -> Result<u32> {
        self.child.id().ok_or_else(|| "child gone".into())
    }

    pub(crate) async fn send(&mut self, line: &str) -> Result<()> {
        let sent = async {
            self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
            self.stdin.flush().await
        };
        if let Err(e) = sent.await {
            // It has exited: what it said last tells why.
            let mut last = Vec::new();
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(200), self.lines.next_line()).await
            {
                last.push(line);
            }
            return Err(format!("{}: {e}; its last words: {}", self.name, last.join(" | ")).into());
        }
        Ok(())
    }

    /// The words of the next line starting with `word`; `error` lines and the end fail.
    pub(crate) async fn expect(&mut self, word: &str, within: Duration) -> Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .map_err(|_| format!("{}: no `{word}` within {within:?}", self.name))??
                .ok_or_else(|| format!("{}: exited while waiting for `{word}`", self.name))?;
            let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            match words.first().map(String::as_str) {
                Some(w) if w == word => return Ok(words),
                Some("error") => return Err(format!("{}: {line}", self.name).into()),
                _ => eprintln!("{}: {line}", self.name),
            }
        }
    }

    pub(crate) async fn ask(&mut self, command: &str, word: &str) -> Result<Vec<String>> {
        self.send(command).await?;
        self.expect(word, Duration::from_secs(30)).await
    }

    /// Asks it to quit, then kills it if it has not within a few seconds.
    pub(crate) async fn stop(mut self) {
        let _ = self.send("quit").await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

pub(crate) fn number<T: std::str::FromStr>(words: &[String], at: usize) -> Result<T> {
    words
        .get(at)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("bad answer: {}", words.join(" ")).into())
}

/// `perf record` of process `pid` with call graphs, until [`stop_profile`].
pub(crate) fn profile(file: &Path, pid: u32) -> Result<Child> {
    let child = Command::new("perf")
        .args(["record", "-F", "999", "--call-graph", "dwarf,16384", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(file)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("perf (Debian's linux-perf) is needed for --profile: {e}"))?;
    Ok(child)
}

/// Stops `perf record` the way it expects (SIGINT), so that it writes its file out.
pub(crate) async fn stop_profile(mut perf: Child) -> Result<()> {
    let pid = perf.id().ok_or("perf exited early")?;
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    perf.wait().await?;
    Ok(())
}

/// The last `done` that load clients report (each at the end of a burst), in unix ns.
pub(crate) async fn last_done(loads: &mut [Proc]) -> Result<u128> {
    let mut last = 0;
    for load in loads {
        let done = load.expect("done", Duration::from_secs(60)).await?;
        last = last.max(number(&done, 1)?);
    }
    Ok(last)
}
