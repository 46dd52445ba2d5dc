/*
 * userfan native I/O: the syscalls the data plane needs, and nothing else.
 *
 * No packet logic lives here: JS decides what every byte is. This file opens TUN queues and raw
 * IP-in-IP sockets, moves batches of packets between them and slots of a (Shared)ArrayBuffer,
 * polls, and turns errno into JS errors.
 *
 * Rules:
 *  - Node-API only (<node_api.h>), context-aware (NAPI_MODULE_INIT): it loads in any number of
 *    worker threads. No mutable globals: per-call state lives on the C stack. The one exception is
 *    the table of AF_XDP sockets (their ring and UMEM mappings, process-wide like the descriptors
 *    themselves), so that any thread can close one a dead worker left behind.
 *  - Every function is synchronous; file descriptors are plain ints owned by JS.
 *  - Errors are thrown as Error objects whose message is "<operation> <object>: <ERRNO>", e.g.
 *    "TUNSETIFF fan0: EPERM", with err.code = "EPERM", err.errno = 1 (positive), err.syscall.
 *  - Batch calls never throw for a packet the kernel refuses: they skip it and count it in a
 *    Uint32Array of error counters (layout: the ERR_* constants exported below).
 *  - One native call per batch, never per packet; no JS allocation in batch calls.
 */
#define _GNU_SOURCE
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
/* tcx (Linux 6.6), newer than some installed headers: enum bpf_attach_type. */
#define BPF_TCX_EGRESS_TYPE 47
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

/* Messages per recvmmsg/sendmmsg call; longer batches loop. 64 * ~100 B of headers on the stack. */
#define MMSG_CHUNK 64
/* Most descriptors one wait() call watches. */
#define WAIT_MAX 64
/*
 * Longest wait() sleeps, whatever it is asked: a thread blocked in poll() cannot be stopped, and
 * Node joins worker threads on exit, so an unbounded wait could hang the process.
 */
#define WAIT_MAX_MS 250
/* The longest busy poll wait() does before it sleeps, µs. */
#define WAIT_MAX_SPIN_US 1000000
/* A look that comes this long after the last one (µs) means the yield ran another thread: stop looking. */
#define WAIT_SPIN_GIVEN_US 200
/* Added to wait()'s count when a busy poll found the descriptors ready (no sleep); counts fit below it. */
#define WAIT_CAUGHT 0x10000
/* Longest classic BPF program accepted (the kernel's BPF_MAXINSNS is 4096). */
#define FILTER_MAX 4096

/* Error counter slots (Uint32Array indices), exported to JS as ERR_*. */
enum {
  ERR_TOTAL = 0,   /* every packet skipped because the kernel refused it */
  ERR_LAST,        /* errno of the most recent refusal */
  ERR_MSGSIZE,     /* EMSGSIZE: larger than the route MTU (DF) or the device allows */
  ERR_UNREACH,     /* ENETUNREACH, EHOSTUNREACH, ENETDOWN, EHOSTDOWN, ECONNREFUSED, ENOPROTOOPT */
  ERR_NOBUFS,      /* ENOBUFS, ENOMEM: queues or memory full */
  ERR_INVAL,       /* EINVAL: malformed packet (TUN write of a non-IP packet, bad header) */
  ERR_PERM,        /* EPERM, EACCES: dropped by netfilter on output */
  ERR_IO,          /* EIO: the TUN device is down */
  ERR_OTHER,       /* anything else */
  ERR_SLOTS        /* length the counter array must have */
};

/* ---------- errors ---------- */

static const char *errno_name(int e, char *tmp, size_t tmplen) {
  const char *n = strerrorname_np(e);
  if (n) return n;
  snprintf(tmp, tmplen, "E%d", e);
  return tmp;
}

/* Throws Error("<op> <obj>: <ENAME>") with code/errno/syscall; returns NULL for the caller to return. */
static napi_value throw_errno(napi_env env, const char *op, const char *obj, int e) {
  char tmp[16], msg[256];
  const char *name = errno_name(e, tmp, sizeof tmp);
  snprintf(msg, sizeof msg, "%s %s: %s", op, obj, name);
  napi_value code, message, err, num, sys;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &err);
  napi_create_int32(env, e, &num);
  napi_set_named_property(env, err, "errno", num);
  napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, err, "syscall", sys);
  napi_throw(env, err);
  return NULL;
}

static napi_value throw_errno_fd(napi_env env, const char *op, int fd, int e) {
  char obj[32];
  snprintf(obj, sizeof obj, "fd %d", fd);
  return throw_errno(env, op, obj, e);
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

/* Errors that mean the descriptor itself is unusable (or a bug), not that one packet was refused. */
static int is_fatal(int e) {
  return e == EBADF || e == EBADFD || e == EFAULT || e == ENOTSOCK || e == EDESTADDRREQ ||
         e == ENXIO || e == ENODEV;
}

static void count_error(uint32_t *errs, int e) {
  if (!errs) return;
  errs[ERR_TOTAL]++;
  errs[ERR_LAST] = (uint32_t)e;
  switch (e) {
    case EMSGSIZE: errs[ERR_MSGSIZE]++; break;
    case ENETUNREACH: case EHOSTUNREACH: case ENETDOWN: case EHOSTDOWN:
    case ECONNREFUSED: case ENOPROTOOPT: errs[ERR_UNREACH]++; break;
    case ENOBUFS: case ENOMEM: errs[ERR_NOBUFS]++; break;
    case EINVAL: errs[ERR_INVAL]++; break;
    case EPERM: case EACCES: errs[ERR_PERM]++; break;
    case EIO: errs[ERR_IO]++; break;
    default: errs[ERR_OTHER]++; break;
  }
}

/* ---------- argument helpers (each returns 0 on success, -1 with a pending exception) ---------- */

#define CHECK(call) do { if ((call) != napi_ok) return -1; } while (0)

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  for (size_t i = 0; i < want; i++) argv[i] = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_value undef;
  napi_get_undefined(env, &undef);
  for (size_t i = argc; i < want; i++) argv[i] = undef;
  return 0;
}

static int is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 1;
  return t == napi_undefined || t == napi_null;
}

static int get_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
  napi_valuetype t;
  CHECK(napi_typeof(env, v, &t));
  if (t != napi_number) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a number", what);
    throw_type(env, msg);
    return -1;
  }
  CHECK(napi_get_value_int32(env, v, out));
  return 0;
}

