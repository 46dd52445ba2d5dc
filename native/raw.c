/*
 * Raw IP-in-IP sockets, and the batch calls that move packets between a descriptor (TUN queue or
 * socket) and the slots of a JS buffer: read/write for TUN, recvmmsg/sendmmsg for sockets.
 */
#include "addon.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/udp.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* Messages per recvmmsg/sendmmsg call; longer batches loop. 64 * ~100 B of headers on the stack. */
#define MMSG_CHUNK 64
/* Longest classic BPF program accepted (the kernel's BPF_MAXINSNS is 4096). */
#define FILTER_MAX 4096

/* ---------- raw IP sockets ---------- */

/*
 * rawOpen({protocol = 4, rcvbuf, sndbuf, device}) -> fd
 *
 * socket(AF_INET, SOCK_RAW, protocol) with IP_HDRINCL, non-blocking. With protocol 4 (IPPROTO_IPIP)
 * one socket both sends complete IP-in-IP packets (JS writes the outer header; the kernel fills in
 * total length and header checksum, and ID/source when they are zero) and receives every
 * protocol-4 packet addressed to this namespace (outer header included). protocol 255
 * (IPPROTO_RAW) gives a send-only socket (it never receives), for comparison. The buffers are
 * forced (SO_RCVBUFFORCE/SO_SNDBUFFORCE, root) beyond net.core.[rw]mem_max. device binds the socket
 * to one interface (SO_BINDTODEVICE).
 */
static napi_value raw_open(napi_env env, napi_callback_info info) {
  napi_value argv[1], vdev;
  uint32_t proto, rcvbuf, sndbuf;
  char dev[IFNAMSIZ] = {0};
  if (get_args(env, info, 1, argv) ||
      opt_u32(env, argv[0], "protocol", 1, 255, IPPROTO_IPIP, &proto) ||
      opt_u32(env, argv[0], "rcvbuf", 0, INT32_MAX / 2, 0, &rcvbuf) ||
      opt_u32(env, argv[0], "sndbuf", 0, INT32_MAX / 2, 0, &sndbuf) ||
      opt_prop(env, argv[0], "device", &vdev))
    return NULL;
  if (vdev && get_ifname(env, vdev, dev)) return NULL;
  char obj[32];
  snprintf(obj, sizeof obj, "protocol %u", proto);
  int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, (int)proto);
  if (fd < 0) return throw_errno(env, "socket(SOCK_RAW)", obj, errno);
  int one = 1, v;
  const char *op = NULL;
  if (setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof one) < 0) op = "IP_HDRINCL";
  if (!op && rcvbuf && (v = (int)rcvbuf, setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0))
    op = "SO_RCVBUFFORCE";
  if (!op && sndbuf && (v = (int)sndbuf, setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0))
    op = "SO_SNDBUFFORCE";
  if (!op && dev[0] && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, strlen(dev)) < 0)
    op = "SO_BINDTODEVICE";
  if (op) {
    int e = errno;
    close(fd);
    return throw_errno(env, op, obj, e);
  }
  return ret_i32(env, fd);
}

/* socketBuffers(fd) -> {rcvbuf, sndbuf} as the kernel reports them (twice what was asked). */
static napi_value socket_buffers(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd, r = 0, s = 0;
  socklen_t l = sizeof r;
  if (get_args(env, info, 1, argv) || get_fd(env, argv[0], &fd)) return NULL;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &r, &l) < 0) return throw_errno_fd(env, "SO_RCVBUF", fd, errno);
  l = sizeof s;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &s, &l) < 0) return throw_errno_fd(env, "SO_SNDBUF", fd, errno);
  napi_value obj;
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "rcvbuf", ret_i32(env, r));
  napi_set_named_property(env, obj, "sndbuf", ret_i32(env, s));
  return obj;
}

/*
 * attachFilter(fd, program: Uint32Array): SO_ATTACH_FILTER with a classic BPF program given as
 * pairs [code | jt << 16 | jf << 24, k]. JS builds the program (see src/io/share.ts).
 */
