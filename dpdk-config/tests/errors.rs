//! Broken configurations: each error must name the exact `line:column` of the offending key or
//! value and say what was expected.

use std::path::Path;

use dpdk_config::{
    AdaptivePoll, Config, LaneKind, LcoreRole, PollMode, PortDevice, Provider, SchedPolicy,
};

/// A valid configuration; the tests below break one thing at a time. Line numbers matter.
const BASE: &str = r#"[eal]
lcores = "0-2"
main_lcore = 0

[[port]]
name = "p0"
device = "net_null0"
tx_queues = 2

[[lcore]]
id = 1
role = "tx"
queues = [{ port = "p0", queue = 0 }]

[[lane]]
name = "a"
kind = "udp"
port = "p0"
src_ip = "10.0.0.1"
src_port = 9001
dst_ip = "10.0.0.2"
dst_port = 8001
dst_mac = "02:00:00:00:00:02"
"#;

/// `BASE` with each `(from, to)` replaced once; panics if `from` is not found.
fn edit(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "BASE has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

/// Parses `text`, expecting an error at `at` ("line:column") whose message contains `fragment`.
#[track_caller]
fn check(text: &str, at: &str, fragment: &str) {
    let err = Config::parse(text, Path::new("t.toml")).expect_err("config should be rejected");
    let got = format!("{}:{}", err.line, err.column);
    assert_eq!(got, at, "wrong position for: {err}");
    assert!(
        err.message.contains(fragment),
        "message {:?} does not contain {fragment:?}",
        err.message
    );
    assert_eq!(err.to_string(), format!("t.toml:{at}: {}", err.message));
}

#[test]
fn base_is_valid() {
    let config = Config::parse(BASE, Path::new("t.toml")).unwrap();
    assert_eq!(config.eal.lcores, [0, 1, 2]);
    assert_eq!(config.eal.main_lcore, 0);
    assert_eq!(config.mempools.len(), 1);
    assert_eq!(config.mempools[0].name, "default");
    assert_eq!(config.mempools[0].mbufs, 8191);
    assert_eq!(
        config.ports[0].device,
        PortDevice::Vdev {
            name: "net_null0".into(),
            args: String::new()
        }
    );
    assert_eq!(config.ports[0].mempool, 0);
    assert_eq!(config.ports[0].rx_queues, 1);
    assert_eq!(config.lcores[0].role, LcoreRole::Tx);
    assert_eq!(config.lcores[0].role.to_string(), "tx");
    assert_eq!(config.lane_by_name("a"), Some(0));
    assert_eq!(config.lane_by_name("b"), None);
    assert_eq!(config.port_by_name("p0"), Some(0));
    let LaneKind::Udp(udp) = &config.lanes[0].kind else {
        panic!("lane 0 is a udp lane");
    };
    assert_eq!(udp.dst_port, 8001);
    assert_eq!(udp.dst_mac, [2, 0, 0, 0, 0, 2]);
    assert_eq!(config.lanes[0].kind.to_string(), "udp");
    assert_eq!(config.shm.ring_slots, 256);
    assert_eq!(config.shm.path, Path::new("/dev/shm/swqos/segment"));
}

#[test]
fn lcores_as_integer_array() {
    let text = edit(&[("lcores = \"0-2\"", "lcores = [2, 0, 1]")]);
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    assert_eq!(config.eal.lcores, [0, 1, 2]);
}

#[test]
fn unknown_key_in_eal() {
    check(
        &edit(&[("main_lcore", "main_lcor")]),
        "3:1",
        "unknown field `main_lcor`, expected one of `lcores`, `main_lcore`",
    );
}

#[test]
fn unknown_key_in_port() {
    check(
        &edit(&[("tx_queues", "tx_queus")]),
        "8:1",
        "unknown field `tx_queus`, expected one of `name`, `device`, `rx_queues`, `tx_queues`",
    );
}

#[test]
fn unknown_key_in_lcore() {
    check(&edit(&[("role", "rol")]), "12:1", "unknown field `rol`");
}

#[test]
fn unknown_key_in_queue_ref() {
    check(
        &edit(&[("queue = 0", "q = 0")]),
        "13:26",
        "unknown field `q`, expected `port` or `queue`",
    );
}

#[test]
fn unknown_key_in_lane() {
    check(
        &edit(&[("dst_mac", "dest_mac")]),
        "23:1",
        "unknown field `dest_mac`",
    );
}

#[test]
fn unknown_key_in_shm_and_mempool() {
    check(
        &format!("{BASE}[shm]\nslots = 4\n"),
        "25:1",
        "unknown field `slots`, expected one of `path`, `rings`, `ring_slots`",
    );
    check(
        &format!("{BASE}[[mempool]]\nname = \"default\"\nsize = 4\n"),
        "26:1",
        "unknown field `size`",
    );
}

#[test]
fn unknown_table() {
    check(
        &format!("{BASE}[ports]\n"),
        "24:2",
        "unknown field `ports`, expected one of `eal`, `shm`, `mempool`, `port`, `lcore`, `lane`",
    );
}

#[test]
fn wrong_type() {
    check(
        &edit(&[("tx_queues = 2", "tx_queues = \"2\"")]),
        "8:13",
        "invalid type: string \"2\", expected an integer",
    );
    check(
        &edit(&[("dst_mac = \"02:00:00:00:00:02\"", "dst_mac = 2")]),
        "23:11",
        "invalid type: integer `2`, expected a string",
    );
}

#[test]
fn toml_syntax_error_keeps_position() {
    check(
        &edit(&[("main_lcore = 0", "main_lcore = ")]),
        "3:14",
        "invalid",
    );
}

#[test]
fn missing_required_key() {
    check(
        &edit(&[("device = \"net_null0\"", "")]),
        "5:1",
        "missing field `device`",
    );
}

#[test]
fn bad_lcore_list() {
    check(
        &edit(&[("\"0-2\"", "\"0-2,x\"")]),
        "2:10",
        "`lcores` = \"0-2,x\" is not a valid lcore list (`x` is not an lcore id); expected ids and ranges like \"0-3,5,7-8\"",
    );
    check(&edit(&[("\"0-2\"", "\"2-0\"")]), "2:10", "descending");
    check(&edit(&[("\"0-2\"", "\"\"")]), "2:10", "empty item");
    check(
        &edit(&[("\"0-2\"", "[0, 1, 1]")]),
        "2:17",
        "lcore 1 is listed twice in `lcores`",
    );
    check(
        &edit(&[("\"0-2\"", "[]")]),
        "2:10",
        "expected at least one lcore",
    );
}

#[test]
fn main_lcore_outside_eal_set() {
    check(
        &edit(&[("main_lcore = 0", "main_lcore = 7")]),
        "3:14",
        "`main_lcore` = 7 is not in `eal.lcores` (0-2)",
    );
}

#[test]
fn lcore_outside_eal_set() {
    check(
        &edit(&[("id = 1", "id = 4")]),
        "11:6",
        "lcore 4 is not in `eal.lcores` (0-2); expected one of those lcores",
    );
}

#[test]
fn main_lcore_in_lcore_map() {
    check(
        &edit(&[("id = 1", "id = 0")]),
        "11:6",
        "lcore 0 is the main lcore (`eal.main_lcore`), which runs the control loop",
    );
}

#[test]
fn duplicate_lcore_id_points_at_second() {
    let text = format!(
        "{BASE}[[lcore]]\nid = 1\nrole = \"tx\"\nqueues = [{{ port = \"p0\", queue = 1 }}]\n"
    );
    check(&text, "25:6", "lcore 1 is listed twice in [[lcore]]");
}

#[test]
fn two_lcores_one_queue() {
    let text = format!(
        "{BASE}[[lcore]]\nid = 2\nrole = \"tx\"\nqueues = [{{ port = \"p0\", queue = 0 }}]\n"
    );
    check(
        &text,
        "27:34",
        "TX queue 0 of port `p0` is already taken by lcore 1, so lcore 2 cannot use it too",
    );
}

#[test]
fn one_lcore_one_queue_twice() {
    check(
        &edit(&[(
            "queues = [{ port = \"p0\", queue = 0 }]",
            "queues = [{ port = \"p0\", queue = 0 }, { port = \"p0\", queue = 0 }]",
        )]),
        "13:62",
        "lcore 1 lists TX queue 0 of port `p0` twice",
    );
}

#[test]
fn rx_and_tx_queue_with_same_index_do_not_conflict() {
    let text = format!(
        "{BASE}[[lcore]]\nid = 2\nrole = \"rx\"\nqueues = [{{ port = \"p0\", queue = 0 }}]\n"
    );
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    assert_eq!(config.lcores_with_role(LcoreRole::Rx).count(), 1);
}

#[test]
fn queue_index_out_of_range() {
    check(
        &edit(&[("queue = 0", "queue = 2")]),
        "13:34",
        "TX queue 2 does not exist; expected 0..=1 (port `p0` has `tx_queues` = 2)",
    );
    let text = format!(
        "{}[[lcore]]\nid = 2\nrole = \"rx\"\nqueues = [{{ port = \"p0\", queue = 0 }}]\n",
        edit(&[("tx_queues = 2", "tx_queues = 2\nrx_queues = 0")])
    );
    check(&text, "28:34", "port `p0` has no RX queues");
}

#[test]
fn undefined_port_in_queue_ref() {
    check(
        &edit(&[("{ port = \"p0\"", "{ port = \"p9\"")]),
        "13:20",
        "port `p9` is not defined; expected one of `p0`",
    );
}

#[test]
fn undefined_port_in_lane() {
    check(
        &edit(&[("port = \"p0\"\nsrc_ip", "port = \"p1\"\nsrc_ip")]),
        "18:8",
        "port `p1` is not defined; expected one of `p0`",
    );
}

#[test]
fn undefined_mempool() {
    check(
        &edit(&[("tx_queues = 2", "tx_queues = 2\nmempool = \"big\"")]),
        "9:11",
        "mempool `big` is not defined; expected one of `default`",
    );
    // Pools are given but none is called "default", and the port names none.
    let text = format!("{BASE}[[mempool]]\nname = \"rx\"\n");
    check(
        &text,
        "6:8",
        "port `p0` uses mempool `default`, which is not defined",
    );
}

#[test]
fn unknown_lane_kind_lists_supported() {
    check(
        &edit(&[("kind = \"udp\"", "kind = \"https\"")]),
        "17:8",
        "unknown variant `https`, expected one of `udp`, `http`, `quic`",
    );
}

#[test]
fn udp_lane_missing_key_points_at_kind() {
    check(
        &edit(&[("dst_port = 8001\n", "")]),
        "17:8",
        "udp lane `a` has no `dst_port`",
    );
}

#[test]
fn duplicate_names() {
    let lane = "[[lane]]\nname = \"a\"\nkind = \"udp\"\nport = \"p0\"\n";
    check(
        &format!("{BASE}{lane}"),
        "25:8",
        "lane `a` is defined twice",
    );
    let port = "[[port]]\nname = \"p0\"\ndevice = \"net_null1\"\n";
    check(
        &format!("{BASE}{port}"),
        "25:8",
        "port `p0` is defined twice",
    );
    let pools = "[[mempool]]\nname = \"m\"\n[[mempool]]\nname = \"m\"\n";
    check(
        &format!("{BASE}{pools}"),
        "27:8",
        "mempool `m` is defined twice",
    );
}

#[test]
fn duplicate_device() {
    let port = "[[port]]\nname = \"p1\"\ndevice = \"net_null0,size=64\"\n";
    check(
        &format!("{BASE}{port}"),
        "26:10",
        "device `net_null0` is already used by port `p0`",
    );
}

#[test]
fn bad_device() {
    check(
        &edit(&[("\"net_null0\"", "\"null0\"")]),
        "7:10",
        "vdev driver `null0` does not start with `net_`",
    );
}

#[test]
fn bad_mac() {
    check(
        &edit(&[("\"02:00:00:00:00:02\"", "\"02:00:00:00:02\"")]),
        "23:11",
        "`dst_mac` = \"02:00:00:00:02\" is not a MAC address; expected six hex bytes",
    );
    check(
        &edit(&[(
            "tx_queues = 2",
            "tx_queues = 2\nmac = \"01:00:5e:00:00:01\"",
        )]),
        "9:7",
        "expected a unicast, non-zero MAC address",
    );
}

#[test]
fn bad_ip() {
    check(
        &edit(&[("\"10.0.0.2\"", "\"10.0.0.256\"")]),
        "21:10",
        "`dst_ip` = \"10.0.0.256\" is not an IPv4 address; expected a dotted quad",
    );
}

#[test]
fn zero_udp_port() {
    check(
        &edit(&[("src_port = 9001", "src_port = 0")]),
        "20:12",
        "`src_port` = 0 is out of range; expected 1..=65535",
    );
}

#[test]
fn ring_slots_not_power_of_two() {
    check(
        &format!("{BASE}[shm]\nring_slots = 100\n"),
        "25:14",
        "`ring_slots` = 100 is not valid; expected a power of two in 16..=65536",
    );
}

#[test]
fn ranges() {
    check(
        &edit(&[("tx_queues = 2", "tx_queues = 0")]),
        "8:13",
        "`tx_queues` = 0 is out of range; expected 1..=64",
    );
    check(
        &edit(&[("tx_queues = 2", "tx_queues = 2\nrx_descriptors = 100")]),
        "9:18",
        "expected a power of two in 64..=32768",
    );
    check(
        &edit(&[("tx_queues = 2", "tx_queues = 2\nmtu = 10000")]),
        "9:7",
        "`mtu` = 10000 is out of range; expected 68..=9600",
    );
    check(
        &format!("{BASE}[shm]\nrings = 65\n"),
        "25:9",
        "`rings` = 65 is out of range; expected 1..=64",
    );
    check(
        &format!("{BASE}[[mempool]]\nname = \"default\"\nmbufs = 300\n"),
        "26:9",
        "expected at most mbufs / 1.5 = 200",
    );
}

#[test]
fn bad_names() {
    check(
        &edit(&[("name = \"a\"", "name = \"a b\"")]),
        "16:8",
        "lane name \"a b\" is not valid",
    );
    check(
        &edit(&[(
            "name = \"a\"",
            "name = \"abcdefghijklmnopqrstuvwxyz0123456\"",
        )]),
        "16:8",
        "expected 1..=31 bytes",
    );
    check(
        &edit(&[("main_lcore = 0", "main_lcore = 0\nfile_prefix = \"a/b\"")]),
        "4:15",
        "`file_prefix` = \"a/b\" is not valid",
    );
    check(
        &format!("{BASE}[shm]\npath = \"shm/x\"\n"),
        "25:8",
        "expected an absolute path",
    );
}

#[test]
fn tx_lcore_missing_a_lane_port() {
    // A second port with a lane on it, which tx lcore 1 has no TX queue on.
    let text = format!(
        "{BASE}[[port]]\nname = \"p1\"\ndevice = \"net_null1\"\n\
         [[lane]]\nname = \"b\"\nkind = \"udp\"\nport = \"p1\"\nsrc_ip = \"10.0.0.1\"\n\
         src_port = 9001\ndst_ip = \"10.0.0.2\"\ndst_port = 8001\ndst_mac = \"02:00:00:00:00:02\"\n"
    );
    check(
        &text,
        "11:6",
        "tx lcore 1 owns no TX queue on port `p1`, which lane `b` uses",
    );
}

#[test]
fn lanes_need_a_tx_lcore() {
    check(
        &edit(&[("role = \"tx\"", "role = \"rx\"")]),
        "16:8",
        "lane `a` needs a tx lcore, but no [[lcore]] has role = \"tx\"",
    );
}

#[test]
fn lcore_without_queues() {
    check(
        &edit(&[("queues = [{ port = \"p0\", queue = 0 }]", "queues = []")]),
        "13:10",
        "lcore 1 (tx) has no queues",
    );
}

#[test]
fn no_port() {
    check("[eal]\nlcores = \"0\"\n", "1:1", "no [[port]] is defined");
}

#[test]
fn missing_file_is_an_io_error() {
    let err = Config::load(Path::new("/nonexistent/swqos.toml")).unwrap_err();
    assert!(err.io.is_some());
    assert!(
        err.to_string()
            .starts_with("/nonexistent/swqos.toml: cannot read: "),
        "{err}"
    );
}

/// `BASE` with `extra` appended: its first line is line 24 of the file.
fn with(extra: &str) -> String {
    assert_eq!(BASE.lines().count(), 23);
    format!("{BASE}{extra}")
}

#[test]
fn control_and_tuning_defaults() {
    let config = Config::parse(BASE, Path::new("t.toml")).unwrap();
    assert_eq!(config.control.metrics_listen.to_string(), "127.0.0.1:9464");
    assert_eq!(config.control.rpc_listen, None);
    assert_eq!(config.control.rpc_lanes, None);
    let t = &config.tuning;
    assert!(t.mlockall && !t.required && t.latency_monitor);
    assert_eq!(t.lcore_policy, SchedPolicy::Other);
    assert_eq!((t.lcore_priority, t.control_priority), (0, 0));
    assert_eq!(t.control_cpus, None);
}

#[test]
fn control_section_parses() {
    let text = with(
        "[control]\nmetrics_listen = \"0.0.0.0:9100\"\nrpc_listen = \"[::1]:8899\"\nrpc_lanes = [\"a\"]\n",
    );
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    assert_eq!(config.control.metrics_listen.to_string(), "0.0.0.0:9100");
    assert_eq!(config.control.rpc_listen.unwrap().to_string(), "[::1]:8899");
    assert_eq!(config.control.rpc_lanes, Some(vec![0]));
    assert_eq!(config.control.rpc_upstream, None);
    assert_eq!(
        config.control.rpc_upstream_timeout,
        std::time::Duration::from_millis(2_000)
    );
}

#[test]
fn rpc_upstream_parses() {
    let parse = |url: &str, extra: &str| {
        let text = with(&format!("[control]\nrpc_upstream = \"{url}\"\n{extra}"));
        Config::parse(&text, Path::new("t.toml")).unwrap().control
    };
    let c = parse("http://127.0.0.1:8899", "rpc_upstream_timeout_ms = 500\n");
    let u = c.rpc_upstream.unwrap();
    assert_eq!(
        (&u.host[..], u.port, &u.authority[..], &u.path[..]),
        ("127.0.0.1", 8899, "127.0.0.1:8899", "/")
    );
    assert_eq!(
        c.rpc_upstream_timeout,
        std::time::Duration::from_millis(500)
    );
    let u = parse("HTTP://rpc.example/v1/key?x=1", "")
        .rpc_upstream
        .unwrap();
    assert_eq!(
        (&u.host[..], u.port, &u.authority[..], &u.path[..]),
        ("rpc.example", 80, "rpc.example", "/v1/key?x=1")
    );
    let u = parse("http://[::1]:8899?k=v", "").rpc_upstream.unwrap();
    assert_eq!((&u.host[..], u.port, &u.path[..]), ("::1", 8899, "/?k=v"));
}

#[test]
fn control_errors() {
    check(
        &with("[control]\nmetrics_listn = \"127.0.0.1:1\"\n"),
        "25:1",
        "unknown field `metrics_listn`, expected one of `metrics_listen`, `rpc_listen`, `rpc_lanes`, \
         `rpc_upstream`, `rpc_upstream_timeout_ms`",
    );
    check(
        &with("[control]\nmetrics_listen = \"localhost:9464\"\n"),
        "25:18",
        "`metrics_listen` = \"localhost:9464\" is not a socket address; expected an IP address and port",
    );
    check(
        &with("[control]\nmetrics_listen = \"127.0.0.1\"\n"),
        "25:18",
        "is not a socket address",
    );
    check(
        &with("[control]\nmetrics_listen = \"127.0.0.1:0\"\n"),
        "25:18",
        "has port 0",
    );
    check(
        &with("[control]\nrpc_listen = \"10.0.0.1:99999\"\n"),
        "25:14",
        "`rpc_listen` = \"10.0.0.1:99999\" is not a socket address",
    );
    check(
        &with("[control]\nrpc_lanes = [\"a\", \"b\"]\n"),
        "25:19",
        "lane `b` in `rpc_lanes` is not defined; expected one of `a`",
    );
    check(
        &with("[control]\nrpc_lanes = [\"a\", \"a\"]\n"),
        "25:19",
        "lane `a` is listed twice in `rpc_lanes`",
    );
    check(
        &with("[control]\nrpc_listen = \"127.0.0.1:9464\"\n"),
        "25:14",
        "is also `metrics_listen`",
    );
    for (url, why) in [
        ("https://rpc.example", "is https"),
        ("ftp://x", "is not an http:// URL"),
        ("http://", "has no host"),
        ("http://:80/", "has no host"),
        ("http://a b", "contains ' '"),
        ("http://u:p@host/", "carries credentials"),
        ("http://host:0/", "has an invalid port"),
        ("http://host:99999/", "has an invalid port"),
        ("http://host:x/", "has an invalid port"),
        ("http://[::1/", "has an unclosed `[`"),
        ("http://[zz]/", "has an invalid IPv6 address"),
        ("http://ho$t/", "has an invalid host name"),
        ("http://host/#f", "has a fragment"),
    ] {
        check(
            &with(&format!("[control]\nrpc_upstream = \"{url}\"\n")),
            "25:16",
            &format!("`rpc_upstream` = \"{url}\" {why}"),
        );
    }
    check(
        &with("[control]\nrpc_upstream = \"http://h\"\nrpc_upstream_timeout_ms = 0\n"),
        "26:27",
        "`rpc_upstream_timeout_ms` = 0 is out of range; expected 1..=10000",
    );
    check(
        &with("[control]\nrpc_upstream_timeout_ms = 100\n"),
        "25:27",
        "`rpc_upstream_timeout_ms` is set but `rpc_upstream` is not",
    );
}

#[test]
fn tuning_section_parses() {
    let text = with(
        "[tuning]\nmlockall = false\nrequired = true\nlcore_policy = \"fifo\"\nlcore_priority = 50\n\
         control_cpus = \"0,3-4\"\ncontrol_policy = \"rr\"\ncontrol_priority = 10\nlatency_monitor = false\n",
    );
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    let t = &config.tuning;
    assert!(!t.mlockall && t.required && !t.latency_monitor);
    assert_eq!((t.lcore_policy, t.lcore_priority), (SchedPolicy::Fifo, 50));
    assert_eq!(
        (t.control_policy, t.control_priority),
        (SchedPolicy::Rr, 10)
    );
    assert_eq!(t.control_cpus, Some(vec![0, 3, 4]));
    assert_eq!(t.lcore_policy.to_string(), "fifo");
}

#[test]
fn tuning_errors() {
    check(
        &with("[tuning]\nmlockal = true\n"),
        "25:1",
        "unknown field `mlockal`, expected one of `mlockall`, `required`, `lcore_policy`",
    );
    check(
        &with("[tuning]\nlcore_policy = \"deadline\"\n"),
        "25:16",
        "unknown variant `deadline`, expected one of `other`, `fifo`, `rr`",
    );
    check(
        &with("[tuning]\nlcore_policy = \"fifo\"\n"),
        "25:16",
        "`lcore_policy` = \"fifo\" needs a real-time priority; expected `lcore_priority` = 1..=99",
    );
    check(
        &with("[tuning]\nlcore_policy = \"rr\"\nlcore_priority = 100\n"),
        "26:18",
        "`lcore_priority` = 100 is out of range; expected 1..=99",
    );
    check(
        &with("[tuning]\nlcore_priority = 5\n"),
        "25:18",
        "`lcore_priority` = 5 needs `lcore_policy` = \"fifo\" or \"rr\"",
    );
    check(
        &with("[tuning]\ncontrol_policy = \"fifo\"\ncontrol_priority = 0\n"),
        "26:20",
        "`control_priority` = 0 is out of range; expected 1..=99",
    );
    check(
        &with("[tuning]\ncontrol_priority = -1\n"),
        "25:20",
        "needs `control_policy` = \"fifo\" or \"rr\"",
    );
    check(
        &with("[tuning]\ncontrol_cpus = \"0-1\"\n"),
        "25:16",
        "`control_cpus` = \"0-1\" includes cpu 1, which is dataplane worker lcore 1",
    );
    check(
        &with("[tuning]\ncontrol_cpus = \"3,2\"\n"),
        "25:16",
        "includes cpu 2, which is dataplane worker lcore 2 (`eal.lcores` without `main_lcore`: 1-2)",
    );
    check(
        &with("[tuning]\ncontrol_cpus = \"3-\"\n"),
        "25:16",
        "`control_cpus` = \"3-\" is not a valid cpu list",
    );
    check(
        &with("[tuning]\nmlockall = \"yes\"\n"),
        "25:12",
        "invalid type: string \"yes\", expected a boolean",
    );
}

/// `BASE` with a TAP port and lcore 1 bridging it to `p0` (needs an RX queue on `p0`).
fn bridged(lcore_extra: &str) -> String {
    edit(&[
        ("tx_queues = 2\n", "tx_queues = 2\n\n[[port]]\nname = \"k0\"\ndevice = \"net_tap0,iface=swqos0\"\n"),
        (
            "queues = [{ port = \"p0\", queue = 0 }]\n",
            &format!("queues = [{{ port = \"p0\", queue = 0 }}, {{ port = \"k0\", queue = 0 }}]\n{lcore_extra}"),
        ),
    ])
}

#[test]
fn a_bridge_resolves_and_is_checked() {
    let config = Config::parse(
        &bridged("bridge = { nic = \"p0\", kernel = \"k0\" }\n"),
        Path::new("t.toml"),
    )
    .unwrap();
    let b = config.lcores[0].bridge.expect("bridge");
    assert_eq!((b.nic, b.kernel, b.queue), (0, 1, 0));

    // Line 18 is `bridge = ...`; its inline table starts at column 10.
    check(
        &bridged("bridge = { nic = \"p0\", kernel = \"p0\" }\n"),
        "18:33",
        "expected a second port",
    );
    check(
        &bridged("bridge = { nic = \"p0\", kernel = \"nope\" }\n"),
        "18:33",
        "port `nope` is not defined",
    );
    check(
        &bridged("bridge = { nic = \"p0\", kernel = \"k0\", queue = 1 }\n"),
        "18:18",
        "has `rx_queues` = 1",
    );
    check(
        &bridged("bridge = { nic = \"p0\", kernel = \"k0\", extra = 1 }\n"),
        "18:39",
        "unknown field `extra`",
    );
    // The kernel side must be a TAP or virtio_user interface.
    let text = bridged("bridge = { nic = \"p0\", kernel = \"k0\" }\n")
        .replace("net_tap0,iface=swqos0", "net_null1");
    check(&text, "18:33", "expected a kernel interface");
    // The lcore must own a TX queue on both sides.
    let text = bridged("bridge = { nic = \"p0\", kernel = \"k0\" }\n")
        .replace(", { port = \"k0\", queue = 0 }]", "]");
    check(&text, "18:33", "owns no TX queue on it");
    // Only tx lcores bridge.
    let text = bridged("bridge = { nic = \"p0\", kernel = \"k0\" }\n")
        .replace("role = \"tx\"", "role = \"rx\"");
    check(&text, "18:10", "expected `bridge` only on a tx lcore");
}

/// `BASE`'s lane turned into an http lane with `keys` (one `key = value` per line).
fn http_lane(keys: &str) -> String {
    let start = BASE.find("kind = \"udp\"").unwrap();
    format!("{}kind = \"http\"\nport = \"p0\"\n{keys}", &BASE[..start])
}

#[test]
fn http_lanes_are_checked() {
    let ok = http_lane("provider = \"jito\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t0k\"\n");
    let config = Config::parse(&ok, Path::new("t.toml")).unwrap();
    let LaneKind::Http(h) = &config.lanes[0].kind else {
        panic!("an http lane");
    };
    assert_eq!(
        (h.dst_port, h.host.as_str(), h.connections),
        (80, "10.0.0.2", 2)
    );
    assert!(
        !format!("{config:?}").contains("t0k"),
        "tokens never show in Debug"
    );

    // Line 17 is `kind = "http"`, the keys follow from line 19.
    check(
        &http_lane("dst_ip = \"10.0.0.2\"\ntoken = \"t\"\n"),
        "17:8",
        "has no `provider`",
    );
    check(
        &http_lane("provider = \"nope\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t\"\n"),
        "19:12",
        "unknown provider \"nope\"; expected one of `jito`",
    );
    check(
        &http_lane("provider = \"jito\"\ndst_ip = \"10.0.0.2\"\n"),
        "17:8",
        "has no `token`",
    );
    check(
        &http_lane(
            "provider = \"jito\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t\"\ntoken_env = \"X\"\n",
        ),
        "21:9",
        "both `token` and `token_env`",
    );
    check(
        &http_lane(
            "provider = \"jito\"\ndst_ip = \"10.0.0.2\"\ntoken_env = \"SWQOS_SURELY_UNSET_VAR\"\n",
        ),
        "21:13",
        "environment variable `SWQOS_SURELY_UNSET_VAR` is not set",
    );
    check(
        &http_lane(
            "provider = \"jito\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t\"\nsrc_ip = \"10.0.0.1\"\n",
        ),
        "22:10",
        "`src_ip` is for udp lanes",
    );
    check(
        &http_lane("provider = \"jito\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t\"\nconnections = 0\n"),
        "22:15",
        "`connections` = 0 is out of range",
    );
    // Lightspeed needs no token.
    let ls = http_lane("provider = \"lightspeed\"\ndst_ip = \"10.0.0.2\"\npath = \"/rpc\"\n");
    assert!(Config::parse(&ls, Path::new("t.toml")).is_ok());
}

#[test]
fn glaive_and_lunar_lander_lanes_are_checked() {
    const KEY: &str = "00112233-4455-4677-8899-aabbccddeeff";
    for (name, provider) in [
        ("glaive", Provider::Glaive),
        ("lunarlander", Provider::LunarLander),
    ] {
        let ok = http_lane(&format!(
            "provider = \"{name}\"\ndst_ip = \"10.0.0.2\"\ntoken = \"{KEY}\"\n"
        ));
        let config = Config::parse(&ok, Path::new("t.toml")).unwrap();
        let LaneKind::Http(h) = &config.lanes[0].kind else {
            panic!("an http lane");
        };
        assert_eq!(h.provider, provider);
        assert_eq!((h.dst_port, h.host.as_str()), (80, "10.0.0.2"));
        assert!(!format!("{config:?}").contains(KEY), "tokens never show");
        // Both need their API key.
        check(
            &http_lane(&format!("provider = \"{name}\"\ndst_ip = \"10.0.0.2\"\n")),
            "17:8",
            "has no `token`",
        );
    }
    // Lunar Lander keys are opaque; Glaive's are UUID v4 (sol-trade-sdk checks the same).
    let ll = http_lane("provider = \"lunarlander\"\ndst_ip = \"10.0.0.2\"\ntoken = \"ll-key\"\n");
    assert!(Config::parse(&ll, Path::new("t.toml")).is_ok());
    for bad in [
        "not-a-uuid",
        "00112233-4455-1677-8899-aabbccddeeff",  // version 1
        "00112233445546778899aabbccddeeff",      // no hyphens
        "00112233-4455-4677-8899-aabbccddeefg",  // not hex
        "00112233-4455-4677-8899-aabbccddeeff0", // too long
    ] {
        let text = http_lane(&format!(
            "provider = \"glaive\"\ndst_ip = \"10.0.0.2\"\ntoken = \"{bad}\"\n"
        ));
        check(&text, "21:9", "not a Glaive API key; expected a UUID v4");
        let err = Config::parse(&text, Path::new("t.toml")).unwrap_err();
        assert!(!err.to_string().contains(bad), "the token is not echoed");
    }
    let upper = http_lane(
        "provider = \"glaive\"\ndst_ip = \"10.0.0.2\"\ntoken = \"00112233-4455-4677-8899-AABBCCDDEEFF\"\n",
    );
    assert!(Config::parse(&upper, Path::new("t.toml")).is_ok());
    // The unknown-provider error names them.
    check(
        &http_lane("provider = \"lunar-lander\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t\"\n"),
        "19:12",
        "`lightspeed`, `glaive`, `lunarlander`",
    );
}

#[test]
fn relay_connections_fit_the_session_table() {
    // Two lanes of 40 connections: the second one goes past the 64 entries.
    let lane = |name: &str| {
        format!(
            "\n[[lane]]\nname = \"{name}\"\nkind = \"http\"\nport = \"p0\"\nprovider = \"jito\"\n\
             dst_ip = \"10.0.0.2\"\ntoken = \"t\"\nconnections = 40\n"
        )
    };
    let one = format!(
        "{}{}",
        http_lane("provider = \"jito\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t\"\nconnections = 24\n"),
        lane("b")
    );
    assert!(
        Config::parse(&one, Path::new("t.toml")).is_ok(),
        "24 + 40 = 64 fit"
    );
    let two = format!(
        "{}{}",
        http_lane("provider = \"jito\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t\"\nconnections = 25\n"),
        lane("b")
    );
    let line = two.lines().position(|l| l == "connections = 40").unwrap() + 1;
    check(
        &two,
        &format!("{line}:15"),
        "lane `b` brings the relay lanes to 65 connections; expected at most 64 in all",
    );
}

#[test]
fn tls_lanes_are_checked() {
    let lane = |keys: &str| {
        let text = http_lane(&format!(
            "provider = \"jito\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t\"\n{keys}"
        ));
        Config::parse(&text, Path::new("t.toml")).map(|c| {
            let LaneKind::Http(h) = &c.lanes[0].kind else {
                panic!("an http lane");
            };
            h.clone()
        })
    };
    // `tls = true`: port 443 by default, SNI from the host without its port.
    let h = lane("tls = true\n").unwrap();
    let tls = h.tls.unwrap();
    assert_eq!((h.dst_port, h.host.as_str()), (443, "10.0.0.2"));
    assert_eq!(tls.server_name, "10.0.0.2");
    assert!(tls.ca_files.is_empty() && !tls.insecure_skip_verify);
    let h = lane(
        "tls = true\nhost = \"relay.example:8443\"\ndst_port = 8443\n\
         ca_files = [\"/etc/swqos/ca.pem\"]\ninsecure_skip_verify = true\n",
    )
    .unwrap();
    let tls = h.tls.unwrap();
    assert_eq!(tls.server_name, "relay.example");
    assert_eq!(
        tls.ca_files,
        vec![std::path::PathBuf::from("/etc/swqos/ca.pem")]
    );
    assert!(tls.insecure_skip_verify);
    let h = lane("tls = true\nserver_name = \"sni.example\"\n").unwrap();
    assert_eq!(h.tls.unwrap().server_name, "sni.example");
    assert_eq!(lane("").unwrap().tls, None);

    // Line 22 holds the first key after the token.
    let text = |keys: &str| {
        http_lane(&format!(
            "provider = \"jito\"\ndst_ip = \"10.0.0.2\"\ntoken = \"t\"\n{keys}"
        ))
    };
    check(
        &text("server_name = \"x\"\n"),
        "22:15",
        "`server_name` is for TLS lanes; add `tls = true`",
    );
    check(
        &text("tls = false\ninsecure_skip_verify = true\n"),
        "23:24",
        "`insecure_skip_verify` is for TLS lanes",
    );
    check(
        &text("tls = true\nca_files = [\"ca.pem\"]\n"),
        "23:13",
        "`ca_files` = \"ca.pem\" is not valid; expected an absolute path",
    );
    check(
        &text("tls = true\nserver_name = \"a.example:443\"\n"),
        "23:15",
        "`server_name` must be a host name",
    );
    check(&text("tls = \"yes\"\n"), "22:7", "expected a boolean");
}

/// Every prefix of every shipped profile either parses or fails with a message and a
/// `line:column` inside the text (a small in-tree fuzz: truncation is how a config usually
/// breaks, an editor's save cut short).
#[test]
fn every_truncated_profile_fails_with_a_message_and_a_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let prefix = &text[..cut];
            let Err(err) = Config::parse(prefix, Path::new("t.toml")) else {
                continue;
            };
            let lines = prefix.split('\n').count();
            assert!(
                !err.message.trim().is_empty(),
                "{} cut at byte {cut}: empty message: {err}",
                path.display()
            );
            assert!(
                (1..=lines).contains(&err.line) && err.column >= 1,
                "{} cut at byte {cut}: position {}:{} outside the text: {err}",
                path.display(),
                err.line,
                err.column
            );
            assert_eq!(
                err.to_string(),
                format!("t.toml:{}:{}: {}", err.line, err.column, err.message)
            );
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} broken prefixes checked");
}

