//! Shared pieces of the benchmark binaries: process facts from /proc, the benchmark envelope, the
//! open-files limit and the WebSocket frame header. See `bench-run` for the suite itself.

use std::time::{SystemTime, UNIX_EPOCH};

use wshub::{Envelope, Recipient};

pub mod client;

/// The group every benchmark connection is in (`/ws?groupId=bench`).
pub const GROUP: &str = "bench";
/// Per-socket read buffer of the tungstenite baseline (`--read-buffer` changes it). wshub keeps
/// none: it reads into 16 KiB on the stack and keeps only what a message not yet whole needs
/// (`READ_CHUNK` in src/websocket/socket.rs).
pub const READ_BUFFER: usize = 4 * 1024;
/// Bytes the tungstenite baseline gathers before a write. wshub has no write buffer: it hands the
/// queued frames' shared bytes to one vectored write.
pub const WRITE_BUFFER: usize = 8 * 1024;
/// Per-socket queue of the baselines, in frames (wshub bounds what waits in bytes: 4 MiB by default).
pub const QUEUE: usize = 1024;
/// Queued frames written per flush by the baselines; wshub hands up to as many to one vectored
/// write (`MAX_SLICES` in src/websocket/socket.rs).
pub const MAX_BATCH: usize = 64;

/// Wall-clock time in nanoseconds since the epoch: comparable between the processes of a run.
pub fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// This process's resident set in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// The anonymous part of this process's resident set in KiB (`RssAnon`): its heap and stacks,
/// without the pages of the executable that running code has paged in.
pub fn rss_anon_kib() -> u64 {
    status_kib("RssAnon:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time of a process, in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it may not.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// CPU time of a process's threads, in seconds, from `/proc/<pid>/task/*/schedstat`, which
/// counts nanoseconds where `/proc/<pid>/stat` counts ticks of 10 ms: for processes that do
/// little per operation, such as Redis per publish. Threads that have exited no longer count
/// (a process's own worker threads live as long as it).
pub fn cpu_seconds_fine(pid: u32) -> Option<f64> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        // A thread may end between the listing and the read: it is not counted, rather than
        // failing the whole reading.
        let Some(schedstat) = task
            .ok()
            .and_then(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        else {
            continue;
        };
        // The first field: time spent on the CPU, in ns.
        ns += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

#[allow(unsafe_code)]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Raises the soft open-files limit to the hard one (20,000 on these machines) and returns it.
#[allow(unsafe_code)]
pub fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls get a pointer to a live, initialised rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Envelope `seq` of a burst, addressed to the benchmark group, its JSON `bytes` long or as short
/// as it can be (107 bytes for seq < 100: the envelope's fields and its recipient take most).
pub fn burst_envelope(seq: usize, bytes: usize) -> Envelope {
    burst_envelope_to(seq, bytes, &Recipient::group(GROUP))
}

/// Envelope `seq` of a burst to `recipient`, its JSON `bytes` long or as short as it can be.
pub fn burst_envelope_to(seq: usize, bytes: usize, recipient: &Recipient) -> Envelope {
    let make = |pad: usize| {
        let text = format!("{seq:02}{}", "x".repeat(pad));
        Envelope::new("news")
            .with_message(&text)
            .to(recipient.clone())
    };
    let base = make(0).to_json().len();
    make(bytes.saturating_sub(base))
}

/// A connection's path from a template: `{g}` becomes its group (`index / group_size`), `{u}` its
/// user (`index % users`) and `{i}` its index, so that several load processes can split one
/// population (`--first`).
pub fn expand_path(template: &str, index: usize, group_size: usize, users: usize) -> String {
    template
        .replace("{g}", &(index / group_size.max(1)).to_string())
        .replace("{u}", &(index % users.max(1)).to_string())
        .replace("{i}", &index.to_string())
}

/// The message text of a time-stamped envelope: `@NS@` (the unix ns it was due) padded with `x`
/// to `pad` characters; the receiver reads the stamp back with [`read_stamp`].
pub fn stamp(due_ns: u128, pad: usize) -> String {
    let mut text = format!("@{due_ns}@");
    let len = text.len();
    text.extend(std::iter::repeat_n('x', pad.saturating_sub(len)));
    text
}

/// The stamp in a received payload (the first `@NS@`), if any.
pub fn read_stamp(payload: &[u8]) -> Option<u128> {
    let start = payload.iter().position(|&b| b == b'@')? + 1;
    let len = payload[start..].iter().position(|&b| b == b'@')?;
    std::str::from_utf8(&payload[start..start + len])
        .ok()?
        .parse()
        .ok()
}

/// Nearest-rank percentile `p` (0-100) of `values`, which it sorts; NaN when empty.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The header of an unmasked server text frame with a payload of `len` bytes.
pub fn text_frame_header(len: usize) -> Vec<u8> {
    let mut header = vec![0x81];
    if len < 126 {
        header.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        header.push(126);
        header.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        header.push(127);
        header.extend_from_slice(&(len as u64).to_be_bytes());
    }
    header
}

/// The arguments after the program name as `--flag value` pairs and bare `--flag`s.
#[derive(Debug, Default)]
pub struct Args(Vec<String>);

impl Args {
    /// The process's arguments.
    pub fn from_env() -> Self {
        Self(std::env::args().skip(1).collect())
    }

    /// Whether a bare flag is present.
    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// The value after `name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        let at = self.0.iter().position(|a| a == name)?;
        self.0.get(at + 1).map(String::as_str)
    }

    /// The value after `name` parsed, or `default` when absent; exits with a message when it
    /// does not parse.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("bad value for {name}: {v}");
                std::process::exit(2)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_about_the_size_asked() {
        for bytes in [100, 300, 1000] {
            let len = burst_envelope(7, bytes).to_json().len();
            assert_eq!(len, bytes.max(burst_envelope(7, 0).to_json().len()));
        }
    }

    #[test]
    fn frame_headers() {
        assert_eq!(text_frame_header(5), [0x81, 5]);
        assert_eq!(text_frame_header(300), [0x81, 126, 1, 44]);
    }

    #[test]
    fn paths_and_stamps() {
        assert_eq!(
            expand_path("/ws?groupId=g{g}&userId=u{u}", 250, 100, 1000),
            "/ws?groupId=g2&userId=u250"
        );
        let text = stamp(1_700_000_000_123_456_789, 40);
        assert_eq!(text.len(), 40);
        let json = format!("{{\"message\":\"{text}\"}}");
        assert_eq!(read_stamp(json.as_bytes()), Some(1_700_000_000_123_456_789));
        assert_eq!(read_stamp(b"no stamp"), None);
    }

    #[test]
    fn nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), 50.0);
        assert_eq!(percentile(&mut v, 99.0), 99.0);
        assert_eq!(percentile(&mut [3.0], 99.0), 3.0);
    }

    #[test]
    fn own_cpu_time_reads() {
        assert!(cpu_seconds(std::process::id()).is_some());
        assert!(cpu_seconds_fine(std::process::id()).is_some_and(|s| s > 0.0));
    }
}
