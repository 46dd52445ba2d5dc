/*
 * Receive-side probe: how much does it cost to take IP-in-IP packets off the underlay through a
 * protocol-4 raw socket (recvmmsg, as userfan does) against an AF_XDP socket fed by an XDP program?
 * Counts packets for SECONDS and prints {"mode":..,"received":N,"seconds":S,"cpuSeconds":C}.
 *
 *   xsk-rx raw SECONDS
 *   xsk-rx xdp IFNAME DSTADDR SECONDS [skb]
 *
 * Build: gcc -O2 -o bench/out/xsk-rx bench/xsk-rx.c
 */
#define _GNU_SOURCE
#define PROG "xsk-rx"
#include "bench.h"
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

static long bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof *a); }

#define I(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

#define FRAMES 4096
#define FRAME 2048
#define RING 2048

struct ring { uint32_t *prod, *cons, *flags; void *desc; uint32_t mask; };

static void ring_map(int fd, struct xdp_ring_offset *o, size_t elem, off_t pgoff, struct ring *r) {
  size_t len = o->desc + RING * elem;
  uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
  if (m == MAP_FAILED) die("mmap ring");
  r->prod = (uint32_t *)(m + o->producer);
  r->cons = (uint32_t *)(m + o->consumer);
  r->flags = (uint32_t *)(m + o->flags);
  r->desc = m + o->desc;
  r->mask = RING - 1;
}

