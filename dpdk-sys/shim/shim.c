/* See shim.h. Each function is a plain forwarder to the DPDK inline. */
#include "shim.h"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_pause.h>

uint16_t shim_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			   struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t shim_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			   struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *shim_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int shim_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
			    unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void shim_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void shim_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count)
{
	rte_pktmbuf_free_bulk(mbufs, count);
}

char *shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

char *shim_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *shim_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

int shim_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

int shim_pktmbuf_chain(struct rte_mbuf *head, struct rte_mbuf *tail)
{
	return rte_pktmbuf_chain(head, tail);
}

void *shim_pktmbuf_mtod(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

uint16_t shim_pktmbuf_headroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_headroom(m);
}

uint16_t shim_pktmbuf_tailroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_tailroom(m);
}

uint16_t shim_mbuf_refcnt_read(const struct rte_mbuf *m)
{
	return rte_mbuf_refcnt_read(m);
}

uint16_t shim_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value)
{
	return rte_mbuf_refcnt_update(m, value);
}

uint16_t shim_pktmbuf_data_len(const struct rte_mbuf *m)
{
	return m->data_len;
}

uint32_t shim_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
	return m->pkt_len;
}

uint16_t shim_pktmbuf_nb_segs(const struct rte_mbuf *m)
{
	return m->nb_segs;
}

struct rte_mbuf *shim_pktmbuf_next(const struct rte_mbuf *m)
{
	return m->next;
}

uint64_t shim_mbuf_ol_flags(const struct rte_mbuf *m)
{
	return m->ol_flags;
}

void shim_mbuf_set_tx_offload(struct rte_mbuf *m, uint64_t ol_flags,
			      uint8_t l2_len, uint16_t l3_len, uint8_t l4_len)
{
	/* Only TX bits may be set from outside: other bits (EXTERNAL,
	 * INDIRECT, ...) change how the mbuf is freed. */
	m->ol_flags = (m->ol_flags & ~RTE_MBUF_F_TX_OFFLOAD_MASK) |
		      (ol_flags & RTE_MBUF_F_TX_OFFLOAD_MASK);
	m->l2_len = l2_len;
	m->l3_len = l3_len;
	m->l4_len = l4_len;
}

struct rte_mempool *shim_mbuf_pool(const struct rte_mbuf *m)
{
	return m->pool;
}

unsigned int shim_mempool_avail_count(const struct rte_mempool *mp)
{
	return rte_mempool_avail_count(mp);
}

unsigned int shim_mempool_in_use_count(const struct rte_mempool *mp)
{
	return rte_mempool_in_use_count(mp);
}

int shim_errno(void)
{
	return rte_errno;
}

unsigned int shim_lcore_id(void)
{
	return rte_lcore_id();
}

uint64_t shim_rdtsc(void)
{
	return rte_rdtsc();
}

uint64_t shim_get_tsc_hz(void)
{
	return rte_get_tsc_hz();
}

void shim_pause(void)
{
	rte_pause();
}

uint16_t shim_ipv4_cksum(const void *ipv4_hdr)
{
	return rte_ipv4_cksum((const struct rte_ipv4_hdr *)ipv4_hdr);
}

uint16_t shim_ipv4_udptcp_cksum(const void *ipv4_hdr, const void *l4_hdr)
{
	return rte_ipv4_udptcp_cksum((const struct rte_ipv4_hdr *)ipv4_hdr, l4_hdr);
}

uint16_t shim_ipv4_phdr_cksum(const void *ipv4_hdr, uint64_t ol_flags)
{
	return rte_ipv4_phdr_cksum((const struct rte_ipv4_hdr *)ipv4_hdr, ol_flags);
}
