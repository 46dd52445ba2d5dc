/*
 * Traffic source for bench/native-bench.ts: sends as fast as it can (or at RATE packets/s) for
 * SECONDS, in sendmmsg batches of 64, then prints {"sent":N,"errors":N,"seconds":S,"cpuSeconds":C}.
 *
 *   native-blast udp  DST PORT SIZE SECONDS [FLOWS] [RATE]
 *       UDP datagrams whose IP packets are SIZE bytes, to DST:PORT, from FLOWS sockets (FLOWS
 *       source ports) taking turns batch by batch.
 *   native-blast ipip OUTER_SRC OUTER_DST INNER_SRC INNER_DST SIZE SECONDS [FLOWS] [RATE]
 *       IP-in-IP packets of SIZE bytes (outer header included) carrying UDP, through an
 *       IPPROTO_RAW socket with the header written here; FLOWS inner source ports.
 *       With BLAST_PACKET=IFNAME,DSTMAC in the environment, the same packets go out as Ethernet frames
 *       to DSTMAC through an AF_PACKET socket bound to IFNAME with PACKET_QDISC_BYPASS: no route
 *       lookup, netfilter, neighbour or qdisc per packet (what an AF_PACKET TX path would save).
 *       BLAST_QDISC=1 keeps the qdisc (as userfan's TX GSO must: its TC program runs there).
 *       BLAST_TXRING=1 sends through a PACKET_TX_RING (TPACKET_V2, 4096 frames of 2048 bytes)
 *       instead of sendmmsg: each batch is copied into ring frames and flushed with one send(); the
 *       kernel attaches the frames' pages to the skbs instead of copying (the mmap TX path some
 *       packet generators use).
 *
 * Build: gcc -O2 -o bench/out/native-blast bench/native-blast.c
 */
#define _GNU_SOURCE
#define PROG "native-blast"
#include "bench.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAXFLOWS 64
#define MAXSIZE 9000


static uint32_t addr(const char *s) {
  struct in_addr a;
  if (inet_pton(AF_INET, s, &a) != 1) { fprintf(stderr, "native-blast: bad address %s\n", s); exit(2); }
  return ntohl(a.s_addr);
}

static void put16(uint8_t *b, uint32_t v) { b[0] = v >> 8; b[1] = v; }
static void put32(uint8_t *b, uint32_t v) { b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v; }

static uint16_t csum(const uint8_t *b, int n) {
  uint32_t s = 0;
  for (int i = 0; i < n; i += 2) s += (uint32_t)b[i] << 8 | (i + 1 < n ? b[i + 1] : 0);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

static void ip_header(uint8_t *b, int len, uint16_t id, int proto, uint32_t src, uint32_t dst) {
  memset(b, 0, 20);
  b[0] = 0x45; put16(b + 2, len); put16(b + 4, id); put16(b + 6, 0x4000); b[8] = 64; b[9] = proto;
  put32(b + 12, src); put32(b + 16, dst);
  put16(b + 10, csum(b, 20));
}

static uint8_t pkts[MAXFLOWS][MAXSIZE + 14];

#define RING_FRAME 2048
#define RING_FRAMES 4096
#define RING_BLOCK (1 << 20)

/* The TX ring (BLAST_TXRING): its mapping and the next frame to fill. */
static uint8_t *ring;
static unsigned ring_head;

static void tx_ring_setup(int fd, int size) {
  if (size + TPACKET2_HDRLEN > RING_FRAME) { fprintf(stderr, "native-blast: SIZE too big for the TX ring\n"); exit(2); }
  int v = TPACKET_V2;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) die("PACKET_VERSION");
  struct tpacket_req req = { .tp_block_size = RING_BLOCK, .tp_block_nr = RING_FRAMES * RING_FRAME / RING_BLOCK,
                             .tp_frame_size = RING_FRAME, .tp_frame_nr = RING_FRAMES };
  if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) die("PACKET_TX_RING");
  ring = mmap(NULL, (size_t)RING_FRAMES * RING_FRAME, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (ring == MAP_FAILED) die("mmap(PACKET_TX_RING)");
}

/* Copies up to n packets (cycling through flows) into free ring frames and flushes them with one
   send(); returns how many were queued (fewer when the ring is full), or -1 on a send error. */
static int tx_ring_send(int fd, int n, int flows, int len) {
  int k = 0;
  for (; k < n; k++) {
    struct tpacket2_hdr *h = (struct tpacket2_hdr *)(ring + (size_t)ring_head * RING_FRAME);
    if (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE) break;
    memcpy((uint8_t *)h + TPACKET2_HDRLEN - sizeof(struct sockaddr_ll), pkts[k % flows], len);
    h->tp_len = len;
    __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
    ring_head = (ring_head + 1) % RING_FRAMES;
  }
  if (send(fd, NULL, 0, MSG_DONTWAIT) < 0 && errno != EAGAIN) return -1;
  return k;
}

