//! Finds DPDK with pkg-config, compiles the C shim and generates bindings.

use std::env;
use std::path::PathBuf;

const MISSING: &str = "DPDK 22.11+ not found by pkg-config (libdpdk). \
On Debian/Ubuntu: apt-get install libdpdk-dev dpdk pkg-config libclang-dev";

/// Functions bindgen emits. Kept explicit so the generated file stays small
/// and new uses are a conscious choice.
const FUNCTIONS: &[&str] = &[
    "rte_eal_init",
    "rte_eal_cleanup",
    "rte_strerror",
    "rte_eal_remote_launch",
    "rte_eal_wait_lcore",
    "rte_get_main_lcore",
    "rte_get_next_lcore",
    "rte_lcore_count",
    "rte_lcore_to_socket_id",
    "rte_socket_id",
    "rte_get_tsc_hz",
    "rte_pktmbuf_pool_create",
    "rte_mempool_free",
    "rte_mempool_avail_count",
    "rte_mempool_in_use_count",
    "rte_eth_dev_get_port_by_name",
    "rte_eth_dev_get_name_by_port",
    "rte_eth_dev_count_avail",
    "rte_eth_dev_is_valid_port",
    "rte_eth_dev_socket_id",
    "rte_eth_dev_info_get",
    "rte_eth_dev_configure",
    "rte_eth_dev_adjust_nb_rx_tx_desc",
    "rte_eth_rx_queue_setup",
    "rte_eth_tx_queue_setup",
    "rte_eth_dev_start",
    "rte_eth_dev_stop",
    "rte_eth_dev_close",
    "rte_eth_dev_set_mtu",
    "rte_eth_macaddr_get",
    "rte_eth_dev_default_mac_addr_set",
    "rte_eth_promiscuous_enable",
    "rte_eth_promiscuous_disable",
    "rte_eth_link_get_nowait",
    "rte_eth_stats_get",
    "rte_eth_stats_reset",
    "rte_eth_xstats_get_names",
    "rte_eth_xstats_get",
    "rte_pktmbuf_free_bulk",
    "rte_vdev_init",
    "rte_vdev_uninit",
    "shim_.*",
];

fn main() {
    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => panic!("{MISSING}\n(pkg-config said: {e})"),
    };

    // pkg-config's cflags: include paths, `-include rte_config.h`, -march.
    let mut clang_args: Vec<String> = lib
        .include_paths
        .iter()
        .map(|p| format!("-I{}", p.display()))
        .collect();
    clang_args.push("-include".into());
    clang_args.push("rte_config.h".into());
    for (k, v) in &lib.defines {
        clang_args.push(match v {
            Some(v) => format!("-D{k}={v}"),
            None => format!("-D{k}"),
        });
    }
    // Keep -march from `pkg-config --cflags` so the shim inlines the same
    // code paths DPDK was built for.
    let march = pkg_config_cflags()
        .into_iter()
        .filter(|f| f.starts_with("-march="))
        .collect::<Vec<_>>();

    let mut build = cc::Build::new();
    build.file("shim/shim.c").include("shim");
    for a in clang_args.iter().chain(march.iter()) {
        build.flag(a);
    }
    build.flag_if_supported("-Wno-unused-parameter");
    build.opt_level(3);
    build.compile("dpdk_shim");

    let bindings = {
        let mut b = bindgen::Builder::default()
            .header("shim/wrapper.h")
            .clang_arg("-Ishim")
            .clang_args(&clang_args)
            .clang_args(&march)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
            .use_core()
            .derive_default(true)
            .derive_debug(false)
            .layout_tests(false)
            .generate_comments(false)
            .prepend_enum_name(false)
            // Offload/flag values as constants; the rest is reached via types.
            .allowlist_var("SHIM_.*")
            .allowlist_type("rte_eth_dev_info")
            .allowlist_type("rte_eth_conf")
            .allowlist_type("rte_eth_link")
            .allowlist_type("rte_eth_stats")
            .allowlist_type("rte_eth_xstat")
            .allowlist_type("rte_eth_xstat_name")
            .allowlist_type("rte_ether_addr")
            .allowlist_type("rte_eth_txconf")
            .allowlist_type("rte_eth_rxconf")
            .allowlist_type("lcore_function_t")
            // Only reached through pointers and the shim: opaque blobs of the
            // right size avoid bindgen's trouble with packed+aligned members.
            .opaque_type("rte_mbuf")
            .opaque_type("rte_mempool")
            .opaque_type("rte_ipv4_hdr")
            .opaque_type("rte_device")
            .opaque_type("rte_eth_dev")
            .opaque_type("rte_eth_dev_data");
        for f in FUNCTIONS {
            b = b.allowlist_function(f);
        }
        b.generate().expect("bindgen failed on DPDK headers")
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");

    // Let dependents (and `cargo build -vv`) see where PMD plugins live.
    if let Ok(dir) = pkg_config::get_variable("libdpdk", "libdir") {
        println!("cargo:libdir={dir}");
    }
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=shim/wrapper.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
}

/// `pkg-config --cflags libdpdk`, split on whitespace.
fn pkg_config_cflags() -> Vec<String> {
    let pc = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    std::process::Command::new(pc)
        .args(["--cflags", "libdpdk"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
