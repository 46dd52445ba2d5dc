/*
 * The yardstick: one userfan worker loop written in C, to measure the TypeScript loop
 * (bench/native-loop.ts) against. Same syscalls, same batch size, same per-packet work as
 * src/wire/ipip.ts (egressRoute + encapsulate, decapsulate) for one fan.
 *
 * Both run WARMUP seconds (environment, default 1) before measuring SECONDS.
 *
 *   loop encap TUN SECONDS [BATCH]   TUN read until EAGAIN/BATCH -> checks, fan lookup, 20-byte outer
 *                                    header in the headroom -> sendmmsg on a protocol-4 raw socket
 *   loop decap TUN SECONDS [BATCH]   recvmmsg on a protocol-4 raw socket -> outer/inner checks,
 *                                    anti-spoofing, RFC 6040 ECN -> TUN write
 *   loop relay TUN SECONDS [SPIN_US] both, as one userfan worker does them: poll on the TUN and the
 *                                    raw socket, handle what is there, then (SPIN_US > 0) look again
 *                                    with poll(0) and sched_yield() for SPIN_US before sleeping, as
 *                                    userfan's busy poll does. The yardstick for echo latency
 *                                    (bench/paths/c-relay.ts): a TUN relay with no JavaScript in it.
 *
 * LOCAL (environment, dotted quad; default 198.18.0.28) is this host's underlay address.
 * The fan is 250.0.0.0/8 over 198.18.0.0/16 with this host 198.18.0.28 (bench/native-bench.ts builds
 * that lab). TUN is an existing multi-queue device: this attaches one queue. Prints one JSON line:
 * {"impl":"c","mode":...,"packets":N,"drops":N,"sendErrors":N,"seconds":S,"cpuSeconds":C}
 *
 * Build: gcc -O2 -o bench/out/loop bench/loop.c
 */
#define _GNU_SOURCE
#define PROG "loop"
#include "bench.h"
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXBATCH 256
#define SLOT 2048
#define HEADROOM 32

static const uint32_t O_NET = 0xfa000000u, O_MASK = 0xff000000u;   /* 250.0.0.0/8 */
static const uint32_t U_NET = 0xc6120000u, U_MASK = 0xffff0000u;   /* 198.18.0.0/16 */
static const int SHIFT = 8;                                         /* 32 - (8 + 16) */
static uint32_t LOCAL = 0xc612001cu;                                /* 198.18.0.28; env LOCAL */
static const uint32_t SLICE_MASK = 0xffffff00u;

static double user_cpu(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6;
}

static inline uint32_t u16(const uint8_t *b) { return (uint32_t)b[0] << 8 | b[1]; }
static inline uint32_t u32(const uint8_t *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }
static inline void put16(uint8_t *b, uint32_t v) { b[0] = v >> 8; b[1] = v; }
static inline void put32(uint8_t *b, uint32_t v) { b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = v; }
static inline uint32_t fold(uint32_t s) { while (s >> 16) s = (s & 0xffff) + (s >> 16); return s; }

/* Fan lookups, as FanTable does them for one fan. 0: no fan; 1: no host. */
static inline uint32_t underlay_host_of(uint32_t d) {
  if ((d & O_MASK) != O_NET) return 0;
  uint32_t host = U_NET | ((d & ~O_MASK) >> SHIFT);
  uint32_t bits = host & ~U_MASK;
  if (bits == 0 || bits == (~U_MASK)) return 1;
  return host;
}
static inline int in_overlay(uint32_t d) { return (d & O_MASK) == O_NET; }
static inline int is_local(uint32_t d) { return (d & SLICE_MASK) == ((O_NET | ((LOCAL & ~U_MASK) << SHIFT)) & SLICE_MASK); }

/* egressRoute + encapsulate: the outer destination, or 0 to drop. */
static uint32_t encap(uint8_t *b, uint32_t len, uint16_t id) {
  if (len < 20 || b[0] >> 4 != 4) return 0;
  uint32_t hl = (b[0] & 15) << 2;
  if (hl < 20 || hl > len || u16(b + 2) != len) return 0;
  uint32_t dst = underlay_host_of(u32(b + 16));
  if (dst <= 1 || dst == LOCAL || u32(b + 12) == LOCAL) return 0;
  uint32_t src = LOCAL;
  uint8_t *o = b - 20;
  uint32_t itos = b[1];
  uint32_t tos = (itos & ~3u & 0xff) | ((itos & 3) == 3 ? 2 : (itos & 3));
  uint32_t total = len + 20, df = u16(b + 6) & 0x4000, ttl = 64;
  o[0] = 0x45; o[1] = tos; put16(o + 2, total); put16(o + 4, id); put16(o + 6, df);
  o[8] = ttl; o[9] = 4; put32(o + 12, src); put32(o + 16, dst);
  uint32_t sum = (0x4500 | tos) + total + id + df + (ttl << 8 | 4) + (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff);
  put16(o + 10, ~fold(sum) & 0xffff);
  return dst;
}