static int get_u32_range(napi_env env, napi_value v, const char *what, uint32_t lo, uint32_t hi,
                         uint32_t *out) {
  double d;
  /* napi_number_expected for a non-number: no exception is pending, so throw our own. */
  if (napi_get_value_double(env, v, &d) != napi_ok) goto bad;
  if (!(d >= lo && d <= hi) || d != (double)(uint32_t)d) goto bad;
  *out = (uint32_t)d;
  return 0;
bad: {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be an integer in [%u, %u]", what, lo, hi);
    throw_range(env, msg);
    return -1;
  }
}

static int get_fd(napi_env env, napi_value v, int *fd) {
  uint32_t u;
  if (get_u32_range(env, v, "fd", 0, INT32_MAX, &u)) return -1;
  *fd = (int)u;
  return 0;
}

static int get_bool(napi_env env, napi_value v, int *out) {
  napi_valuetype t;
  CHECK(napi_typeof(env, v, &t));
  if (t == napi_undefined || t == napi_null) { *out = 0; return 0; }
  bool b;
  if (t != napi_boolean) { throw_type(env, "expected a boolean"); return -1; }
  CHECK(napi_get_value_bool(env, v, &b));
  *out = b;
  return 0;
}

/* A typed array of the given element type; *len is its element count. */
static int get_typed(napi_env env, napi_value v, napi_typedarray_type want, const char *what,
                     void **data, size_t *len) {
  napi_typedarray_type type;
  /* napi_invalid_arg for anything but a typed array (no exception pending). One call per array:
     this runs several times per batch. */
  napi_status st = napi_get_typedarray_info(env, v, &type, len, data, NULL, NULL);
  if (st != napi_ok || type != want) {
    char msg[96];
    const char *tn = want == napi_uint8_array ? "Uint8Array"
                   : want == napi_uint32_array ? "Uint32Array"
                   : want == napi_float64_array ? "Float64Array" : "Int32Array";
    snprintf(msg, sizeof msg, "%s must be a %s", what, tn);
    throw_type(env, msg);
    return -1;
  }
  if (*len == 0) *data = NULL;
  return 0;
}

/* Optional error counters: undefined/null, or a Uint32Array of at least ERR_SLOTS entries. */
static int get_errs(napi_env env, napi_value v, uint32_t **errs) {
  *errs = NULL;
  if (is_nullish(env, v)) return 0;
  size_t len;
  if (get_typed(env, v, napi_uint32_array, "errors", (void **)errs, &len)) return -1;
  if (len < ERR_SLOTS) {
    throw_range(env, "errors must have at least ERR_SLOTS entries");
    return -1;
  }
  return 0;
}

static int get_string(napi_env env, napi_value v, const char *what, char *buf, size_t cap) {
  napi_valuetype t;
  CHECK(napi_typeof(env, v, &t));
  if (t != napi_string) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a string", what);
    throw_type(env, msg);
    return -1;
  }
  size_t n;
  CHECK(napi_get_value_string_utf8(env, v, NULL, 0, &n));
  if (n >= cap) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s is longer than %zu bytes", what, cap - 1);
    throw_range(env, msg);
    return -1;
  }
  CHECK(napi_get_value_string_utf8(env, v, buf, cap, &n));
  return 0;
}

static int get_ifname(napi_env env, napi_value v, char name[IFNAMSIZ]) {
  return get_string(env, v, "interface name", name, IFNAMSIZ);
}

/* Optional property of an options object: 0 if absent. */
static int opt_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
  *out = NULL;
  if (is_nullish(env, obj)) return 0;
  napi_valuetype t;
  CHECK(napi_typeof(env, obj, &t));
  if (t != napi_object) { throw_type(env, "options must be an object"); return -1; }
  bool has;
  CHECK(napi_has_named_property(env, obj, key, &has));
  if (!has) return 0;
  CHECK(napi_get_named_property(env, obj, key, out));
  if (is_nullish(env, *out)) *out = NULL;
  return 0;
}

static int opt_bool(napi_env env, napi_value obj, const char *key, int *out) {
  napi_value v;
  *out = 0;
  if (opt_prop(env, obj, key, &v)) return -1;
  return v ? get_bool(env, v, out) : 0;
}

static int opt_u32(napi_env env, napi_value obj, const char *key, uint32_t lo, uint32_t hi,
                   uint32_t dflt, uint32_t *out) {
  napi_value v;
  *out = dflt;
  if (opt_prop(env, obj, key, &v)) return -1;
  return v ? get_u32_range(env, v, key, lo, hi, out) : 0;
}

/*
 * Packet slots: buf is the byte array, offs/lens Uint32Arrays of slot offsets and lengths.
 * Checks that entries [from, to) exist in both arrays (and, for the read side, that a slot of
 * `cap` bytes fits at every offset; for the write side, that every packet lies inside buf).
 */
typedef struct {
  uint8_t *buf;
  size_t buflen;
  uint32_t *offs, *lens;
  size_t noffs, nlens;
} slots_t;

static int get_slots(napi_env env, napi_value b, napi_value o, napi_value l, slots_t *s) {
  if (get_typed(env, b, napi_uint8_array, "buffer", (void **)&s->buf, &s->buflen)) return -1;
  if (get_typed(env, o, napi_uint32_array, "offsets", (void **)&s->offs, &s->noffs)) return -1;
  if (get_typed(env, l, napi_uint32_array, "lengths", (void **)&s->lens, &s->nlens)) return -1;
  return 0;
}

static int check_read_slots(napi_env env, const slots_t *s, uint32_t max, uint32_t cap) {
  if (max > s->noffs || max > s->nlens) {
    throw_range(env, "max exceeds the offsets/lengths arrays");
    return -1;
  }
  for (uint32_t i = 0; i < max; i++) {
    if ((uint64_t)s->offs[i] + cap > s->buflen) {
      throw_range(env, "a slot (offset + capacity) lies outside the buffer");
      return -1;
    }
  }
  return 0;
}

static int check_write_slots(napi_env env, const slots_t *s, uint32_t from, uint32_t to) {
  if (to > s->noffs || to > s->nlens) {
    throw_range(env, "end exceeds the offsets/lengths arrays");
    return -1;
  }
  for (uint32_t i = from; i < to; i++) {
    if ((uint64_t)s->offs[i] + s->lens[i] > s->buflen) {
      throw_range(env, "a packet (offset + length) lies outside the buffer");
      return -1;
    }
  }
  return 0;
}

static napi_value ret_u32(napi_env env, uint32_t v) {
  napi_value r;
  napi_create_uint32(env, v, &r);
  return r;
}