static napi_value attach_filter(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  uint32_t *words;
  size_t n;
  if (get_args(env, info, 2, argv) || get_fd(env, argv[0], &fd) ||
      get_typed(env, argv[1], napi_uint32_array, "program", (void **)&words, &n))
    return NULL;
  if (n == 0 || n % 2 || n / 2 > FILTER_MAX) return throw_range(env, "program must hold 1..4096 instructions");
  struct sock_filter insns[FILTER_MAX];
  for (size_t i = 0; i < n / 2; i++) {
    insns[i].code = (uint16_t)(words[2 * i] & 0xffff);
    insns[i].jt = (uint8_t)(words[2 * i] >> 16);
    insns[i].jf = (uint8_t)(words[2 * i] >> 24);
    insns[i].k = words[2 * i + 1];
  }
  struct sock_fprog prog = { .len = (unsigned short)(n / 2), .filter = insns };
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
    return throw_errno_fd(env, "SO_ATTACH_FILTER", fd, errno);
  return ret_undefined(env);
}

/* detachFilter(fd): SO_DETACH_FILTER (ENOENT when none is attached is not an error). */
static napi_value detach_filter(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd, z = 0;
  if (get_args(env, info, 1, argv) || get_fd(env, argv[0], &fd)) return NULL;
  if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &z, sizeof z) < 0 && errno != ENOENT)
    return throw_errno_fd(env, "SO_DETACH_FILTER", fd, errno);
  return ret_undefined(env);
}

/*
 * drain(fd, max) -> n: discards up to max queued packets or datagrams (recv with MSG_TRUNC into a
 * small buffer) until EAGAIN. Used after attaching a filter: packets queued before the filter
 * are not filtered.
 */
static napi_value drain(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  uint32_t max, n = 0;
  if (get_args(env, info, 2, argv) || get_fd(env, argv[0], &fd) ||
      get_u32_range(env, argv[1], "max", 0, UINT32_MAX, &max))
    return NULL;
  uint8_t sink[64];
  while (n < max) {
    ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT | MSG_TRUNC);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (is_fatal(errno)) return throw_errno_fd(env, "recv", fd, errno);
      continue; /* a pending socket error (ICMP): consumed, go on */
    }
    n++;
  }
  return ret_u32(env, n);
}

/* ---------- batches ---------- */

/*
 * read()/write() without glibc's cancellation bracket: Node is multi-threaded, so glibc wraps every
 * read/write in pthread async-cancel enable/disable, once per packet. Nothing in Node cancels
 * threads, so the bracket is pure cost.
 */
static inline ssize_t raw_read(int fd, void *buf, size_t n) { return syscall(SYS_read, fd, buf, n); }
static inline ssize_t raw_write(int fd, const void *buf, size_t n) { return syscall(SYS_write, fd, buf, n); }

/*
 * readBatch(fd, buf, offs, lens, cap, max) -> n
 * read() until EAGAIN or max packets: packet i lands at buf[offs[i]], at most cap bytes, and
 * lens[i] = its length. For TUN devices one read() is one packet; a packet longer than cap is cut
 * to cap bytes without notice (lens[i] == cap), so make cap larger than the MTU (+ the virtio-net
 * header) and treat lens[i] == cap as truncated. Throws on errors other than
 * EAGAIN/EINTR (EBADFD: the TUN device was deleted) unless packets were already read: then it
 * returns them and the error comes on the next call.
 */
static napi_value read_batch(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  int fd;
  uint32_t cap, max, n = 0;
  slots_t s;
  if (get_args(env, info, 6, argv) || get_fd(env, argv[0], &fd) ||
      get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_u32_range(env, argv[4], "cap", 1, UINT32_MAX, &cap) ||
      get_u32_range(env, argv[5], "max", 0, UINT32_MAX, &max) || check_read_slots(env, &s, max, cap))
    return NULL;
  while (n < max) {
    ssize_t r = raw_read(fd, s.buf + s.offs[n], cap);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || n > 0) break;
      return throw_errno_fd(env, "read", fd, errno);
    }
    s.lens[n++] = (uint32_t)r;
  }
  return ret_u32(env, n);
}

