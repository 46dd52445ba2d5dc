/* TUN devices: open a queue, make it persistent, set its offloads. */
#include "addon.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/if_tun.h>

/*
 * tunOpen(name, {multiQueue, vnetHdr, persist, exclusive, tap}) -> {fd, name}
 * Opens /dev/net/tun non-blocking and binds it with TUNSETIFF (IFF_TUN, or IFF_TAP: Ethernet frames, | IFF_NO_PI [| IFF_MULTI_QUEUE]
 * [| IFF_VNET_HDR] [| IFF_TUN_EXCL]). The first open of a name creates the device; with multiQueue,
 * each further open of the same name attaches one more queue. name may contain %d.
 */
static napi_value tun_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[IFNAMSIZ];
  int mq, vnet, persist, excl, tap;
  if (get_args(env, info, 2, argv) || get_ifname(env, argv[0], name)) return NULL;
  if (opt_bool(env, argv[1], "multiQueue", &mq) || opt_bool(env, argv[1], "vnetHdr", &vnet) ||
      opt_bool(env, argv[1], "persist", &persist) || opt_bool(env, argv[1], "exclusive", &excl) ||
      opt_bool(env, argv[1], "tap", &tap))
    return NULL;

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open /dev/net/tun for", name, errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name));
  ifr.ifr_flags = (tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI | (mq ? IFF_MULTI_QUEUE : 0) | (vnet ? IFF_VNET_HDR : 0) |
                  (excl ? IFF_TUN_EXCL : 0);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "TUNSETIFF", name, e);
  }
  char actual[IFNAMSIZ];
  memcpy(actual, ifr.ifr_name, IFNAMSIZ);
  actual[IFNAMSIZ - 1] = 0;
  if (persist && ioctl(fd, TUNSETPERSIST, 1) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "TUNSETPERSIST", actual, e);
  }
  napi_value obj, vfd, vname;
  napi_create_object(env, &obj);
  napi_create_int32(env, fd, &vfd);
  napi_create_string_utf8(env, actual, NAPI_AUTO_LENGTH, &vname);
  napi_set_named_property(env, obj, "fd", vfd);
  napi_set_named_property(env, obj, "name", vname);
  return obj;
}

/* tunSetPersist(fd, on): TUNSETPERSIST. A non-persistent device disappears with its last queue. */
static napi_value tun_set_persist(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd, on;
  if (get_args(env, info, 2, argv) || get_fd(env, argv[0], &fd) || get_bool(env, argv[1], &on))
    return NULL;
  if (ioctl(fd, TUNSETPERSIST, on ? 1 : 0) < 0) return throw_errno_fd(env, "TUNSETPERSIST", fd, errno);
  return ret_undefined(env);
}

/* tunSetOffload(fd, flags): TUNSETOFFLOAD with TUN_F_* bits (needs vnetHdr for anything but 0). */
static napi_value tun_set_offload(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  uint32_t flags;
  if (get_args(env, info, 2, argv) || get_fd(env, argv[0], &fd) ||
      get_u32_range(env, argv[1], "flags", 0, UINT32_MAX, &flags))
    return NULL;
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0)
    return throw_errno_fd(env, "TUNSETOFFLOAD", fd, errno);
  return ret_undefined(env);
}

napi_status tun_register(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
    FN("tunOpen", tun_open),
    FN("tunSetPersist", tun_set_persist),
    FN("tunSetOffload", tun_set_offload),
  };
  return napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
}
