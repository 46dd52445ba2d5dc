/*
 * The module: every file's exports (its *_register, addon.h) and the constants JS needs. Runs once
 * per context (main thread and each worker), so it only defines properties on that context's exports.
 */
#include "addon.h"

#include <poll.h>
#include <linux/if_tun.h>

static void set_const(napi_env env, napi_value exports, const char *name, int32_t v) {
  napi_set_named_property(env, exports, name, ret_i32(env, v));
}

NAPI_MODULE_INIT() {
  napi_status (*const registers[])(napi_env, napi_value) = {
    tun_register, iface_register, raw_register, packet_register,
    sum_register, wait_register, bpf_register, misc_register,
  };
  for (size_t i = 0; i < sizeof registers / sizeof registers[0]; i++)
    if (registers[i](env, exports) != napi_ok) return NULL;
  set_const(env, exports, "POLLIN", POLLIN);
  set_const(env, exports, "POLLOUT", POLLOUT);
  set_const(env, exports, "POLLERR", POLLERR);
  set_const(env, exports, "POLLHUP", POLLHUP);
  set_const(env, exports, "POLLNVAL", POLLNVAL);
  set_const(env, exports, "TUN_F_CSUM", TUN_F_CSUM);
  set_const(env, exports, "TUN_F_TSO4", TUN_F_TSO4);
  set_const(env, exports, "TUN_F_TSO6", TUN_F_TSO6);
  set_const(env, exports, "TUN_F_TSO_ECN", TUN_F_TSO_ECN);
  set_const(env, exports, "TUN_F_UFO", TUN_F_UFO);
  set_const(env, exports, "ERR_TOTAL", ERR_TOTAL);
  set_const(env, exports, "ERR_LAST", ERR_LAST);
  set_const(env, exports, "ERR_MSGSIZE", ERR_MSGSIZE);
  set_const(env, exports, "ERR_UNREACH", ERR_UNREACH);
  set_const(env, exports, "ERR_NOBUFS", ERR_NOBUFS);
  set_const(env, exports, "ERR_INVAL", ERR_INVAL);
  set_const(env, exports, "ERR_PERM", ERR_PERM);
  set_const(env, exports, "ERR_IO", ERR_IO);
  set_const(env, exports, "ERR_OTHER", ERR_OTHER);
  set_const(env, exports, "ERR_SLOTS", ERR_SLOTS);
  set_const(env, exports, "WAIT_MAX", WAIT_MAX);
  set_const(env, exports, "WAIT_MAX_MS", WAIT_MAX_MS);
  set_const(env, exports, "WAIT_MAX_SPIN_US", WAIT_MAX_SPIN_US);
  set_const(env, exports, "WAIT_CAUGHT", WAIT_CAUGHT);
  return exports;
}