static napi_value ret_i32(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

static napi_value ret_undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

/* ---------- TUN ---------- */

/*
 * tunOpen(name, {multiQueue, vnetHdr, persist, exclusive}) -> {fd, name}
 * Opens /dev/net/tun non-blocking and binds it with TUNSETIFF (IFF_TUN | IFF_NO_PI [| IFF_MULTI_QUEUE]
 * [| IFF_VNET_HDR] [| IFF_TUN_EXCL]). The first open of a name creates the device; with multiQueue,
 * each further open of the same name attaches one more queue. name may contain %d.
 */
static napi_value tun_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[IFNAMSIZ];
  int mq, vnet, persist, excl;
  if (get_args(env, info, 2, argv) || get_ifname(env, argv[0], name)) return NULL;
  if (opt_bool(env, argv[1], "multiQueue", &mq) || opt_bool(env, argv[1], "vnetHdr", &vnet) ||
      opt_bool(env, argv[1], "persist", &persist) || opt_bool(env, argv[1], "exclusive", &excl))
    return NULL;

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open /dev/net/tun for", name, errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (mq ? IFF_MULTI_QUEUE : 0) | (vnet ? IFF_VNET_HDR : 0) |
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

/* tunSetQueue(fd, enabled): TUNSETQUEUE with IFF_ATTACH_QUEUE / IFF_DETACH_QUEUE (multi-queue only). */
static napi_value tun_set_queue(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd, on;
  if (get_args(env, info, 2, argv) || get_fd(env, argv[0], &fd) || get_bool(env, argv[1], &on))
    return NULL;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = on ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
  if (ioctl(fd, TUNSETQUEUE, &ifr) < 0) return throw_errno_fd(env, "TUNSETQUEUE", fd, errno);
  return ret_undefined(env);
}

/* ---------- interfaces (of the calling thread's network namespace) ---------- */

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
 * read/write in pthread async-cancel enable/disable, ~20 ns per packet here (perf). Nothing in
 * Node cancels threads.
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
 * recvBatch(fd, buf, offs, lens, cap, max, srcs, errs?) -> n
 * recvmmsg(MSG_DONTWAIT | MSG_TRUNC) until EAGAIN or max datagrams: datagram i at buf[offs[i]],
 * lens[i] its full length (greater than cap means it was truncated), srcs[i] the sender's IPv4
 * address as a host-order uint32. Pending socket errors (ICMP reports) are counted in errs and
 * skipped.
 */
static napi_value recv_batch(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  int fd;
  uint32_t cap, max, *srcs, *errs, n = 0;
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

  struct mmsghdr msgs[MMSG_CHUNK];
  struct iovec iov[MMSG_CHUNK];
  struct sockaddr_in sa[MMSG_CHUNK];
  int soft_errors = 0;
  while (n < max) {
    unsigned k = max - n < MMSG_CHUNK ? max - n : MMSG_CHUNK;
    for (unsigned j = 0; j < k; j++) {
      iov[j].iov_base = s.buf + s.offs[n + j];
      iov[j].iov_len = cap;
      memset(&msgs[j].msg_hdr, 0, sizeof msgs[j].msg_hdr);
      msgs[j].msg_hdr.msg_name = &sa[j];
      msgs[j].msg_hdr.msg_namelen = sizeof sa[j];
      msgs[j].msg_hdr.msg_iov = &iov[j];
      msgs[j].msg_hdr.msg_iovlen = 1;
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
      s.lens[n + j] = msgs[j].msg_len;
      srcs[n + j] = msgs[j].msg_hdr.msg_namelen >= sizeof(struct sockaddr_in) && sa[j].sin_family == AF_INET
                        ? ntohl(sa[j].sin_addr.s_addr) : 0;
    }
    n += (uint32_t)r;
    if ((unsigned)r < k) break; /* the queue is empty */
  }
  return ret_u32(env, n);
}

/*
 * The sendmmsg loop the send paths share: packets from..to-1 of s, packet i addressed to the IPv4
 * address dsts[i] (host-order uint32) when dsts is given; else to the link-layer neighbour (ifindex[i],
 * MAC lladdr[2i] = its first four bytes, big-endian, lladdr[2i+1] = its last two); or, with neither,
 * whole frames (they carry their own Ethernet header) out of interface ifindex[i].
 * A packet the kernel refuses (EMSGSIZE, ENETUNREACH, EPERM from a firewall; on the link path also
 * ENXIO or ENODEV: the neighbour's interface is gone) is skipped and counted in errs. Stops early only when the socket buffer is full
 * (EAGAIN) and returns the index of the first packet not sent (== to when all were handled).
 */
static napi_value send_chunks(napi_env env, int fd, const slots_t *s, uint32_t from, uint32_t to, uint32_t *errs,
                              const uint32_t *dsts, const int32_t *ifindex, const int32_t *lladdr) {
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
      if (!dsts && !lladdr) {
        /* A whole frame (SOCK_RAW link socket): only the interface. */
        sa[j].ll.sll_family = AF_PACKET;
        sa[j].ll.sll_protocol = htons(ETH_P_IP);
        sa[j].ll.sll_ifindex = ifindex[i + j];
        namelen = sizeof sa[j].ll;
      } else if (lladdr) {
        uint32_t hi = (uint32_t)lladdr[2 * (i + j)], lo = (uint32_t)lladdr[2 * (i + j) + 1];
        sa[j].ll.sll_family = AF_PACKET;
        sa[j].ll.sll_protocol = htons(ETH_P_IP);
        sa[j].ll.sll_ifindex = ifindex[i + j];
        sa[j].ll.sll_halen = 6;
        unsigned char mac[6] = {hi >> 24, hi >> 16, hi >> 8, hi, lo >> 8, lo};
        memcpy(sa[j].ll.sll_addr, mac, 6);
        namelen = sizeof sa[j].ll;
      } else {
        sa[j].in.sin_family = AF_INET;
        sa[j].in.sin_addr.s_addr = htonl(dsts[i + j]);
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
    unsigned done = 0;
    while (done < k) {
      int r = sendmmsg(fd, msgs + done, k - done, MSG_DONTWAIT);
      if (r < 0) {
        int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) return ret_u32(env, i + done);
        /* A neighbour's interface that went away (ENXIO, ENODEV) fails its packets, not the socket. */
        if (is_fatal(e) && !(!dsts && (e == ENXIO || e == ENODEV))) return throw_errno_fd(env, "sendmmsg", fd, e);
        count_error(errs, e); /* the first message of this call was refused: skip it */
        done++;
        continue;
      }
      done += (unsigned)r;
    }
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
  return send_chunks(env, fd, &s, from, to, errs, dsts, NULL, NULL);
}

/* ---------- link-layer (AF_PACKET) send sockets ---------- */

/*
 * linkOpen({sndbuf}) -> fd
 *
 * socket(AF_PACKET, SOCK_DGRAM, 0), non-blocking: sends complete IPv4 packets (JS writes every
 * header field, checksum included; the kernel adds only the Ethernet header) straight to a
 * neighbour's MAC on one interface, skipping the IP output path (route lookup, netfilter OUTPUT
 * and POSTROUTING, neighbour lookup) that a raw IP socket takes per packet. Protocol 0: it receives
 * nothing. It still goes through the interface's qdisc, so tcpdump on the interface sees what it
 * sends. sndbuf is forced (SO_SNDBUFFORCE, root).
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
 * sendLinkBatch(fd, buf, offs, lens, ifindex, lladdr, from, to, errs?) -> next
 * sendmmsg(MSG_DONTWAIT) on a linkOpen socket of packets from..to-1, packet i to the neighbour
 * with MAC (lladdr[2i], lladdr[2i+1]) on interface ifindex[i] (Int32Arrays); see send_chunks.
 */
static napi_value send_link_batch(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  int fd;
  uint32_t from, to, *errs;
  int32_t *ifx, *ll;
  size_t nifx, nll;
  slots_t s;
  if (get_args(env, info, 9, argv) || get_fd(env, argv[0], &fd) ||
      get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_typed(env, argv[4], napi_int32_array, "ifindex", (void **)&ifx, &nifx) ||
      get_typed(env, argv[5], napi_int32_array, "lladdr", (void **)&ll, &nll) ||
      get_u32_range(env, argv[6], "from", 0, UINT32_MAX, &from) ||
      get_u32_range(env, argv[7], "to", from, UINT32_MAX, &to) || get_errs(env, argv[8], &errs) ||
      check_write_slots(env, &s, from, to))
    return NULL;
  if (to > nifx || 2 * (size_t)to > nll) return throw_range(env, "end exceeds the ifindex or lladdr array");
  return send_chunks(env, fd, &s, from, to, errs, NULL, ifx, ll);
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
  return send_chunks(env, fd, &s, from, to, errs, NULL, ifx, NULL);
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

/* ---------- checksums ---------- */

/*
 * The Internet checksum's one's-complement sum of bytes [0, len) of p, as big-endian 16-bit words (an
 * odd last byte padded with zero), folded to 16 bits, not complemented: src/wire/sum.ts sum16, in C.
 * Eight bytes per load, their 32-bit halves into two 64-bit accumulators (no carry is lost below 2^32
 * loads), folded at the end; the little-endian words are swapped back (RFC 1071 section 2).
 */
static uint32_t ones_sum16(const uint8_t *p, size_t len) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    uint64_t x0, x1, x2, x3;
    memcpy(&x0, p + i, 8);
    memcpy(&x1, p + i + 8, 8);
    memcpy(&x2, p + i + 16, 8);
    memcpy(&x3, p + i + 24, 8);
    a += (x0 & 0xffffffffu) + (x0 >> 32);
    b += (x1 & 0xffffffffu) + (x1 >> 32);
    c += (x2 & 0xffffffffu) + (x2 >> 32);
    d += (x3 & 0xffffffffu) + (x3 >> 32);
  }
  for (; i + 8 <= len; i += 8) {
    uint64_t x;
    memcpy(&x, p + i, 8);
    a += (x & 0xffffffffu) + (x >> 32);
  }
  for (; i + 2 <= len; i += 2) b += (uint32_t)p[i] | ((uint32_t)p[i + 1] << 8);
  if (i < len) c += p[i];
  uint64_t s = (a & 0xffffffffu) + (a >> 32) + (b & 0xffffffffu) + (b >> 32) + (c & 0xffffffffu) + (c >> 32) +
               (d & 0xffffffffu) + (d >> 32);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint32_t)(((s & 0xff) << 8) | (s >> 8));
}

