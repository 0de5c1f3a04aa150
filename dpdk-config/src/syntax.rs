//! Small string syntaxes used in the file: lcore lists, MAC and IPv4 addresses, names, devices.
//!
//! Each parser returns `Err(reason)`; the caller adds the key, the position and what was expected.

use std::net::Ipv4Addr;

use crate::PortDevice;

/// Largest lcore id accepted. DPDK's default `RTE_MAX_LCORE` is 128 and distribution builds raise
/// it; anything beyond this is a typo, and the bound keeps `"0-4000000000"` from allocating.
pub(crate) const MAX_LCORE_ID: u32 = 1023;

/// Parses a DPDK-style lcore list such as `"0-3,5,7-8"` into ids in the order written.
pub(crate) fn parse_lcore_list(text: &str) -> Result<Vec<u32>, String> {
    let mut ids = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err("empty item".to_owned());
        }
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (parse_lcore_id(a.trim())?, parse_lcore_id(b.trim())?),
            None => {
                let id = parse_lcore_id(item)?;
                (id, id)
            }
        };
        if first > last {
            return Err(format!("range `{item}` is descending"));
        }
        for id in first..=last {
            if ids.contains(&id) {
                return Err(format!("lcore {id} is listed twice"));
            }
            ids.push(id);
        }
    }
    Ok(ids)
}

fn parse_lcore_id(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not an lcore id"));
    }
    match text.parse::<u32>() {
        Ok(id) if id <= MAX_LCORE_ID => Ok(id),
        _ => Err(format!("lcore {text} is above {MAX_LCORE_ID}")),
    }
}

/// Formats sorted, distinct ids the way DPDK's `-l` expects, compressing runs: `0-3,5`.
pub(crate) fn format_lcore_list(ids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let first = ids[i];
        let mut last = first;
        while i + 1 < ids.len() && ids[i + 1] == last + 1 {
            i += 1;
            last = ids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if first == last {
            out.push_str(&first.to_string());
        } else {
            out.push_str(&format!("{first}-{last}"));
        }
        i += 1;
    }
    out
}

/// Parses `xx:xx:xx:xx:xx:xx` (hex, either case).
pub(crate) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(mac)
}

/// Formats a MAC address as `xx:xx:xx:xx:xx:xx`.
pub(crate) fn format_mac(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

/// Parses a dotted-quad IPv4 address.
pub(crate) fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    text.parse().ok()
}

/// Whether `name` is non-empty and made of ASCII letters, digits and the bytes in `extra`.
pub(crate) fn is_name(name: &str, extra: &[u8]) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// Classifies a `port.device` string as a PCI address or a virtual device.
pub(crate) fn parse_device(text: &str) -> Result<PortDevice, String> {
    if is_pci_address(text) {
        return Ok(PortDevice::Pci(text.to_owned()));
    }
    let (name, args) = match text.split_once(',') {
        Some((name, args)) => (name, args),
        None => (text, ""),
    };
    if !is_name(name, b"_") {
        return Err(format!("`{name}` is neither a PCI address nor a vdev name"));
    }
    let known = ["net_", "virtio_user", "eth_"];
    if !known.iter().any(|prefix| name.starts_with(prefix)) {
        return Err(format!(
            "vdev driver `{name}` does not start with `net_`, `virtio_user` or `eth_`"
        ));
    }
    Ok(PortDevice::Vdev {
        name: name.to_owned(),
        args: args.to_owned(),
    })
}

/// `DDDD:BB:DD.F` or `BB:DD.F`, hexadecimal.
fn is_pci_address(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    let (domain, bus, rest) = match parts.as_slice() {
        [domain, bus, rest] => (Some(*domain), *bus, *rest),
        [bus, rest] => (None, *bus, *rest),
        _ => return false,
    };
    let Some((device, function)) = rest.split_once('.') else {
        return false;
    };
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let domain_ok = match domain {
        Some(domain) => hex(domain, 4),
        None => true,
    };
    domain_ok && hex(bus, 2) && hex(device, 2) && hex(function, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcore_lists() {
        assert_eq!(
            parse_lcore_list("0-3,5,7-8").unwrap(),
            [0, 1, 2, 3, 5, 7, 8]
        );
        assert_eq!(parse_lcore_list(" 2 , 0 ").unwrap(), [2, 0]);
        assert!(parse_lcore_list("").is_err());
        assert!(parse_lcore_list("1,,2").is_err());
        assert!(parse_lcore_list("3-1").is_err());
        assert!(parse_lcore_list("a").is_err());
        assert!(parse_lcore_list("-1").is_err());
        assert!(parse_lcore_list("0-2,1").is_err());
        assert!(parse_lcore_list("0-4000000000").is_err());
        assert_eq!(format_lcore_list(&[0, 1, 2, 3, 5, 7, 8]), "0-3,5,7-8");
        assert_eq!(format_lcore_list(&[4]), "4");
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:0A:ff:00:01"),
            Some([2, 0, 0x0a, 0xff, 0, 1])
        );
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:01:02"), None);
        assert_eq!(parse_mac("2:00:00:00:00:01"), None);
        assert_eq!(parse_mac("02-00-00-00-00-01"), None);
        assert_eq!(format_mac(&[2, 0, 0x0a, 0xff, 0, 1]), "02:00:0a:ff:00:01");
    }

    #[test]
    fn devices() {
        assert_eq!(
            parse_device("0000:3b:00.0"),
            Ok(PortDevice::Pci("0000:3b:00.0".into()))
        );
        assert_eq!(
            parse_device("3b:00.1"),
            Ok(PortDevice::Pci("3b:00.1".into()))
        );
        assert_eq!(
            parse_device("net_pcap0,tx_pcap=/tmp/x.pcap"),
            Ok(PortDevice::Vdev {
                name: "net_pcap0".into(),
                args: "tx_pcap=/tmp/x.pcap".into()
            })
        );
        assert!(parse_device("virtio_user0,path=/dev/vhost-net").is_ok());
        assert!(parse_device("eth_null0").is_ok());
        assert!(parse_device("null0").is_err());
        assert!(parse_device("").is_err());
        assert!(parse_device("0000:3b:00").is_err());
    }
}