/* decapsulate: offset of the inner packet, or -1 to drop. */
static int decap(uint8_t *b, uint32_t len) {
  if (len < 20 || b[0] >> 4 != 4) return -1;
  uint32_t ohl = (b[0] & 15) << 2;
  if (ohl < 20 || ohl > len || u16(b + 2) != len || b[9] != 4) return -1;
  uint32_t osrc = u32(b + 12), odst = u32(b + 16);
  if (osrc == LOCAL || (osrc & U_MASK) != U_NET) return -1;
  uint8_t *i = b + ohl;
  uint32_t ilen = len - ohl;
  if (ilen < 20 || i[0] >> 4 != 4) return -1;
  uint32_t ihl = (i[0] & 15) << 2;
  if (ihl < 20 || ihl > ilen || u16(i + 2) != ilen) return -1;
  uint32_t s = 0;
  for (uint32_t k = 0; k < ihl; k += 2) s += u16(i + k);
  if (fold(s) != 0xffff || i[8] == 0) return -1;
  uint32_t isrc = u32(i + 12);
  if (isrc == osrc || isrc == odst || isrc == LOCAL) return -1;
  if (!in_overlay(isrc) || underlay_host_of(isrc) != osrc) return -1; /* spoofed */
  if (odst != LOCAL) return -1;
  if (!is_local(u32(i + 16))) return -1;
  uint32_t itos = i[1], inner = itos & 3, outer = b[1] & 3, next = inner;
  if (outer == 3) { if (inner == 0) return -1; next = 3; }
  else if (outer == 1 && inner == 2) next = 1;
  if (next != inner) {
    uint32_t ntos = (itos & ~3u & 0xff) | next;
    uint32_t old = (uint32_t)i[0] << 8 | itos, neu = (uint32_t)i[0] << 8 | ntos;
    i[1] = ntos;
    uint32_t c = fold((~u16(i + 10) & 0xffff) + (~old & 0xffff) + neu); /* RFC 1624 */
    put16(i + 10, ~c & 0xffff);
  }
  return (int)ohl;
}

static int tun_attach(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
  return fd;
}

static int raw_open(void) {
  int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_IPIP);
  if (fd < 0) die("socket");
  int one = 1, buf = 8 << 20;
  if (setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof one) < 0) die("IP_HDRINCL");
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0) die("SO_RCVBUFFORCE");
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0) die("SO_SNDBUFFORCE");
  return fd;
}

static uint8_t slots[MAXBATCH * SLOT];
static struct mmsghdr msgs[MAXBATCH];
static struct iovec iov[MAXBATCH];
static struct sockaddr_in sa[MAXBATCH];
static uint32_t lens[MAXBATCH];
static uint64_t packets, drops, errors, batches, polls;
static uint16_t id;

/* TUN read until EAGAIN or `batch` -> encapsulate -> sendmmsg. Returns how many packets were read. */
static int do_encap(int tun, int sock, int batch) {
  int n = 0;
  while (n < batch) {
    ssize_t r = read(tun, slots + n * SLOT + HEADROOM, SLOT - HEADROOM);
    if (r < 0) { if (errno == EINTR) continue; if (errno == EAGAIN) break; die("read"); }
    lens[n++] = (uint32_t)r;
  }
  if (n > 0) batches++;
  int m = 0;
  for (int i = 0; i < n; i++) {
    uint8_t *pk = slots + i * SLOT + HEADROOM;
    uint32_t dst = encap(pk, lens[i], id);
    if (!dst) { drops++; continue; }
    id++;
    memset(&sa[m], 0, sizeof sa[m]);
    sa[m].sin_family = AF_INET;
    sa[m].sin_addr.s_addr = htonl(dst);
    iov[m].iov_base = pk - 20;
    iov[m].iov_len = lens[i] + 20;
    memset(&msgs[m].msg_hdr, 0, sizeof msgs[m].msg_hdr);
    msgs[m].msg_hdr.msg_name = &sa[m];
    msgs[m].msg_hdr.msg_namelen = sizeof sa[m];
    msgs[m].msg_hdr.msg_iov = &iov[m];
    msgs[m].msg_hdr.msg_iovlen = 1;
    m++;
  }
  int done = 0;
  while (done < m) {
    int r = sendmmsg(sock, msgs + done, m - done, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) { errors += m - done; break; }
      errors++; done++; continue;
    }
    done += r;
    packets += r;
  }
  return n;
}