/*
 * sum16Batch(buf, offs, lens, n, out) -> undefined
 * out[i] = the folded one's-complement sum of buf[offs[i], offs[i] + lens[i]) for i < n (see ones_sum16):
 * arithmetic over bytes for a batch of ranges in one call, so the per-call cost is paid once per batch.
 */
static napi_value sum16_batch(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  uint8_t *buf;
  uint32_t *offs, *lens, *out, n;
  size_t blen, no, nl, nout;
  if (get_args(env, info, 5, argv) || get_typed(env, argv[0], napi_uint8_array, "buf", (void **)&buf, &blen) ||
      get_typed(env, argv[1], napi_uint32_array, "offs", (void **)&offs, &no) ||
      get_typed(env, argv[2], napi_uint32_array, "lens", (void **)&lens, &nl) ||
      get_u32_range(env, argv[3], "n", 0, UINT32_MAX, &n) ||
      get_typed(env, argv[4], napi_uint32_array, "out", (void **)&out, &nout))
    return NULL;
  if (n > no || n > nl || n > nout) return throw_range(env, "n exceeds an array");
  for (uint32_t i = 0; i < n; i++) {
    if ((size_t)offs[i] + lens[i] > blen) return throw_range(env, "range outside the buffer");
  }
  for (uint32_t i = 0; i < n; i++) out[i] = ones_sum16(buf + offs[i], lens[i]);
  return NULL;
}

/* ---------- waiting ---------- */

/*
 * wait(fds: Int32Array, events: Int32Array | null, n, timeoutMs, revents: Int32Array[, spinUs[, times]])
 *   -> count
 * poll() on the first n descriptors (events[i], POLLIN when events is null) for at most timeoutMs
 * (0: just look; negative or above WAIT_MAX_MS: WAIT_MAX_MS, so a thread always comes back to see
 * its stop flag and never holds up process exit). revents[i] receives
 * what happened (POLLIN, POLLOUT, POLLERR: e.g. a deleted TUN device, POLLHUP, POLLNVAL: fd not
 * open). Returns the number of descriptors with events; 0 on timeout or signal.
 *
 * With spinUs > 0 (busy polling, src/dataplane/busy-poll.ts) it first looks (poll, timeout 0) again
 * and again for up to spinUs microseconds, giving the CPU to any other runnable thread between looks
 * (sched_yield), and only then sleeps for at most timeoutMs more: a thread that has just sent and
 * may get a reply stays awake on its CPU. Without the yield a spinning thread starves the others on
 * its CPU (measured: echoes slower than without spinning). It stops looking early when a yield ran
 * another thread for over WAIT_SPIN_GIVEN_US: the CPU is wanted and will not go idle, so looking only
 * takes time from others. (Measured with two workers per host and one TCP stream: busy polling
 * against none was within -3% to +3% with or without this stop, in runs whose ranges overlapped, so
 * the stop is reasoned, not shown to matter.) When a look found the descriptors ready, WAIT_CAUGHT is
 * added to the count. times (a Float64Array of 2, optional) receives when the call started and ended, µs on
 * CLOCK_MONOTONIC: a clock that JavaScript can read without allocating (performance.now() allocates).
 */
