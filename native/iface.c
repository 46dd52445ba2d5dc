/* Interfaces of the calling thread's network namespace: index, up/down, MTU, TX queue length. */
#include "addon.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* ifIndex(name) -> index, 0 when no such interface exists (e.g. a TUN device that was deleted). */
static napi_value if_index(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char name[IFNAMSIZ];
  if (get_args(env, info, 1, argv) || get_ifname(env, argv[0], name)) return NULL;
  unsigned idx = if_nametoindex(name);
  if (idx == 0 && errno != ENODEV && errno != ENXIO) return throw_errno(env, "if_nametoindex", name, errno);
  return ret_u32(env, idx);
}

/* One SIOC* ioctl on ifr for interface name, through a throwaway socket of this thread's namespace. */
static int ifreq_op(napi_env env, const char *opname, const char *name, unsigned long req,
                    struct ifreq *ifr) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) { throw_errno(env, "socket for", name, errno); return -1; }
  memset(ifr->ifr_name, 0, IFNAMSIZ);
  memcpy(ifr->ifr_name, name, strlen(name));
  if (ioctl(s, req, ifr) < 0) {
    int e = errno;
    close(s);
    throw_errno(env, opname, name, e);
    return -1;
  }
  close(s);
  return 0;
}

/* ifSetUp(name, up): SIOCGIFFLAGS / SIOCSIFFLAGS with IFF_UP. */
static napi_value if_set_up(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[IFNAMSIZ];
  int up;
  if (get_args(env, info, 2, argv) || get_ifname(env, argv[0], name) || get_bool(env, argv[1], &up))
    return NULL;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (ifreq_op(env, "SIOCGIFFLAGS", name, SIOCGIFFLAGS, &ifr)) return NULL;
  if (up) ifr.ifr_flags |= IFF_UP; else ifr.ifr_flags &= ~IFF_UP;
  if (ifreq_op(env, "SIOCSIFFLAGS", name, SIOCSIFFLAGS, &ifr)) return NULL;
  return ret_undefined(env);
}

/* ifSetMtu(name, mtu): SIOCSIFMTU. */
static napi_value if_set_mtu(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[IFNAMSIZ];
  uint32_t mtu;
  if (get_args(env, info, 2, argv) || get_ifname(env, argv[0], name) ||
      get_u32_range(env, argv[1], "mtu", 68, 65535, &mtu))
    return NULL;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_mtu = (int)mtu;
  if (ifreq_op(env, "SIOCSIFMTU", name, SIOCSIFMTU, &ifr)) return NULL;
  return ret_undefined(env);
}

/* ifSetTxQueueLen(name, len): SIOCSIFTXQLEN (the TUN's queue towards the reader). */
static napi_value if_set_txqlen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[IFNAMSIZ];
  uint32_t len;
  if (get_args(env, info, 2, argv) || get_ifname(env, argv[0], name) ||
      get_u32_range(env, argv[1], "txqueuelen", 1, 1u << 20, &len))
    return NULL;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_qlen = (int)len;
  if (ifreq_op(env, "SIOCSIFTXQLEN", name, SIOCSIFTXQLEN, &ifr)) return NULL;
  return ret_undefined(env);
}

napi_status iface_register(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
    FN("ifIndex", if_index),
    FN("ifSetUp", if_set_up),
    FN("ifSetMtu", if_set_mtu),
    FN("ifSetTxQueueLen", if_set_txqlen),
  };
  return napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
}
