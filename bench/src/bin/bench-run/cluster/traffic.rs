//! What each node received from Redis, from the kernel's counters of its TCP connections to Redis
//! (`ss -ti`: `bytes_received`): the direct sign of which nodes an envelope woke, which neither the
//! nodes nor Redis 7.0 count.

use std::collections::HashMap;

use crate::Result;

/// Bytes each process received so far on its connections to 127.0.0.1:`port`, by pid. Fails when
/// `ss` (iproute2) is missing or says nothing usable.
pub(crate) fn received_from(port: u16) -> Result<HashMap<u32, u64>> {
    let filter = format!("( dport = :{port} )");
    let out = std::process::Command::new("ss")
        .args(["-tinpH", "state", "established", &filter])
        .output()
        .map_err(|e| format!("ss (iproute2) is needed to read the nodes' traffic: {e}"))?;
    if !out.status.success() {
        return Err(format!("ss failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Each socket is a line naming its process (`users:(("name",pid=P,fd=F))`) followed by a line of
/// TCP information (`… bytes_received:N …`).
fn parse(ss: &str) -> HashMap<u32, u64> {
    let mut received = HashMap::new();
    let mut owner = None;
    for line in ss.lines() {
        if let Some(at) = line.find("pid=") {
            owner = line[at + 4..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|pid| pid.parse::<u32>().ok());
            continue;
        }
        let bytes = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("bytes_received:"))
            .and_then(|n| n.parse::<u64>().ok());
        if let (Some(pid), Some(bytes)) = (owner.take(), bytes) {
            *received.entry(pid).or_default() += bytes;
        }
    }
    received
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_each_process_sockets() {
        let ss = "0 0 127.0.0.1:1 127.0.0.1:9 users:((\"bench-server\",pid=41,fd=11))\n\
                  \t bbr rtt:0.1 bytes_sent:5 bytes_received:153 segs_out:6\n\
                  0 0 127.0.0.1:2 127.0.0.1:9 users:((\"bench-server\",pid=41,fd=12))\n\
                  \t bbr bytes_received:10\n\
                  0 0 127.0.0.1:3 127.0.0.1:9 users:((\"bench-server\",pid=7,fd=3))\n\
                  \t bbr bytes_acked:1\n";
        let received = parse(ss);
        assert_eq!(received.get(&41), Some(&163));
        // A socket that has received nothing has no such field.
        assert_eq!(received.get(&7), None);
    }
}