static napi_value wait_fds(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  int32_t *fds, *evs = NULL, *rev, timeout;
  size_t nfds, nevs = 0, nrev, ntimes = 0;
  double *times = NULL;
  uint32_t n, spin_us = 0;
  if (get_args(env, info, 7, argv) ||
      get_typed(env, argv[0], napi_int32_array, "fds", (void **)&fds, &nfds) ||
      (!is_nullish(env, argv[1]) && get_typed(env, argv[1], napi_int32_array, "events", (void **)&evs, &nevs)) ||
      get_u32_range(env, argv[2], "n", 0, WAIT_MAX, &n) || get_i32(env, argv[3], "timeoutMs", &timeout) ||
      get_typed(env, argv[4], napi_int32_array, "revents", (void **)&rev, &nrev) ||
      (!is_nullish(env, argv[5]) && get_u32_range(env, argv[5], "spinUs", 0, WAIT_MAX_SPIN_US, &spin_us)) ||
      (!is_nullish(env, argv[6]) && get_typed(env, argv[6], napi_float64_array, "times", (void **)&times, &ntimes)))
    return NULL;
  if (n > nfds || n > nrev || (evs && n > nevs)) return throw_range(env, "n exceeds the arrays");
  if (times && ntimes < 2) return throw_range(env, "times must hold 2 values");
  struct pollfd p[WAIT_MAX];
  for (uint32_t i = 0; i < n; i++) {
    p[i].fd = fds[i];
    p[i].events = (short)(evs ? evs[i] : POLLIN);
    p[i].revents = 0;
  }
  int r = 0, caught = 0;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (spin_us > 0) {
    long last = 0;
    for (;;) {
      r = poll(p, n, 0);
      if (r != 0) {
        caught = r > 0;
        break;
      }
      clock_gettime(CLOCK_MONOTONIC, &t);
      long us = (t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000;
      if (us >= (long)spin_us) break;
      /* The last yield ran another thread for a while: this CPU is wanted, it will not go idle. Sleep. */
      if (us - last > WAIT_SPIN_GIVEN_US) break;
      last = us;
      sched_yield();
    }
  }
  if (r == 0) r = poll(p, n, timeout < 0 || timeout > WAIT_MAX_MS ? WAIT_MAX_MS : timeout);
  if (r < 0) {
    if (errno != EINTR) return throw_errno(env, "poll", "fds", errno);
    r = 0;
    for (uint32_t i = 0; i < n; i++) p[i].revents = 0;
  }
  for (uint32_t i = 0; i < n; i++) rev[i] = p[i].revents;
  if (times) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    times[0] = (double)t0.tv_sec * 1e6 + (double)(t0.tv_nsec / 1000);
    times[1] = (double)t.tv_sec * 1e6 + (double)(t.tv_nsec / 1000);
  }
  return ret_i32(env, caught ? r | WAIT_CAUGHT : r);
}

/* eventfdOpen() -> fd: a non-blocking eventfd, for waking a worker out of wait() at once. */
static napi_value efd_open(napi_env env, napi_callback_info info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return throw_errno(env, "eventfd", "", errno);
  return ret_i32(env, fd);
}

/* eventfdWrite(fd): add 1 (makes the fd readable). Any thread may call it. */
static napi_value efd_signal(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (get_args(env, info, 1, argv) || get_fd(env, argv[0], &fd)) return NULL;
  uint64_t one = 1;
  if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN) return throw_errno_fd(env, "write eventfd", fd, errno);
  return ret_undefined(env);
}

/* eventfdRead(fd) -> count accumulated since the last read (0 when none). */
static napi_value efd_read(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (get_args(env, info, 1, argv) || get_fd(env, argv[0], &fd)) return NULL;
  uint64_t v = 0;
  if (read(fd, &v, sizeof v) < 0) {
    if (errno != EAGAIN) return throw_errno_fd(env, "read eventfd", fd, errno);
    v = 0;
  }
  napi_value r;
  napi_create_double(env, (double)v, &r);
  return r;
}

/* ---------- AF_XDP receive (up --recv xdp) ---------- */

/*
 * The XDP program itself is built in TypeScript (src/io/xdp.ts) like the share filter; these calls only
 * load it, attach it, and move what it redirects out of an AF_XDP socket's rings into batch slots.
 */

static long sys_bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof *a); }

/* bpfXskMap(entries) -> fd of a BPF_MAP_TYPE_XSKMAP (key: RX queue, value: AF_XDP socket). */
static napi_value bpf_xsk_map(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t entries;
  if (get_args(env, info, 1, argv) || get_u32_range(env, argv[0], "entries", 1, 4096, &entries)) return NULL;
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_type = BPF_MAP_TYPE_XSKMAP;
  a.key_size = 4;
  a.value_size = 4;
  a.max_entries = entries;
  int fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
  if (fd < 0) return throw_errno(env, "BPF_MAP_CREATE", "XSKMAP", errno);
  return ret_i32(env, fd);
}

/*
 * bpfLoadXdp(insns, license) -> fd of the loaded XDP program; bpfLoadTc(insns, license) -> fd of a TC
 * program for tcx egress (tcxLink). insns: the eBPF instructions as bytes (struct bpf_insn, 8 each). A
 * program the verifier refuses throws with the verifier's last lines.
 */
