/*
 * Non-inline wrappers around DPDK's static-inline fast-path functions, and
 * the values of DPDK's function-like macros as `static const` variables
 * (bindgen evaluates those into Rust `pub const` items, it cannot expand the
 * macros themselves).
 *
 * Naming: functions are `shim_<what they wrap>`, constants are
 * `SHIM_<DPDK macro name>`.
 */
#ifndef SWQOS_DPDK_SHIM_H
#define SWQOS_DPDK_SHIM_H

#include <stdint.h>
#include <rte_config.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* ---- ethdev offload capability bits (rte_eth_dev_info.*_offload_capa) ---- */
static const uint64_t SHIM_RTE_ETH_TX_OFFLOAD_IPV4_CKSUM = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
static const uint64_t SHIM_RTE_ETH_TX_OFFLOAD_UDP_CKSUM = RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
static const uint64_t SHIM_RTE_ETH_TX_OFFLOAD_TCP_CKSUM = RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
static const uint64_t SHIM_RTE_ETH_TX_OFFLOAD_MULTI_SEGS = RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
static const uint64_t SHIM_RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE = RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
static const uint64_t SHIM_RTE_ETH_RX_OFFLOAD_IPV4_CKSUM = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
static const uint64_t SHIM_RTE_ETH_RX_OFFLOAD_UDP_CKSUM = RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
static const uint64_t SHIM_RTE_ETH_RX_OFFLOAD_TCP_CKSUM = RTE_ETH_RX_OFFLOAD_TCP_CKSUM;

/* ---- mbuf ol_flags ---- */
static const uint64_t SHIM_RTE_MBUF_F_TX_IPV4 = RTE_MBUF_F_TX_IPV4;
static const uint64_t SHIM_RTE_MBUF_F_TX_IP_CKSUM = RTE_MBUF_F_TX_IP_CKSUM;
static const uint64_t SHIM_RTE_MBUF_F_TX_UDP_CKSUM = RTE_MBUF_F_TX_UDP_CKSUM;
static const uint64_t SHIM_RTE_MBUF_F_TX_TCP_CKSUM = RTE_MBUF_F_TX_TCP_CKSUM;
static const uint64_t SHIM_RTE_MBUF_F_TX_OFFLOAD_MASK = RTE_MBUF_F_TX_OFFLOAD_MASK;
static const uint64_t SHIM_RTE_MBUF_F_RX_IP_CKSUM_MASK = RTE_MBUF_F_RX_IP_CKSUM_MASK;
static const uint64_t SHIM_RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN = RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN;
static const uint64_t SHIM_RTE_MBUF_F_RX_IP_CKSUM_BAD = RTE_MBUF_F_RX_IP_CKSUM_BAD;
static const uint64_t SHIM_RTE_MBUF_F_RX_IP_CKSUM_GOOD = RTE_MBUF_F_RX_IP_CKSUM_GOOD;
static const uint64_t SHIM_RTE_MBUF_F_RX_IP_CKSUM_NONE = RTE_MBUF_F_RX_IP_CKSUM_NONE;
static const uint64_t SHIM_RTE_MBUF_F_RX_L4_CKSUM_MASK = RTE_MBUF_F_RX_L4_CKSUM_MASK;
static const uint64_t SHIM_RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN = RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN;
static const uint64_t SHIM_RTE_MBUF_F_RX_L4_CKSUM_BAD = RTE_MBUF_F_RX_L4_CKSUM_BAD;
static const uint64_t SHIM_RTE_MBUF_F_RX_L4_CKSUM_GOOD = RTE_MBUF_F_RX_L4_CKSUM_GOOD;
static const uint64_t SHIM_RTE_MBUF_F_RX_L4_CKSUM_NONE = RTE_MBUF_F_RX_L4_CKSUM_NONE;

/* ---- misc constants ---- */
static const uint32_t SHIM_LCORE_ID_ANY = LCORE_ID_ANY;
static const int32_t SHIM_SOCKET_ID_ANY = SOCKET_ID_ANY;
static const uint32_t SHIM_RTE_MAX_LCORE = RTE_MAX_LCORE;
static const uint32_t SHIM_RTE_MAX_ETHPORTS = RTE_MAX_ETHPORTS;
static const uint16_t SHIM_RTE_MBUF_DEFAULT_BUF_SIZE = RTE_MBUF_DEFAULT_BUF_SIZE;
static const uint16_t SHIM_RTE_PKTMBUF_HEADROOM = RTE_PKTMBUF_HEADROOM;

/* ---- ethdev fast path ---- */
uint16_t shim_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			   struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t shim_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			   struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* ---- mbuf ---- */
struct rte_mbuf *shim_pktmbuf_alloc(struct rte_mempool *mp);
int shim_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
			    unsigned int count);
void shim_pktmbuf_free(struct rte_mbuf *m);
void shim_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);
char *shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *shim_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *shim_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int shim_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
int shim_pktmbuf_chain(struct rte_mbuf *head, struct rte_mbuf *tail);
void *shim_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t shim_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t shim_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t shim_mbuf_refcnt_read(const struct rte_mbuf *m);
uint16_t shim_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value);
uint16_t shim_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t shim_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t shim_pktmbuf_nb_segs(const struct rte_mbuf *m);
struct rte_mbuf *shim_pktmbuf_next(const struct rte_mbuf *m);
uint64_t shim_mbuf_ol_flags(const struct rte_mbuf *m);
/* Replaces the TX part (RTE_MBUF_F_TX_OFFLOAD_MASK) of ol_flags with
 * `ol_flags & RTE_MBUF_F_TX_OFFLOAD_MASK` and sets l2/l3/l4_len. */
void shim_mbuf_set_tx_offload(struct rte_mbuf *m, uint64_t ol_flags,
			      uint8_t l2_len, uint16_t l3_len, uint8_t l4_len);
struct rte_mempool *shim_mbuf_pool(const struct rte_mbuf *m);

/* ---- mempool ---- */
unsigned int shim_mempool_avail_count(const struct rte_mempool *mp);
unsigned int shim_mempool_in_use_count(const struct rte_mempool *mp);

/* ---- eal / lcore / time ---- */
int shim_errno(void);
unsigned int shim_lcore_id(void);
uint64_t shim_rdtsc(void);
uint64_t shim_get_tsc_hz(void);
void shim_pause(void);

/* ---- checksums (headers may be unaligned) ---- */
uint16_t shim_ipv4_cksum(const void *ipv4_hdr);
uint16_t shim_ipv4_udptcp_cksum(const void *ipv4_hdr, const void *l4_hdr);
uint16_t shim_ipv4_phdr_cksum(const void *ipv4_hdr, uint64_t ol_flags);

#endif