int main(int argc, char **argv) {
  if (argc < 2) goto usage;
  int ipip = strcmp(argv[1], "ipip") == 0;
  if (!ipip && strcmp(argv[1], "udp") != 0) goto usage;
  if ((ipip && argc < 8) || (!ipip && argc < 6)) goto usage;
  int size = atoi(argv[ipip ? 6 : 4]);
  double seconds = atof(argv[ipip ? 7 : 5]);
  int flows = argc > (ipip ? 8 : 6) ? atoi(argv[ipip ? 8 : 6]) : 1;
  double rate = argc > (ipip ? 9 : 7) ? atof(argv[ipip ? 9 : 7]) : 0;
  if (size < (ipip ? 48 : 28) || size > MAXSIZE || flows < 1 || flows > MAXFLOWS) goto usage;

  int socks[MAXFLOWS], nsocks = ipip ? 1 : flows;
  struct sockaddr_in to = { .sin_family = AF_INET };
  int plen;
  const char *packet = getenv("BLAST_PACKET");
  int eth = ipip && packet && *packet ? 14 : 0;
  uint8_t mac[12];
  if (ipip) {
    uint32_t osrc = addr(argv[2]), odst = addr(argv[3]), isrc = addr(argv[4]), idst = addr(argv[5]);
    int buf = 8 << 20;
    if (eth) {
      char ifname[IFNAMSIZ] = {0};
      const char *comma = strchr(packet, ',');
      unsigned m[6];
      if (!comma || comma - packet >= IFNAMSIZ ||
          sscanf(comma + 1, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
        fprintf(stderr, "native-blast: BLAST_PACKET=IFNAME,DSTMAC\n");
        return 2;
      }
      memcpy(ifname, packet, comma - packet);
      for (int i = 0; i < 6; i++) mac[i] = (uint8_t)m[i];
      socks[0] = socket(AF_PACKET, SOCK_RAW, 0);
      if (socks[0] < 0) die("socket(AF_PACKET)");
      struct ifreq ifr = {0};
      memcpy(ifr.ifr_name, ifname, IFNAMSIZ);
      if (ioctl(socks[0], SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
      memcpy(mac + 6, ifr.ifr_hwaddr.sa_data, 6);
      struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = 0, .sll_ifindex = (int)if_nametoindex(ifname) };
      if (!ll.sll_ifindex) die("if_nametoindex");
      if (bind(socks[0], (struct sockaddr *)&ll, sizeof ll) < 0) die("bind(AF_PACKET)");
      int one = 1;
      if (!getenv("BLAST_QDISC") && setsockopt(socks[0], SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0)
        die("PACKET_QDISC_BYPASS");
      if (getenv("BLAST_TXRING")) tx_ring_setup(socks[0], size + eth);
    } else {
      socks[0] = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
      if (socks[0] < 0) die("socket(IPPROTO_RAW)");
    }
    setsockopt(socks[0], SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
    to.sin_addr.s_addr = htonl(odst);
    plen = size + eth;
    for (int f = 0; f < flows; f++) {
      uint8_t *p = pkts[f] + eth;
      if (eth) {
        memcpy(pkts[f], mac, 12);
        put16(pkts[f] + 12, 0x0800);
      }
      memset(p, 0xab, size);
      ip_header(p, size, (uint16_t)(f + 1), 4, osrc, odst);
      uint8_t *in = p + 20;
      ip_header(in, size - 20, (uint16_t)(f + 1), 17, isrc, idst);
      put16(in + 20, 20000 + f); put16(in + 22, 9); put16(in + 24, size - 40); put16(in + 26, 0);
    }
  } else {
    to.sin_addr.s_addr = htonl(addr(argv[2]));
    to.sin_port = htons((uint16_t)atoi(argv[3]));
    plen = size - 28;
    for (int f = 0; f < flows; f++) {
      socks[f] = socket(AF_INET, SOCK_DGRAM, 0);
      if (socks[f] < 0) die("socket");
      int buf = 8 << 20;
      setsockopt(socks[f], SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
      memset(pkts[f], 0xcd, plen);
    }
  }

  struct mmsghdr msgs[MAXFLOWS][BATCH];
  struct iovec iov[MAXFLOWS];
  for (int f = 0; f < flows; f++) {
    iov[f].iov_base = pkts[f];
    iov[f].iov_len = plen;
  }
  for (int f = 0; f < flows; f++) {
    for (int i = 0; i < BATCH; i++) {
      memset(&msgs[f][i], 0, sizeof msgs[f][i]);
      /* ipip: one socket, the batch cycles through the flows; udp: one flow per socket */
      msgs[f][i].msg_hdr.msg_iov = &iov[ipip ? (i % flows) : f];
      msgs[f][i].msg_hdr.msg_iovlen = 1;
      msgs[f][i].msg_hdr.msg_name = eth ? NULL : &to; /* AF_PACKET: the bound interface */
      msgs[f][i].msg_hdr.msg_namelen = eth ? 0 : sizeof to;
    }
  }

  uint64_t sent = 0, errors = 0;
  double t0 = now(), end = t0 + seconds, t = t0, cpu0 = cpu();
  int turn = 0;
  while (t < end) {
    if (rate > 0 && sent >= (t - t0) * rate) {
      struct timespec ns = { 0, 50000 };
      nanosleep(&ns, NULL);
      t = now();
      continue;
    }
    int f = ipip ? 0 : turn;
    turn = (turn + 1) % nsocks;
    int r = ring ? tx_ring_send(socks[0], BATCH, flows, plen) : sendmmsg(socks[f], msgs[ipip ? 0 : f], BATCH, 0);
    if (r < 0) {
      if (errno != EINTR) errors++;
    } else {
      sent += r;
    }
    t = now();
  }
  /* cpuSeconds includes the kernel's work done in this process's context (its softirqs: with veth,
     the receiving namespace's processing of what it sent). */
  printf("{\"sent\":%llu,\"errors\":%llu,\"seconds\":%.4f,\"cpuSeconds\":%.4f}\n", (unsigned long long)sent,
         (unsigned long long)errors, now() - t0, cpu() - cpu0);
  return 0;
usage:
  fprintf(stderr,
          "usage: native-blast udp DST PORT SIZE SECONDS [FLOWS] [RATE]\n"
          "       native-blast ipip OUTER_SRC OUTER_DST INNER_SRC INNER_DST SIZE SECONDS [FLOWS] [RATE]\n");
  return 2;
}