/*
 * writeBatch(fd, buf, offs, lens, from, to, errs?) -> next
 * write() packets from..to-1 (packet i is buf[offs[i] .. offs[i]+lens[i]]). A packet the kernel
 * refuses is skipped and counted in errs. Stops early only on EAGAIN and returns the index of the
 * first packet not written (== to when all were handled). Throws on a dead descriptor (EBADF,
 * EBADFD: the TUN device was deleted).
 */
static napi_value write_batch(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  int fd;
  uint32_t from, to, *errs;
  slots_t s;
  if (get_args(env, info, 7, argv) || get_fd(env, argv[0], &fd) ||
      get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_u32_range(env, argv[4], "from", 0, UINT32_MAX, &from) ||
      get_u32_range(env, argv[5], "to", from, UINT32_MAX, &to) || get_errs(env, argv[6], &errs) ||
      check_write_slots(env, &s, from, to))
    return NULL;
  uint32_t i = from;
  while (i < to) {
    ssize_t r = raw_write(fd, s.buf + s.offs[i], s.lens[i]);
    if (r < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) break;
      if (is_fatal(e)) return throw_errno_fd(env, "write", fd, e);
      count_error(errs, e);
    }
    i++;
  }
  return ret_u32(env, i);
}

/*
 * The recvmmsg loop both receive calls share: datagrams into s's slots until EAGAIN or max; srcs[i] the
 * sender, and, when segs is given (a UDP_GRO socket), segs[i] the size of the datagrams glued into
 * message i (0: one datagram).
 */
static napi_value recv_core(napi_env env, int fd, const slots_t *s, uint32_t cap, uint32_t max, uint32_t *srcs, uint32_t *segs,
                            uint32_t *errs) {
  uint32_t n = 0;
  struct mmsghdr msgs[MMSG_CHUNK];
  struct iovec iov[MMSG_CHUNK];
  struct sockaddr_in sa[MMSG_CHUNK];
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl[MMSG_CHUNK];
  int soft_errors = 0;
  while (n < max) {
    unsigned k = max - n < MMSG_CHUNK ? max - n : MMSG_CHUNK;
    for (unsigned j = 0; j < k; j++) {
      iov[j].iov_base = s->buf + s->offs[n + j];
      iov[j].iov_len = cap;
      memset(&msgs[j].msg_hdr, 0, sizeof msgs[j].msg_hdr);
      msgs[j].msg_hdr.msg_name = &sa[j];
      msgs[j].msg_hdr.msg_namelen = sizeof sa[j];
      msgs[j].msg_hdr.msg_iov = &iov[j];
      msgs[j].msg_hdr.msg_iovlen = 1;
      if (segs) {
        msgs[j].msg_hdr.msg_control = ctl[j].buf;
        msgs[j].msg_hdr.msg_controllen = sizeof ctl[j].buf;
      }
    }
    int r = recvmmsg(fd, msgs, k, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (r < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) break;
      if (is_fatal(e) || e == EINVAL) {
        if (n > 0) break;
        return throw_errno_fd(env, "recvmmsg", fd, e);
      }
      /* A socket error (from an ICMP report) was returned and cleared: count it, go on. */
      count_error(errs, e);
      if (++soft_errors > 64) break; /* bounded */
      continue;
    }
    for (int j = 0; j < r; j++) {
      s->lens[n + j] = msgs[j].msg_len;
      srcs[n + j] = msgs[j].msg_hdr.msg_namelen >= sizeof(struct sockaddr_in) && sa[j].sin_family == AF_INET
                        ? ntohl(sa[j].sin_addr.s_addr) : 0;
      if (!segs) continue;
      uint32_t g = 0;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[j].msg_hdr); c; c = CMSG_NXTHDR(&msgs[j].msg_hdr, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
          int v;
          memcpy(&v, CMSG_DATA(c), sizeof v);
          g = v > 0 ? (uint32_t)v : 0;
        }
      }
      segs[n + j] = g;
    }
    n += (uint32_t)r;
    if ((unsigned)r < k) break;
  }
  return ret_u32(env, n);
}