#[test]
fn a_value_missing_at_the_end_of_the_file_says_so() {
    let err = Config::parse("[eal]\nmemory_mb =", Path::new("t.toml")).unwrap_err();
    assert_eq!((err.line, err.column), (2, 12), "{err}");
    assert!(err.message.contains("expected a value"), "{err}");
}

/// `BASE` with `lines` added to its `[[lcore]]` after `role` (so they start on line 13).
fn lcore_with(lines: &str) -> String {
    edit(&[("role = \"tx\"\n", &format!("role = \"tx\"\n{lines}"))])
}

#[test]
fn poll_modes_parse() {
    let poll = |text: &str| Config::parse(text, Path::new("t.toml")).unwrap().lcores[0].poll;
    assert_eq!(poll(BASE), PollMode::Busy, "busy by default");
    assert_eq!(poll(&lcore_with("poll = \"busy\"\n")), PollMode::Busy);
    assert_eq!(
        poll(&lcore_with("poll = \"adaptive\"\n")),
        PollMode::Adaptive(AdaptivePoll {
            idle_polls: 2000,
            max_sleep_us: 100
        })
    );
    let tuned = poll(&lcore_with(
        "poll = \"adaptive\"\nidle_polls = 1\nmax_sleep_us = 10000\n",
    ));
    assert_eq!(
        tuned,
        PollMode::Adaptive(AdaptivePoll {
            idle_polls: 1,
            max_sleep_us: 10_000
        })
    );
    assert_eq!(tuned.as_str(), "adaptive");
    assert_eq!(
        tuned.to_string(),
        "adaptive (idle_polls 1, max_sleep_us 10000)"
    );
}

