/*
 * Link-layer (AF_PACKET) send sockets: whole frames straight out of an interface (TX GSO,
 * src/io/tx-gso.ts), and the socket cookie its TC program uses to recognise them.
 */
#include "addon.h"

#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_packet.h>

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

/*
 * linkOpen({sndbuf, vnet}) -> fd
 *
 * socket(AF_PACKET, SOCK_DGRAM, 0), non-blocking; with vnet, SOCK_RAW with PACKET_VNET_HDR, the
 * socket sendFrameBatch sends on: every frame JS gives it (virtio-net header, Ethernet header,
 * packet) leaves one interface as it is, skipping the IP output path (route lookup, netfilter
 * OUTPUT and POSTROUTING, neighbour lookup) that a raw IP socket takes per packet. Protocol 0: it
 * receives nothing. It still goes through the interface's qdisc (and its tcx egress programs), so
 * tcpdump on the interface sees what it sends. sndbuf is forced (SO_SNDBUFFORCE, root).
 */
static napi_value link_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t sndbuf;
  int vnet = 0;
  if (get_args(env, info, 1, argv) || opt_u32(env, argv[0], "sndbuf", 0, INT32_MAX / 2, 0, &sndbuf) ||
      opt_bool(env, argv[0], "vnet", &vnet))
    return NULL;
  int fd = socket(AF_PACKET, (vnet ? SOCK_RAW : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_PACKET)", "link send socket", errno);
  int one = 1;
  if (vnet && setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "PACKET_VNET_HDR", "link send socket", e);
  }
  int v = (int)sndbuf;
  if (sndbuf && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "SO_SNDBUFFORCE", "link send socket", e);
  }
  return ret_i32(env, fd);
}

/*
 * sendFrameBatch(fd, buf, offs, lens, ifindex, from, to, errs?) -> next
 * sendmmsg(MSG_DONTWAIT) on a linkOpen({vnet: true}) socket of whole frames from..to-1 (each a
 * virtio-net header, then the Ethernet frame), frame i out of interface ifindex[i]; see send_chunks.
 */
static napi_value send_frame_batch(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  int fd;
  uint32_t from, to, *errs;
  int32_t *ifx;
  size_t nifx;
  slots_t s;
  if (get_args(env, info, 8, argv) || get_fd(env, argv[0], &fd) ||
      get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_typed(env, argv[4], napi_int32_array, "ifindex", (void **)&ifx, &nifx) ||
      get_u32_range(env, argv[5], "from", 0, UINT32_MAX, &from) ||
      get_u32_range(env, argv[6], "to", from, UINT32_MAX, &to) || get_errs(env, argv[7], &errs) ||
      check_write_slots(env, &s, from, to))
    return NULL;
  if (to > nifx) return throw_range(env, "end exceeds the ifindex array");
  return send_chunks(env, fd, &s, from, to, errs, 0, NULL, ifx);
}

/* socketCookie(fd) -> the socket's cookie (SO_COOKIE), what bpf_get_socket_cookie() returns for its packets. */
static napi_value socket_cookie(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (get_args(env, info, 1, argv) || get_fd(env, argv[0], &fd)) return NULL;
  uint64_t c = 0;
  socklen_t l = sizeof c;
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &l) < 0) return throw_errno_fd(env, "SO_COOKIE", fd, errno);
  if (c > (1ULL << 53)) return throw_range(env, "socket cookie above 2^53");
  napi_value v;
  napi_create_double(env, (double)c, &v);
  return v;
}

napi_status packet_register(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
    FN("linkOpen", link_open),
    FN("sendFrameBatch", send_frame_batch),
    FN("socketCookie", socket_cookie),
  };
  return napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
}