/*
 * recvBatch(fd, buf, offs, lens, cap, max, srcs, errs?) -> n
 * recvmmsg(MSG_DONTWAIT | MSG_TRUNC) until EAGAIN or max datagrams: datagram i at buf[offs[i]],
 * lens[i] its full length (greater than cap means it was truncated), srcs[i] the sender's IPv4
 * address as a host-order uint32. Pending socket errors (ICMP reports) are counted in errs and
 * skipped.
 */
static napi_value recv_batch(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  int fd;
  uint32_t cap, max, *srcs, *errs;
  size_t nsrcs;
  slots_t s;
  if (get_args(env, info, 8, argv) || get_fd(env, argv[0], &fd) ||
      get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_u32_range(env, argv[4], "cap", 1, UINT32_MAX, &cap) ||
      get_u32_range(env, argv[5], "max", 0, UINT32_MAX, &max) ||
      get_typed(env, argv[6], napi_uint32_array, "addresses", (void **)&srcs, &nsrcs) ||
      get_errs(env, argv[7], &errs) || check_read_slots(env, &s, max, cap))
    return NULL;
  if (max > nsrcs) return throw_range(env, "max exceeds the addresses array");
  return recv_core(env, fd, &s, cap, max, srcs, NULL, errs);
}

/*
 * sendmmsg(MSG_DONTWAIT) of msgs[0..k): a message the kernel refuses (EMSGSIZE, ENETUNREACH, EPERM from
 * a firewall; with gone_ok also ENXIO or ENODEV: a frame's interface went away) is skipped and counted in
 * errs. Returns how many were handled (< k only when the socket buffer is full: EAGAIN), or -1 with a JS
 * exception pending for an error of the socket itself.
 */
static int sendmmsg_all(napi_env env, int fd, struct mmsghdr *msgs, unsigned k, uint32_t *errs, int gone_ok) {
  unsigned done = 0;
  while (done < k) {
    int r = sendmmsg(fd, msgs + done, k - done, MSG_DONTWAIT);
    if (r < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) break;
      if (is_fatal(e) && !(gone_ok && (e == ENXIO || e == ENODEV))) {
        throw_errno_fd(env, "sendmmsg", fd, e);
        return -1;
      }
      count_error(errs, e); /* the first message of this call was refused: skip it */
      done++;
      continue;
    }
    done += (unsigned)r;
  }
  return (int)done;
}

/*
 * The sendmmsg loop the send paths share (sendBatch here, sendFrameBatch in packet.c): packets
 * from..to-1 of s, packet i addressed to the IPv4 address dsts[i] (host-order uint32) when dsts is
 * given; else whole frames (they carry their own Ethernet header) out of interface ifindex[i].
 * A packet the kernel refuses (EMSGSIZE, ENETUNREACH, EPERM from a firewall; on the frame path also
 * ENXIO or ENODEV: the interface is gone) is skipped and counted in errs. Stops early only when the
 * socket buffer is full (EAGAIN) and returns the index of the first packet not sent (== to when all
 * were handled).
 */