static napi_value bpf_load(napi_env env, napi_callback_info info, int tc) {
  napi_value argv[2];
  uint8_t *insns;
  size_t len;
  char license[64];
  if (get_args(env, info, 2, argv) || get_typed(env, argv[0], napi_uint8_array, "insns", (void **)&insns, &len) ||
      get_string(env, argv[1], "license", license, sizeof license))
    return NULL;
  const char *what = tc ? "TC program" : "XDP program";
  if (len == 0 || len % 8 || len / 8 > 4096) return throw_range(env, "insns must be 1 to 4096 eBPF instructions (8 bytes each)");
  static __thread char log[8192];
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = tc ? BPF_PROG_TYPE_SCHED_CLS : BPF_PROG_TYPE_XDP;
  a.insns = (uint64_t)(uintptr_t)insns;
  a.insn_cnt = (uint32_t)(len / 8);
  a.license = (uint64_t)(uintptr_t)license;
  a.expected_attach_type = tc ? BPF_TCX_EGRESS_TYPE : BPF_XDP;
  int fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
  if (fd >= 0) return ret_i32(env, fd);
  int e = errno;
  if (e == EACCES || e == EINVAL) {
    /* Once more with the verifier's log, for the message. */
    log[0] = 0;
    a.log_buf = (uint64_t)(uintptr_t)log;
    a.log_size = sizeof log;
    a.log_level = 1;
    sys_bpf(BPF_PROG_LOAD, &a);
    size_t n = strnlen(log, sizeof log);
    while (n > 0 && log[n - 1] == '\n') log[--n] = 0;
    const char *tail = n > 300 ? log + n - 300 : log;
    char msg[420];
    snprintf(msg, sizeof msg, "BPF_PROG_LOAD %s: %s (verifier: %s)", what, e == EACCES ? "EACCES" : "EINVAL", tail);
    napi_value m, err, code;
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
    napi_create_error(env, NULL, m, &err);
    napi_create_string_utf8(env, e == EACCES ? "EACCES" : "EINVAL", NAPI_AUTO_LENGTH, &code);
    napi_set_named_property(env, err, "code", code);
    napi_throw(env, err);
    return NULL;
  }
  return throw_errno(env, "BPF_PROG_LOAD", what, e);
}

static napi_value bpf_load_xdp(napi_env env, napi_callback_info info) { return bpf_load(env, info, 0); }
static napi_value bpf_load_tc(napi_env env, napi_callback_info info) { return bpf_load(env, info, 1); }

/*
 * tcxLink(prog, ifindex) -> fd of a BPF link that attaches a TC program (bpfLoadTc) to the
 * interface's egress (tcx, Linux 6.6 and later) until the fd is closed, also when the daemon dies.
 */
static napi_value tcx_link(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int prog;
  uint32_t ifindex;
  if (get_args(env, info, 2, argv) || get_fd(env, argv[0], &prog) ||
      get_u32_range(env, argv[1], "ifindex", 1, INT32_MAX, &ifindex))
    return NULL;
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.link_create.prog_fd = (uint32_t)prog;
  a.link_create.target_ifindex = ifindex;
  a.link_create.attach_type = BPF_TCX_EGRESS_TYPE;
  int fd = (int)sys_bpf(BPF_LINK_CREATE, &a);
  if (fd < 0) return throw_errno(env, "BPF_LINK_CREATE", "TC egress", errno);
  return ret_i32(env, fd);
}

/*
 * xdpLink(prog, ifindex, generic) -> fd of a BPF link that attaches the program to the interface until
 * the fd is closed (so a daemon that dies detaches it). generic: XDP_FLAGS_SKB_MODE (after the driver,
 * on any interface); else the driver's own XDP.
 */
static napi_value xdp_link(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int prog, generic;
  uint32_t ifindex;
  if (get_args(env, info, 3, argv) || get_fd(env, argv[0], &prog) ||
      get_u32_range(env, argv[1], "ifindex", 1, INT32_MAX, &ifindex) || get_bool(env, argv[2], &generic))
    return NULL;
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.link_create.prog_fd = (uint32_t)prog;
  a.link_create.target_ifindex = ifindex;
  a.link_create.attach_type = BPF_XDP;
  a.link_create.flags = generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
  int fd = (int)sys_bpf(BPF_LINK_CREATE, &a);
  if (fd < 0) return throw_errno(env, "BPF_LINK_CREATE", "XDP", errno);
  return ret_i32(env, fd);
}

/* bpfTestRun(prog, frame) -> the XDP action the program returns for that frame (BPF_PROG_TEST_RUN; tests). */
static napi_value bpf_test_run(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int prog;
  uint8_t *data;
  size_t len;
  if (get_args(env, info, 2, argv) || get_fd(env, argv[0], &prog) ||
      get_typed(env, argv[1], napi_uint8_array, "frame", (void **)&data, &len))
    return NULL;
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.test.prog_fd = (uint32_t)prog;
  a.test.data_in = (uint64_t)(uintptr_t)data;
  a.test.data_size_in = (uint32_t)len;
  a.test.repeat = 1;
  if (sys_bpf(BPF_PROG_TEST_RUN, &a) < 0) return throw_errno(env, "BPF_PROG_TEST_RUN", "XDP program", errno);
  return ret_u32(env, a.test.retval);
}

/* One AF_XDP socket: its UMEM and the two rings userfan uses (fill, RX), mapped into this process. */
typedef struct {
  int fd;
  uint8_t *umem;
  size_t umem_len;
  uint32_t frame, frames, nring;
  uint8_t *fill_map, *rx_map;
  size_t fill_len, rx_len;
  uint32_t *fill_prod, *rx_prod, *rx_cons;
  uint64_t *fill;
  struct xdp_desc *rx;
} xsk_t;

#define XSK_MAX 64
static xsk_t xsks[XSK_MAX];
static pthread_mutex_t xsk_lock = PTHREAD_MUTEX_INITIALIZER;

static void xsk_unmap(xsk_t *x) {
  if (x->rx_map) munmap(x->rx_map, x->rx_len);
  if (x->fill_map) munmap(x->fill_map, x->fill_len);
  if (x->umem) munmap(x->umem, x->umem_len);
  memset(x, 0, sizeof *x);
  x->fd = -1;
}

/* The socket's entry; NULL (and a thrown error) when fd is not an open AF_XDP socket of this process. */
static xsk_t *xsk_find(napi_env env, int fd) {
  xsk_t *x = NULL;
  pthread_mutex_lock(&xsk_lock);
  for (int i = 0; i < XSK_MAX; i++)
    if (xsks[i].umem && xsks[i].fd == fd) { x = &xsks[i]; break; }
  pthread_mutex_unlock(&xsk_lock);
  if (!x) throw_errno_fd(env, "AF_XDP socket", fd, EBADF);
  return x;
}

static void *ring_map(int fd, const struct xdp_ring_offset *o, size_t elem, uint32_t n, off_t pgoff, size_t *len) {
  *len = o->desc + n * elem;
  void *m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
  return m == MAP_FAILED ? NULL : m;
}

/*
 * xskOpen({ ifindex, queue, map, ring, frame }) -> fd. An AF_XDP socket in copy mode bound to RX queue
 * `queue` of the interface, with a UMEM of `ring` frames of `frame` bytes (2048 or 4096), fill and RX
 * rings of `ring` entries (a power of two), every frame on the fill ring; then entered in the XSKMAP `map` under
 * `queue`, after which the XDP program redirects to it. A queue still held by a socket that is being
 * released (EBUSY) is retried for up to a second.
 */