int main(int argc, char **argv) {
  if (argc < 3) goto usage;
  int xdp = strcmp(argv[1], "xdp") == 0;
  double seconds = atof(argv[xdp ? 4 : 2]);
  uint64_t received = 0;
  double t0, c0;
  if (!xdp) {
    int fd = socket(AF_INET, SOCK_RAW, 4);
    if (fd < 0) die("socket");
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
    static uint8_t bufs[64][2048];
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    for (int i = 0; i < 64; i++) {
      iov[i] = (struct iovec){ bufs[i], 2048 };
      msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
    }
    t0 = now(); c0 = cpu();
    while (now() - t0 < seconds) {
      struct pollfd p = { fd, POLLIN, 0 };
      if (poll(&p, 1, 100) <= 0) continue;
      int n = recvmmsg(fd, msgs, 64, MSG_DONTWAIT, NULL);
      if (n > 0) received += n;
    }
  } else {
    if (argc < 5) goto usage;
    int ifindex = (int)if_nametoindex(argv[2]);
    if (!ifindex) die("if_nametoindex");
    struct in_addr dst;
    if (inet_pton(AF_INET, argv[3], &dst) != 1) goto usage;
    int skb = argc > 5 && strcmp(argv[5], "skb") == 0;

    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_XSKMAP; a.key_size = 4; a.value_size = 4; a.max_entries = 64;
    int map = (int)bpf(BPF_MAP_CREATE, &a);
    if (map < 0) die("BPF_MAP_CREATE");

    int32_t dst32 = (int32_t)dst.s_addr; /* bytes as on the wire, loaded little-endian */
    struct bpf_insn prog[] = {
      I(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0),           /* r2 = ctx->data */
      I(BPF_LDX | BPF_MEM | BPF_W, 3, 1, 4, 0),           /* r3 = ctx->data_end */
      I(BPF_ALU64 | BPF_MOV | BPF_X, 4, 2, 0, 0),         /* r4 = r2 */
      I(BPF_ALU64 | BPF_ADD | BPF_K, 4, 0, 0, 34),        /* r4 += 14 + 20 */
      I(BPF_JMP | BPF_JGT | BPF_X, 4, 3, 17, 0),          /* 4: if r4 > r3 goto pass (22) */
      I(BPF_LDX | BPF_MEM | BPF_H, 5, 2, 12, 0),          /* ethertype */
      I(BPF_JMP32 | BPF_JNE | BPF_K, 5, 0, 15, 0x0008),   /* 6: != IPv4 -> pass */
      I(BPF_LDX | BPF_MEM | BPF_B, 5, 2, 14, 0),          /* version, IHL */
      I(BPF_JMP32 | BPF_JNE | BPF_K, 5, 0, 13, 0x45),     /* 8 */
      I(BPF_LDX | BPF_MEM | BPF_H, 5, 2, 20, 0),          /* flags, fragment offset */
      I(BPF_ALU64 | BPF_AND | BPF_K, 5, 0, 0, 0xff3f),    /* MF and offset */
      I(BPF_JMP32 | BPF_JNE | BPF_K, 5, 0, 10, 0),        /* 11: a fragment -> pass */
      I(BPF_LDX | BPF_MEM | BPF_B, 5, 2, 23, 0),          /* protocol */
      I(BPF_JMP32 | BPF_JNE | BPF_K, 5, 0, 8, 4),         /* 13 */
      I(BPF_LDX | BPF_MEM | BPF_W, 5, 2, 30, 0),          /* destination */
      I(BPF_JMP32 | BPF_JNE | BPF_K, 5, 0, 6, dst32),     /* 15 */
      I(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 16, 0),          /* r2 = ctx->rx_queue_index */
      I(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map),
      I(0, 0, 0, 0, 0),
      I(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),  /* no socket on that queue -> pass */
      I(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map),
      I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
      I(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, XDP_PASS),  /* 22: pass */
      I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    static char log[65536];
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_XDP;
    a.insns = (uint64_t)(uintptr_t)prog;
    a.insn_cnt = sizeof prog / sizeof prog[0];
    a.license = (uint64_t)(uintptr_t)"Dual MIT/GPL";
    a.expected_attach_type = BPF_XDP;
    a.log_buf = (uint64_t)(uintptr_t)log; a.log_size = sizeof log; a.log_level = 1;
    int pfd = (int)bpf(BPF_PROG_LOAD, &a);
    if (pfd < 0) { fprintf(stderr, "%s\n", log); die("BPF_PROG_LOAD"); }

    int fd = socket(AF_XDP, SOCK_RAW, 0);
    if (fd < 0) die("socket(AF_XDP)");
    void *umem = mmap(NULL, (size_t)FRAMES * FRAME, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (umem == MAP_FAILED) die("mmap umem");
    struct xdp_umem_reg reg = { .addr = (uint64_t)(uintptr_t)umem, .len = (uint64_t)FRAMES * FRAME, .chunk_size = FRAME, .headroom = 0 };
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg) < 0) die("XDP_UMEM_REG");
    int rs = RING;
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &rs, sizeof rs) < 0) die("FILL_RING");
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &rs, sizeof rs) < 0) die("COMPLETION_RING");
    if (setsockopt(fd, SOL_XDP, XDP_RX_RING, &rs, sizeof rs) < 0) die("RX_RING");
    struct xdp_mmap_offsets off;
    socklen_t ol = sizeof off;
    if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol) < 0) die("XDP_MMAP_OFFSETS");
    struct ring fill, rx;
    ring_map(fd, &off.fr, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING, &fill);
    ring_map(fd, &off.rx, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING, &rx);
    struct sockaddr_xdp sx = { .sxdp_family = AF_XDP, .sxdp_ifindex = (uint32_t)ifindex, .sxdp_queue_id = 0, .sxdp_flags = XDP_COPY };
    if (bind(fd, (struct sockaddr *)&sx, sizeof sx) < 0) die("bind(AF_XDP)");
    uint32_t key = 0;
    memset(&a, 0, sizeof a);
    a.map_fd = map; a.key = (uint64_t)(uintptr_t)&key; a.value = (uint64_t)(uintptr_t)&fd;
    if (bpf(BPF_MAP_UPDATE_ELEM, &a) < 0) die("BPF_MAP_UPDATE_ELEM");
    uint64_t *fdesc = fill.desc;
    for (uint32_t i = 0; i < RING; i++) fdesc[i] = (uint64_t)i * FRAME;
    __atomic_store_n(fill.prod, RING, __ATOMIC_RELEASE);

    memset(&a, 0, sizeof a);
    a.link_create.prog_fd = pfd; a.link_create.target_ifindex = ifindex;
    a.link_create.attach_type = BPF_XDP; a.link_create.flags = skb ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    int link = (int)bpf(BPF_LINK_CREATE, &a);
    if (link < 0) die("BPF_LINK_CREATE");

    struct xdp_desc *rd = rx.desc;
    uint64_t sum = 0;
    t0 = now(); c0 = cpu();
    while (now() - t0 < seconds) {
      uint32_t prod = __atomic_load_n(rx.prod, __ATOMIC_ACQUIRE), cons = *rx.cons;
      if (prod == cons) {
        struct pollfd p = { fd, POLLIN, 0 };
        poll(&p, 1, 100);
        continue;
      }
      uint32_t fp = *fill.prod;
      for (; cons != prod; cons++) {
        struct xdp_desc *d = &rd[cons & rx.mask];
        sum += ((uint8_t *)umem)[d->addr + 23];       /* touch the packet, as a decapsulator would */
        fdesc[fp++ & fill.mask] = d->addr & ~(uint64_t)(FRAME - 1);
        received++;
      }
      __atomic_store_n(rx.cons, cons, __ATOMIC_RELEASE);
      __atomic_store_n(fill.prod, fp, __ATOMIC_RELEASE);
    }
    if (sum == 1) fprintf(stderr, " ");
    close(link);
  }
  double c = cpu() - c0, t = now() - t0;
  printf("{\"mode\":\"%s\",\"received\":%llu,\"seconds\":%.3f,\"cpuSeconds\":%.3f}\n", argv[1],
         (unsigned long long)received, t, c);
  return 0;
usage:
  fprintf(stderr, "usage: xsk-rx raw SECONDS | xsk-rx xdp IFNAME DSTADDR SECONDS [skb]\n");
  return 2;
}