napi_value send_chunks(napi_env env, int fd, const slots_t *s, uint32_t from, uint32_t to, uint32_t *errs, uint16_t port,
                       const uint32_t *dsts, const int32_t *ifindex) {
  struct mmsghdr msgs[MMSG_CHUNK];
  struct iovec iov[MMSG_CHUNK];
  union {
    struct sockaddr_in in;
    struct sockaddr_ll ll;
  } sa[MMSG_CHUNK];
  uint32_t i = from;
  while (i < to) {
    /* Fill one chunk [i, i+k); partial sends resume inside it. */
    unsigned k = to - i < MMSG_CHUNK ? to - i : MMSG_CHUNK;
    for (unsigned j = 0; j < k; j++) {
      memset(&sa[j], 0, sizeof sa[j]);
      socklen_t namelen;
      if (!dsts) {
        /* A whole frame (SOCK_RAW link socket): only the interface. */
        sa[j].ll.sll_family = AF_PACKET;
        sa[j].ll.sll_protocol = htons(ETH_P_IP);
        sa[j].ll.sll_ifindex = ifindex[i + j];
        namelen = sizeof sa[j].ll;
      } else {
        sa[j].in.sin_family = AF_INET;
        sa[j].in.sin_addr.s_addr = htonl(dsts[i + j]);
        sa[j].in.sin_port = htons(port); /* 0 on a raw socket */
        namelen = sizeof sa[j].in;
      }
      iov[j].iov_base = s->buf + s->offs[i + j];
      iov[j].iov_len = s->lens[i + j];
      memset(&msgs[j].msg_hdr, 0, sizeof msgs[j].msg_hdr);
      msgs[j].msg_hdr.msg_name = &sa[j];
      msgs[j].msg_hdr.msg_namelen = namelen;
      msgs[j].msg_hdr.msg_iov = &iov[j];
      msgs[j].msg_hdr.msg_iovlen = 1;
    }
    int done = sendmmsg_all(env, fd, msgs, k, errs, !dsts);
    if (done < 0) return NULL;
    if ((unsigned)done < k) return ret_u32(env, i + (unsigned)done);
    i += k;
  }
  return ret_u32(env, i);
}

/*
 * sendBatch(fd, buf, offs, lens, dsts, from, to, errs?) -> next
 * sendmmsg(MSG_DONTWAIT) on a raw IP socket of packets from..to-1, packet i to the IPv4 address
 * dsts[i] (host-order uint32); see send_chunks.
 */
static napi_value send_batch(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  int fd;
  uint32_t from, to, *dsts, *errs;
  size_t ndsts;
  slots_t s;
  if (get_args(env, info, 8, argv) || get_fd(env, argv[0], &fd) ||
      get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_typed(env, argv[4], napi_uint32_array, "addresses", (void **)&dsts, &ndsts) ||
      get_u32_range(env, argv[5], "from", 0, UINT32_MAX, &from) ||
      get_u32_range(env, argv[6], "to", from, UINT32_MAX, &to) || get_errs(env, argv[7], &errs) ||
      check_write_slots(env, &s, from, to))
    return NULL;
  if (to > ndsts) return throw_range(env, "end exceeds the addresses array");
  return send_chunks(env, fd, &s, from, to, errs, 0, dsts, NULL);
}

/*
 * udpOpen({port, rcvbuf, sndbuf, exclusive}) -> fd
 *
 * A non-blocking UDP socket bound to 0.0.0.0:port with SO_REUSEPORT (each worker binds its own; the
 * kernel spreads arriving datagrams over them by flow hash) and IP_PMTUDISC_DONT (outer DF clear, as
 * the kernel's VXLAN sends). A port another socket holds without SO_REUSEPORT (a kernel vxlan device)
 * fails with EADDRINUSE. The kernel fills in the UDP checksum. With exclusive, no SO_REUSEPORT: then
 * any socket on the port fails it with EADDRINUSE, another process's SO_REUSEPORT group too (the check
 * before `up`).
 */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t port, rcvbuf, sndbuf;
  int exclusive;
  if (get_args(env, info, 1, argv) || opt_u32(env, argv[0], "port", 1, 65535, 8472, &port) ||
      opt_u32(env, argv[0], "rcvbuf", 0, INT32_MAX / 2, 0, &rcvbuf) ||
      opt_u32(env, argv[0], "sndbuf", 0, INT32_MAX / 2, 0, &sndbuf) || opt_bool(env, argv[0], "exclusive", &exclusive))
    return NULL;
  char obj[32];
  snprintf(obj, sizeof obj, "UDP port %u", port);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(SOCK_DGRAM)", obj, errno);
  int one = 1, dont = IP_PMTUDISC_DONT, v;
  const char *op = NULL;
  if (!exclusive && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) op = "SO_REUSEPORT";
  if (!op && setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &dont, sizeof dont) < 0) op = "IP_MTU_DISCOVER";
  if (!op && rcvbuf && (v = (int)rcvbuf, setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0))
    op = "SO_RCVBUFFORCE";
  if (!op && sndbuf && (v = (int)sndbuf, setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0))
    op = "SO_SNDBUFFORCE";
  if (!op) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) op = "bind";
  }
  if (op) {
    int e = errno;
    close(fd);
    return throw_errno(env, op, obj, e);
  }
  return ret_i32(env, fd);
}