/* recvmmsg (up to `batch`) -> decapsulate -> TUN write. Returns how many packets were received. */
static int do_decap(int tun, int sock, int batch) {
  for (int i = 0; i < batch; i++) {
    iov[i].iov_base = slots + i * SLOT + HEADROOM;
    iov[i].iov_len = SLOT - HEADROOM;
    memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
    msgs[i].msg_hdr.msg_name = &sa[i];
    msgs[i].msg_hdr.msg_namelen = sizeof sa[i];
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int n = recvmmsg(sock, msgs, batch, MSG_DONTWAIT | MSG_TRUNC, NULL);
  if (n < 0) { if (errno != EAGAIN && errno != EINTR) errors++; return 0; }
  if (n > 0) batches++;
  for (int i = 0; i < n; i++) {
    uint8_t *pk = slots + i * SLOT + HEADROOM;
    uint32_t len = msgs[i].msg_len;
    if (len > SLOT - HEADROOM) { drops++; continue; }
    int inner = decap(pk, len);
    if (inner < 0) { drops++; continue; }
    for (;;) {
      ssize_t r = write(tun, pk + inner, len - inner);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) errors++; else packets++;
      break;
    }
  }
  return n;
}

/* Both directions until SECONDS pass (see the header). */
static void relay(int tun, int sock, double seconds, int spin_us) {
  struct pollfd p[2] = { { .fd = tun, .events = POLLIN }, { .fd = sock, .events = POLLIN } };
  double end = now() + seconds;
  while (now() < end) {
    polls++;
    if (poll(p, 2, 250) <= 0) continue;
    for (;;) {
      int worked = do_encap(tun, sock, 64) + do_decap(tun, sock, 64);
      if (worked) continue;
      int again = 0;
      if (spin_us > 0) {
        double until = now() + spin_us / 1e6;
        while (!again && now() < until) {
          polls++;
          if (poll(p, 2, 0) > 0) again = 1;
          else sched_yield();
        }
      }
      if (!again) break;
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: loop encap|decap TUN SECONDS [BATCH] | loop relay TUN SECONDS [SPIN_US]\n");
    return 2;
  }
  const char *local = getenv("LOCAL");
  if (local) {
    struct in_addr a;
    if (inet_pton(AF_INET, local, &a) != 1) { fprintf(stderr, PROG ": LOCAL=%s: not an IPv4 address\n", local); return 2; }
    LOCAL = ntohl(a.s_addr);
  }
  double seconds = atof(argv[3]);
  int tun = tun_attach(argv[2]);
  int sock = raw_open();
  if (strcmp(argv[1], "relay") == 0) {
    int spin_us = argc > 4 ? atoi(argv[4]) : 0;
    double cpu0 = cpu(), t0 = now();
    relay(tun, sock, seconds, spin_us);
    printf("{\"impl\":\"c\",\"mode\":\"relay\",\"packets\":%llu,\"drops\":%llu,\"sendErrors\":%llu,\"polls\":%llu,\"seconds\":%.4f,\"cpuSeconds\":%.4f}\n",
           (unsigned long long)packets, (unsigned long long)drops, (unsigned long long)errors, (unsigned long long)polls, now() - t0, cpu() - cpu0);
    return 0;
  }
  int encap_mode = strcmp(argv[1], "encap") == 0;
  int batch = argc > 4 ? atoi(argv[4]) : 64;
  if (batch < 1 || batch > MAXBATCH) batch = 64;
  struct pollfd p = { .fd = encap_mode ? tun : sock, .events = POLLIN };

  /* Warm up for WARMUP seconds (counted separately, like the TypeScript loop's JIT warm-up), then measure. */
  double warm = getenv("WARMUP") ? atof(getenv("WARMUP")) : 1.0;
  double cpu0 = cpu(), user0 = user_cpu(), t0 = now(), end = t0 + warm + seconds, t = t0;
  int warming = warm > 0;
  while (t < end) {
    t = now();
    if (warming && t >= t0 + warm) {
      warming = 0;
      packets = drops = errors = batches = polls = 0;
      cpu0 = cpu(); user0 = user_cpu(); t0 = t;
    }
    polls++;
    if (poll(&p, 1, 20) <= 0) continue;
    if (encap_mode) do_encap(tun, sock, batch);
    else do_decap(tun, sock, batch);
  }
  double wall = now() - t0, used = cpu() - cpu0, user = user_cpu() - user0;
  printf("{\"impl\":\"c\",\"mode\":\"%s\",\"packets\":%llu,\"drops\":%llu,\"sendErrors\":%llu,\"batches\":%llu,\"polls\":%llu,\"seconds\":%.4f,\"cpuSeconds\":%.4f,\"userSeconds\":%.4f}\n",
         encap_mode ? "encap" : "decap", (unsigned long long)packets, (unsigned long long)drops,
         (unsigned long long)errors, (unsigned long long)batches, (unsigned long long)polls, wall, used, user);
  close(tun);
  close(sock);
  return 0;
}
