/*
 * userfan native I/O: the syscalls the data plane needs, and nothing else. This header is shared by
 * every file of the addon (binding.gyp lists them); module.c puts their exports together.
 *
 * No packet logic lives here: JS decides what every byte is. The addon opens TUN queues and raw
 * IP-in-IP sockets, moves batches of packets between them and slots of a (Shared)ArrayBuffer,
 * polls, and turns errno into JS errors.
 *
 * Rules:
 *  - Node-API only (<node_api.h>), context-aware (NAPI_MODULE_INIT): it loads in any number of
 *    worker threads. No mutable globals: per-call state lives on the C stack (the one buffer that
 *    does not, the verifier log in bpf.c, is thread-local, and every context runs on its own thread).
 *  - Every function is synchronous; file descriptors are plain ints owned by JS.
 *  - Errors are thrown as Error objects whose message is "<operation> <object>: <ERRNO>", e.g.
 *    "TUNSETIFF fan0: EPERM", with err.code = "EPERM", err.errno = 1 (positive), err.syscall.
 *  - Batch calls never throw for a packet the kernel refuses: they skip it and count it in a
 *    Uint32Array of error counters (layout: the ERR_* constants exported by module.c).
 *  - One native call per batch, never per packet; no JS allocation in batch calls.
 *
 * Every .c file includes this header first (it defines _GNU_SOURCE for the system headers), then
 * the system headers only it needs.
 */
#ifndef USERFAN_ADDON_H
#define USERFAN_ADDON_H

#define _GNU_SOURCE
#include <node_api.h>

#include <errno.h>
#include <net/if.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Most descriptors one wait() call watches. */
#define WAIT_MAX 64
/*
 * Longest wait() sleeps, whatever it is asked: a thread blocked in poll() cannot be stopped, and
 * Node joins worker threads on exit, so an unbounded wait could hang the process.
 */
#define WAIT_MAX_MS 250
/* The longest busy poll wait() does before it sleeps, µs. */
#define WAIT_MAX_SPIN_US 1000000
/* Added to wait()'s count when a busy poll found the descriptors ready (no sleep); counts fit below it. */
#define WAIT_CAUGHT 0x10000

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

/* One exported function, for a file's napi_define_properties table. */
#define FN(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL }

/*
 * Everything declared from here on is internal to the addon: hidden, so that the .node exports only
 * the Node-API entry points and no helper name can bind to a same-named symbol of the node binary.
 */
#pragma GCC visibility push(hidden)

/* ---------- errors (errors-args.c) ---------- */

/* Throws Error("<op> <obj>: <ENAME>") with code/errno/syscall; returns NULL for the caller to return. */
napi_value throw_errno(napi_env env, const char *op, const char *obj, int e);
/* throw_errno with obj "fd <fd>". */
napi_value throw_errno_fd(napi_env env, const char *op, int fd, int e);
napi_value throw_type(napi_env env, const char *msg);
napi_value throw_range(napi_env env, const char *msg);
/* Errors that mean the descriptor itself is unusable (or a bug), not that one packet was refused. */
int is_fatal(int e);
/* Counts a refused packet in errs (NULL: not counted). */
void count_error(uint32_t *errs, int e);

/* ---------- argument helpers (errors-args.c; each returns 0 on success, -1 with a pending exception) ---------- */

/* argv[0..want): the arguments, undefined for those not passed. */
int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
/* 1 for undefined or null (the helpers' "absent"). */
int is_nullish(napi_env env, napi_value v);
int get_i32(napi_env env, napi_value v, const char *what, int32_t *out);
int get_u32_range(napi_env env, napi_value v, const char *what, uint32_t lo, uint32_t hi, uint32_t *out);
int get_fd(napi_env env, napi_value v, int *fd);
/* undefined/null reads as false. */
int get_bool(napi_env env, napi_value v, int *out);
/* A typed array of the given element type; *len is its element count (*data NULL when 0). */
int get_typed(napi_env env, napi_value v, napi_typedarray_type want, const char *what, void **data, size_t *len);
/* Optional error counters: undefined/null (*errs NULL), or a Uint32Array of at least ERR_SLOTS entries. */
int get_errs(napi_env env, napi_value v, uint32_t **errs);
int get_string(napi_env env, napi_value v, const char *what, char *buf, size_t cap);
int get_ifname(napi_env env, napi_value v, char name[IFNAMSIZ]);
/* Optional property of an options object (itself optional): *out NULL if absent, undefined or null. */
int opt_prop(napi_env env, napi_value obj, const char *key, napi_value *out);
int opt_bool(napi_env env, napi_value obj, const char *key, int *out);
int opt_u32(napi_env env, napi_value obj, const char *key, uint32_t lo, uint32_t hi, uint32_t dflt, uint32_t *out);

/*
 * Packet slots: buf is the byte array, offs/lens Uint32Arrays of slot offsets and lengths.
 * check_read_slots: entries [0, max) exist in both arrays and a slot of `cap` bytes fits at every
 * offset; check_write_slots: entries [from, to) exist and every packet lies inside buf. Batch calls
 * check before their first syscall, so the loops index without further checks.
 */
typedef struct {
  uint8_t *buf;
  size_t buflen;
  uint32_t *offs, *lens;
  size_t noffs, nlens;
} slots_t;

int get_slots(napi_env env, napi_value b, napi_value o, napi_value l, slots_t *s);
int check_read_slots(napi_env env, const slots_t *s, uint32_t max, uint32_t cap);
int check_write_slots(napi_env env, const slots_t *s, uint32_t from, uint32_t to);

napi_value ret_u32(napi_env env, uint32_t v);
napi_value ret_i32(napi_env env, int32_t v);
napi_value ret_undefined(napi_env env);

/* ---------- batches shared by raw.c and packet.c ---------- */

/*
 * sendmmsg(MSG_DONTWAIT) of packets from..to-1 of s: with dsts, packet i to the IPv4 address dsts[i]
 * (host-order uint32, raw IP socket); else whole frames out of interface ifindex[i] (AF_PACKET).
 * Returns (as a JS number) the index of the first packet not sent; see raw.c.
 */
napi_value send_chunks(napi_env env, int fd, const slots_t *s, uint32_t from, uint32_t to, uint32_t *errs, uint16_t port,
                       const uint32_t *dsts, const int32_t *ifindex);

/* ---------- each file's exports (module.c calls these once per context) ---------- */

napi_status tun_register(napi_env env, napi_value exports);
napi_status iface_register(napi_env env, napi_value exports);
napi_status raw_register(napi_env env, napi_value exports);
napi_status packet_register(napi_env env, napi_value exports);
napi_status sum_register(napi_env env, napi_value exports);
napi_status wait_register(napi_env env, napi_value exports);
napi_status bpf_register(napi_env env, napi_value exports);
napi_status misc_register(napi_env env, napi_value exports);

#pragma GCC visibility pop

#endif