/*
 * sendUdpBatch(fd, buf, offs, lens, dsts, port, from, to, errs?) -> next
 * sendmmsg(MSG_DONTWAIT) on a UDP socket of datagrams from..to-1, datagram i to dsts[i]:port; see
 * send_chunks.
 */
static napi_value send_udp_batch(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  int fd;
  uint32_t from, to, port, *dsts, *errs;
  size_t ndsts;
  slots_t s;
  if (get_args(env, info, 9, argv) || get_fd(env, argv[0], &fd) ||
      get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_typed(env, argv[4], napi_uint32_array, "addresses", (void **)&dsts, &ndsts) ||
      get_u32_range(env, argv[5], "port", 1, 65535, &port) ||
      get_u32_range(env, argv[6], "from", 0, UINT32_MAX, &from) ||
      get_u32_range(env, argv[7], "to", from, UINT32_MAX, &to) || get_errs(env, argv[8], &errs) ||
      check_write_slots(env, &s, from, to))
    return NULL;
  if (to > ndsts) return throw_range(env, "end exceeds the addresses array");
  return send_chunks(env, fd, &s, from, to, errs, (uint16_t)port, dsts, NULL);
}

/*
 * sendUdpGsoBatch(fd, buf, offs, lens, dsts, segs, port, from, to, errs?) -> next
 * sendmmsg(MSG_DONTWAIT) on a UDP socket of messages from..to-1, message i to dsts[i]:port; a message with
 * segs[i] > 0 carries a UDP_SEGMENT control message: the kernel sends it as datagrams of segs[i] bytes
 * (the last may be shorter), each with its own UDP header and checksum (UDP GSO). Refusals and EAGAIN as
 * in send_chunks.
 */
static napi_value send_udp_gso_batch(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  int fd;
  uint32_t from, to, port, *dsts, *segs, *errs;
  size_t ndsts, nsegs;
  slots_t s;
  if (get_args(env, info, 10, argv) || get_fd(env, argv[0], &fd) ||
      get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_typed(env, argv[4], napi_uint32_array, "addresses", (void **)&dsts, &ndsts) ||
      get_typed(env, argv[5], napi_uint32_array, "segs", (void **)&segs, &nsegs) ||
      get_u32_range(env, argv[6], "port", 1, 65535, &port) ||
      get_u32_range(env, argv[7], "from", 0, UINT32_MAX, &from) ||
      get_u32_range(env, argv[8], "to", from, UINT32_MAX, &to) || get_errs(env, argv[9], &errs) ||
      check_write_slots(env, &s, from, to))
    return NULL;
  if (to > ndsts || to > nsegs) return throw_range(env, "end exceeds the addresses or segs array");
  struct mmsghdr msgs[MMSG_CHUNK];
  struct iovec iov[MMSG_CHUNK];
  struct sockaddr_in sa[MMSG_CHUNK];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctl[MMSG_CHUNK];
  uint32_t i = from;
  while (i < to) {
    unsigned k = to - i < MMSG_CHUNK ? to - i : MMSG_CHUNK;
    for (unsigned j = 0; j < k; j++) {
      memset(&sa[j], 0, sizeof sa[j]);
      sa[j].sin_family = AF_INET;
      sa[j].sin_addr.s_addr = htonl(dsts[i + j]);
      sa[j].sin_port = htons((uint16_t)port);
      iov[j].iov_base = s.buf + s.offs[i + j];
      iov[j].iov_len = s.lens[i + j];
      memset(&msgs[j].msg_hdr, 0, sizeof msgs[j].msg_hdr);
      msgs[j].msg_hdr.msg_name = &sa[j];
      msgs[j].msg_hdr.msg_namelen = sizeof sa[j];
      msgs[j].msg_hdr.msg_iov = &iov[j];
      msgs[j].msg_hdr.msg_iovlen = 1;
      if (segs[i + j] > 0 && segs[i + j] < s.lens[i + j]) {
        memset(ctl[j].buf, 0, sizeof ctl[j].buf);
        msgs[j].msg_hdr.msg_control = ctl[j].buf;
        msgs[j].msg_hdr.msg_controllen = sizeof ctl[j].buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[j].msg_hdr);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t g = (uint16_t)segs[i + j];
        memcpy(CMSG_DATA(c), &g, sizeof g);
      }
    }
    int done = sendmmsg_all(env, fd, msgs, k, errs, 0);
    if (done < 0) return NULL;
    if ((unsigned)done < k) return ret_u32(env, i + (unsigned)done);
    i += k;
  }
  return ret_u32(env, i);
}