static napi_value xsk_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t ifindex, queue, map, ring, frame;
  if (get_args(env, info, 1, argv) || opt_u32(env, argv[0], "ifindex", 1, INT32_MAX, 0, &ifindex) ||
      opt_u32(env, argv[0], "queue", 0, 4095, 0, &queue) || opt_u32(env, argv[0], "map", 0, INT32_MAX, 0, &map) ||
      opt_u32(env, argv[0], "ring", 64, 16384, 2048, &ring) || opt_u32(env, argv[0], "frame", 2048, 4096, 2048, &frame))
    return NULL;
  if (!ifindex) return throw_range(env, "ifindex is required");
  if (ring & (ring - 1)) return throw_range(env, "ring must be a power of two");
  if (frame != 2048 && frame != 4096) return throw_range(env, "frame must be 2048 or 4096");

  xsk_t x = { .fd = -1, .frame = frame, .frames = ring, .nring = ring };
  const char *op = "socket(AF_XDP)";
  int e = 0;
  x.fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (x.fd < 0) { e = errno; goto fail; }
  x.umem_len = (size_t)x.frames * frame;
  op = "mmap UMEM";
  x.umem = mmap(NULL, x.umem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (x.umem == MAP_FAILED) { x.umem = NULL; e = errno; goto fail; }
  struct xdp_umem_reg reg = { .addr = (uint64_t)(uintptr_t)x.umem, .len = x.umem_len, .chunk_size = frame, .headroom = 0 };
  op = "XDP_UMEM_REG";
  if (setsockopt(x.fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg) < 0) { e = errno; goto fail; }
  int n = (int)ring;
  op = "XDP rings";
  if (setsockopt(x.fd, SOL_XDP, XDP_UMEM_FILL_RING, &n, sizeof n) < 0 ||
      setsockopt(x.fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &n, sizeof n) < 0 ||
      setsockopt(x.fd, SOL_XDP, XDP_RX_RING, &n, sizeof n) < 0) { e = errno; goto fail; }
  struct xdp_mmap_offsets off;
  socklen_t ol = sizeof off;
  op = "XDP_MMAP_OFFSETS";
  if (getsockopt(x.fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol) < 0) { e = errno; goto fail; }
  op = "mmap XDP rings";
  x.fill_map = ring_map(x.fd, &off.fr, sizeof(uint64_t), ring, XDP_UMEM_PGOFF_FILL_RING, &x.fill_len);
  if (!x.fill_map) { e = errno; goto fail; }
  x.rx_map = ring_map(x.fd, &off.rx, sizeof(struct xdp_desc), ring, XDP_PGOFF_RX_RING, &x.rx_len);
  if (!x.rx_map) { e = errno; goto fail; }
  x.fill_prod = (uint32_t *)(x.fill_map + off.fr.producer);
  x.fill = (uint64_t *)(x.fill_map + off.fr.desc);
  x.rx_prod = (uint32_t *)(x.rx_map + off.rx.producer);
  x.rx_cons = (uint32_t *)(x.rx_map + off.rx.consumer);
  x.rx = (struct xdp_desc *)(x.rx_map + off.rx.desc);
  for (uint32_t i = 0; i < ring; i++) x.fill[i] = (uint64_t)i * frame;
  __atomic_store_n(x.fill_prod, ring, __ATOMIC_RELEASE);

  struct sockaddr_xdp sx = { .sxdp_family = AF_XDP, .sxdp_ifindex = ifindex, .sxdp_queue_id = queue, .sxdp_flags = XDP_COPY };
  op = "bind(AF_XDP)";
  for (int tries = 0;; tries++) {
    if (bind(x.fd, (struct sockaddr *)&sx, sizeof sx) == 0) break;
    e = errno;
    if (e != EBUSY || tries >= 100) goto fail;
    usleep(10000);
  }
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = map;
  a.key = (uint64_t)(uintptr_t)&queue;
  a.value = (uint64_t)(uintptr_t)&x.fd;
  op = "BPF_MAP_UPDATE_ELEM XSKMAP";
  if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a) < 0) { e = errno; goto fail; }

  pthread_mutex_lock(&xsk_lock);
  int slot = -1;
  for (int i = 0; i < XSK_MAX; i++)
    if (!xsks[i].umem) { slot = i; break; }
  if (slot >= 0) xsks[slot] = x;
  pthread_mutex_unlock(&xsk_lock);
  if (slot < 0) { op = "AF_XDP socket table"; e = EMFILE; goto fail; }
  return ret_i32(env, x.fd);
fail:
  if (x.fd >= 0) close(x.fd);
  xsk_unmap(&x);
  return throw_errno(env, op, "queue", e);
}

/*
 * xskRecvBatch(fd, buf, offs, lens, cap, max, srcs) -> n
 * Takes up to max frames off the RX ring: frame i's IPv4 packet (its Ethernet header left behind) is
 * copied to buf[offs[i]], lens[i] its full length (above cap: truncated), srcs[i] its IPv4 source
 * (host order, as recvBatch gives the sender). Every frame taken goes straight back to the fill ring,
 * which has room for it: each of the UMEM's `ring` frames is on the fill ring, on the RX ring, or with
 * the kernel between the two.
 * Never blocks: an empty ring returns 0 (poll the fd for POLLIN).
 */