#[test]
fn poll_errors() {
    check(
        &lcore_with("poll = \"lazy\"\n"),
        "13:8",
        "unknown variant `lazy`, expected `busy` or `adaptive`",
    );
    check(&lcore_with("poll = true\n"), "13:8", "wanted string");
    check(
        &lcore_with("poll = \"adaptive\"\nidle_polls = 0\n"),
        "14:14",
        "`idle_polls` = 0 is out of range; expected 1..=100000000",
    );
    check(
        &lcore_with("poll = \"adaptive\"\nmax_sleep_us = 10001\n"),
        "14:16",
        "`max_sleep_us` = 10001 is out of range; expected 1..=10000",
    );
    check(
        &lcore_with("poll = \"adaptive\"\nmax_sleep_us = -1\n"),
        "14:16",
        "`max_sleep_us` = -1 is out of range; expected 1..=10000",
    );
    check(
        &lcore_with("poll = \"adaptive\"\nidle_polls = \"5\"\n"),
        "14:14",
        "invalid type: string \"5\", expected an integer",
    );
    // The tunables belong to adaptive polling: on a busy lcore they are a mistake, not a no-op.
    check(
        &lcore_with("max_sleep_us = 50\n"),
        "13:16",
        "`max_sleep_us` applies to adaptive polling only, and lcore 1 polls busy; expected \
         `poll = \"adaptive\"` with it, or no `max_sleep_us`",
    );
    check(
        &lcore_with("poll = \"busy\"\nidle_polls = 10\n"),
        "14:14",
        "`idle_polls` applies to adaptive polling only",
    );
    check(
        &lcore_with("pol = \"adaptive\"\n"),
        "13:1",
        "unknown field `pol`, expected one of `id`, `role`, `queues`, `bridge`, `poll`, \
         `idle_polls`, `max_sleep_us`",
    );
}