/*
 * udpSetGro(fd, on): UDP_GRO. With it the kernel may hand over several datagrams of one flow glued into
 * one (each but the last of the size recvGroBatch reports), instead of one at a time.
 */
static napi_value udp_set_gro(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd, on;
  if (get_args(env, info, 2, argv) || get_fd(env, argv[0], &fd) || get_bool(env, argv[1], &on)) return NULL;
  int v = on ? 1 : 0;
  if (setsockopt(fd, SOL_UDP, UDP_GRO, &v, sizeof v) < 0) return throw_errno_fd(env, "UDP_GRO", fd, errno);
  return ret_undefined(env);
}

/*
 * recvGroBatch(fd, buf, offs, lens, cap, max, srcs, segs, errs?) -> n
 * recvBatch on a socket with UDP_GRO: also segs[i] = the size of the datagrams glued into message i (the
 * UDP_GRO control message), 0 when it is one datagram.
 */
static napi_value recv_gro_batch(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  int fd;
  uint32_t cap, max, *srcs, *segs, *errs;
  size_t nsrcs, nsegs;
  slots_t s;
  if (get_args(env, info, 9, argv) || get_fd(env, argv[0], &fd) ||
      get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_u32_range(env, argv[4], "cap", 1, UINT32_MAX, &cap) ||
      get_u32_range(env, argv[5], "max", 0, UINT32_MAX, &max) ||
      get_typed(env, argv[6], napi_uint32_array, "addresses", (void **)&srcs, &nsrcs) ||
      get_typed(env, argv[7], napi_uint32_array, "segs", (void **)&segs, &nsegs) ||
      get_errs(env, argv[8], &errs) || check_read_slots(env, &s, max, cap))
    return NULL;
  if (max > nsrcs || max > nsegs) return throw_range(env, "max exceeds the addresses or segs array");
  return recv_core(env, fd, &s, cap, max, srcs, segs, errs);
}

napi_status raw_register(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
    FN("rawOpen", raw_open),
    FN("socketBuffers", socket_buffers),
    FN("attachFilter", attach_filter),
    FN("detachFilter", detach_filter),
    FN("drain", drain),
    FN("readBatch", read_batch),
    FN("writeBatch", write_batch),
    FN("recvBatch", recv_batch),
    FN("sendBatch", send_batch),
    FN("udpOpen", udp_open),
    FN("sendUdpBatch", send_udp_batch),
    FN("sendUdpGsoBatch", send_udp_gso_batch),
    FN("udpSetGro", udp_set_gro),
    FN("recvGroBatch", recv_gro_batch),
  };
  return napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
}