static napi_value xsk_recv_batch(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  int fd;
  uint32_t cap, max, *srcs;
  size_t nsrcs;
  slots_t s;
  if (get_args(env, info, 7, argv) || get_fd(env, argv[0], &fd) || get_slots(env, argv[1], argv[2], argv[3], &s) ||
      get_u32_range(env, argv[4], "cap", 1, UINT32_MAX, &cap) || get_u32_range(env, argv[5], "max", 0, UINT32_MAX, &max) ||
      get_typed(env, argv[6], napi_uint32_array, "addresses", (void **)&srcs, &nsrcs) || check_read_slots(env, &s, max, cap))
    return NULL;
  if (max > nsrcs) return throw_range(env, "max exceeds the addresses array");
  xsk_t *x = xsk_find(env, fd);
  if (!x) return NULL;
  uint32_t cons = *x->rx_cons;
  uint32_t avail = __atomic_load_n(x->rx_prod, __ATOMIC_ACQUIRE) - cons;
  uint32_t n = avail < max ? avail : max;
  uint32_t fp = *x->fill_prod, mask = x->nring - 1;
  for (uint32_t i = 0; i < n; i++, cons++) {
    const struct xdp_desc *d = &x->rx[cons & mask];
    uint32_t len = d->len > ETH_HLEN ? d->len - ETH_HLEN : 0;
    if (d->addr + d->len <= x->umem_len) {
      const uint8_t *p = x->umem + d->addr + ETH_HLEN;
      memcpy(s.buf + s.offs[i], p, len < cap ? len : cap);
      srcs[i] = len >= 20 ? (uint32_t)p[12] << 24 | (uint32_t)p[13] << 16 | (uint32_t)p[14] << 8 | p[15] : 0;
    } else {
      len = 0; /* a descriptor outside the UMEM (cannot happen): an empty packet, counted as malformed */
      srcs[i] = 0;
    }
    s.lens[i] = len;
    x->fill[fp++ & mask] = d->addr - d->addr % x->frame;
  }
  __atomic_store_n(x->rx_cons, cons, __ATOMIC_RELEASE);
  __atomic_store_n(x->fill_prod, fp, __ATOMIC_RELEASE);
  return ret_u32(env, n);
}

/* xskStats(fd) -> { dropped, ringFull, fillEmpty, invalid }: XDP_STATISTICS (frames the kernel lost). */
static napi_value xsk_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1], r, v;
  int fd;
  if (get_args(env, info, 1, argv) || get_fd(env, argv[0], &fd)) return NULL;
  struct xdp_statistics st;
  memset(&st, 0, sizeof st);
  socklen_t l = sizeof st;
  if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &st, &l) < 0) return throw_errno_fd(env, "XDP_STATISTICS", fd, errno);
  napi_create_object(env, &r);
  napi_create_double(env, (double)st.rx_dropped, &v);
  napi_set_named_property(env, r, "dropped", v);
  napi_create_double(env, (double)st.rx_ring_full, &v);
  napi_set_named_property(env, r, "ringFull", v);
  napi_create_double(env, (double)st.rx_fill_ring_empty_descs, &v);
  napi_set_named_property(env, r, "fillEmpty", v);
  napi_create_double(env, (double)st.rx_invalid_descs, &v);
  napi_set_named_property(env, r, "invalid", v);
  return r;
}

/* xskClose(fd): unmaps the socket's rings and UMEM and closes it; any thread may call it (idempotent). */
static napi_value xsk_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (get_args(env, info, 1, argv) || get_fd(env, argv[0], &fd)) return NULL;
  int found = 0;
  pthread_mutex_lock(&xsk_lock);
  for (int i = 0; i < XSK_MAX; i++)
    if (xsks[i].umem && xsks[i].fd == fd) { xsk_unmap(&xsks[i]); found = 1; break; }
  pthread_mutex_unlock(&xsk_lock);
  if (found && close(fd) < 0 && errno != EINTR) return throw_errno_fd(env, "close", fd, errno);
  return ret_undefined(env);
}

/* ---------- namespaces and descriptors ---------- */

/*
 * setNetns(fd): setns(fd, CLONE_NEWNET) for the calling thread only (a worker thread can enter a
 * namespace without moving the rest of the process). Descriptors opened afterwards (TUN, sockets)
 * belong to that namespace for good.
 */
static napi_value set_netns(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (get_args(env, info, 1, argv) || get_fd(env, argv[0], &fd)) return NULL;
  if (setns(fd, CLONE_NEWNET) < 0) return throw_errno_fd(env, "setns", fd, errno);
  return ret_undefined(env);
}

/*
 * pinThread(cpu): sched_setaffinity for the calling thread only (pid 0), to that one CPU, so a worker
 * stays where its caches are instead of following whichever thread woke it (up --cpus).
 */
static napi_value pin_thread(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t cpu;
  if (get_args(env, info, 1, argv) || get_i32(env, argv[0], "cpu", &cpu)) return NULL;
  if (cpu < 0 || cpu >= CPU_SETSIZE) return throw_range(env, "cpu must be 0 to CPU_SETSIZE - 1");
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) return throw_errno(env, "sched_setaffinity", "cpu", errno);
  return ret_undefined(env);
}

/* close(fd). */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (get_args(env, info, 1, argv) || get_fd(env, argv[0], &fd)) return NULL;
  /* Linux releases the descriptor even when close() reports EINTR: never retry. */
  if (close(fd) < 0 && errno != EINTR) return throw_errno_fd(env, "close", fd, errno);
  return ret_undefined(env);
}

/* ---------- module ---------- */

#define FN(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL }

static void set_const(napi_env env, napi_value exports, const char *name, int32_t v) {
  napi_set_named_property(env, exports, name, ret_i32(env, v));
}

NAPI_MODULE_INIT() {
  napi_property_descriptor fns[] = {
    FN("tunOpen", tun_open),
    FN("tunSetPersist", tun_set_persist),
    FN("tunSetOffload", tun_set_offload),
    FN("tunSetQueue", tun_set_queue),
    FN("ifIndex", if_index),
    FN("ifSetUp", if_set_up),
    FN("ifSetMtu", if_set_mtu),
    FN("ifSetTxQueueLen", if_set_txqlen),
    FN("rawOpen", raw_open),
    FN("socketBuffers", socket_buffers),
    FN("attachFilter", attach_filter),
    FN("detachFilter", detach_filter),
    FN("drain", drain),
    FN("readBatch", read_batch),
    FN("writeBatch", write_batch),
    FN("recvBatch", recv_batch),
    FN("sendBatch", send_batch),
    FN("linkOpen", link_open),
    FN("sum16Batch", sum16_batch),
    FN("sendLinkBatch", send_link_batch),
    FN("wait", wait_fds),
    FN("eventfdOpen", efd_open),
    FN("eventfdWrite", efd_signal),
    FN("eventfdRead", efd_read),
    FN("bpfXskMap", bpf_xsk_map),
    FN("bpfLoadXdp", bpf_load_xdp),
    FN("xdpLink", xdp_link),
    FN("bpfLoadTc", bpf_load_tc),
    FN("tcxLink", tcx_link),
    FN("sendFrameBatch", send_frame_batch),
    FN("socketCookie", socket_cookie),
    FN("bpfTestRun", bpf_test_run),
    FN("xskOpen", xsk_open),
    FN("xskRecvBatch", xsk_recv_batch),
    FN("xskStats", xsk_stats),
    FN("xskClose", xsk_close),
    FN("setNetns", set_netns),
    FN("pinThread", pin_thread),
    FN("close", close_fd),
  };
  if (napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns) != napi_ok) return NULL;
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
