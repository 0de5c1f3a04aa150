//! The NIC RX lcore: polls the RX queues of an `rx` lcore, counts what arrives and frees it.
//!
//! Frames for the host (relays' answers, ARP) do not come here: the TX lcore that bridges the
//! exception path polls its NIC queue and passes them to the kernel (`tx.rs`, `Bridge`). What
//! arrives on an `rx` lcore's queues is counted and dropped; frames that are not well-formed
//! Ethernet/IPv4 are counted as garbage so a bad feed is visible in the stats.

use dpdk::{RxBurst, RxQueue};
use swqos_shm::stats::{Counter, StatsWriter};
use swqos_wire::ethernet::{ethertype, EthernetFrame};
use swqos_wire::ipv4::Ipv4Packet;

/// Frames per `rx_burst`.
const BURST: usize = 32;

/// The state of one RX lcore.
pub struct RxWorker {
    queues: Vec<RxQueue>,
    burst: RxBurst<BURST>,
    stats: StatsWriter,
}

impl RxWorker {
    /// A worker over its owned queues.
    pub fn new(queues: Vec<RxQueue>, stats: StatsWriter) -> RxWorker {
        RxWorker {
            queues,
            burst: RxBurst::new(),
            stats,
        }
    }

    /// This lcore's stats block (for its loop's own counters).
    pub fn stats(&mut self) -> &mut StatsWriter {
        &mut self.stats
    }

    /// One poll iteration over every queue; returns the frames received.
    pub fn poll(&mut self) -> usize {
        self.stats.begin();
        self.stats.add(Counter::Polls, 1);
        let mut total = 0;
        for q in &mut self.queues {
            let n = q.rx_burst(&mut self.burst);
            if n == 0 {
                continue;
            }
            total += n;
            let stats = &mut self.stats;
            for m in self.burst.drain() {
                let data = m.data();
                stats.add(Counter::RxBytes, m.pkt_len() as u64);
                if !is_ipv4_frame(data) {
                    stats.add(Counter::RxGarbage, 1);
                }
                // Dropping `m` returns it to its pool.
            }
            stats.add(Counter::RxPackets, n as u64);
        }
        self.stats.end();
        total
    }
}

/// Whether `data` is an Ethernet frame carrying a well-formed IPv4 packet (ARP is fine too).
fn is_ipv4_frame(data: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return false;
    };
    match eth.ethertype() {
        ethertype::IPV4 => Ipv4Packet::new_checked(eth.payload()).is_ok(),
        ethertype::ARP => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_ipv4_frame;

    #[test]
    fn garbage_is_told_apart() {
        assert!(!is_ipv4_frame(&[]));
        assert!(!is_ipv4_frame(&[0u8; 64]), "ethertype 0");
        let mut arp = [0u8; 60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(is_ipv4_frame(&arp));
        let mut bad_ip = [0u8; 60];
        bad_ip[12] = 0x08;
        bad_ip[14] = 0x99; // version 9
        assert!(!is_ipv4_frame(&bad_ip));
    }
}
