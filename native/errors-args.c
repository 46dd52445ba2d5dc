/*
 * Errors and argument helpers shared by every file of the addon (declared in addon.h): errno to a
 * JS Error, the counters of refused packets, and checked reads of JS arguments.
 */
#include "addon.h"

/* ---------- errors ---------- */

static const char *errno_name(int e, char *tmp, size_t tmplen) {
  const char *n = strerrorname_np(e);
  if (n) return n;
  snprintf(tmp, tmplen, "E%d", e);
  return tmp;
}

/* Throws Error("<op> <obj>: <ENAME>") with code/errno/syscall; returns NULL for the caller to return. */
napi_value throw_errno(napi_env env, const char *op, const char *obj, int e) {
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

napi_value throw_errno_fd(napi_env env, const char *op, int fd, int e) {
  char obj[32];
  snprintf(obj, sizeof obj, "fd %d", fd);
  return throw_errno(env, op, obj, e);
}

napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

/* Errors that mean the descriptor itself is unusable (or a bug), not that one packet was refused. */
int is_fatal(int e) {
  return e == EBADF || e == EBADFD || e == EFAULT || e == ENOTSOCK || e == EDESTADDRREQ ||
         e == ENXIO || e == ENODEV;
}

void count_error(uint32_t *errs, int e) {
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

int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  for (size_t i = 0; i < want; i++) argv[i] = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_value undef;
  napi_get_undefined(env, &undef);
  for (size_t i = argc; i < want; i++) argv[i] = undef;
  return 0;
}

int is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 1;
  return t == napi_undefined || t == napi_null;
}

int get_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
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

int get_u32_range(napi_env env, napi_value v, const char *what, uint32_t lo, uint32_t hi,
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

int get_fd(napi_env env, napi_value v, int *fd) {
  uint32_t u;
  if (get_u32_range(env, v, "fd", 0, INT32_MAX, &u)) return -1;
  *fd = (int)u;
  return 0;
}

int get_bool(napi_env env, napi_value v, int *out) {
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
int get_typed(napi_env env, napi_value v, napi_typedarray_type want, const char *what,
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
int get_errs(napi_env env, napi_value v, uint32_t **errs) {
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

int get_string(napi_env env, napi_value v, const char *what, char *buf, size_t cap) {
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

int get_ifname(napi_env env, napi_value v, char name[IFNAMSIZ]) {
  return get_string(env, v, "interface name", name, IFNAMSIZ);
}

/* Optional property of an options object: 0 if absent. */
int opt_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
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

int opt_bool(napi_env env, napi_value obj, const char *key, int *out) {
  napi_value v;
  *out = 0;
  if (opt_prop(env, obj, key, &v)) return -1;
  return v ? get_bool(env, v, out) : 0;
}

int opt_u32(napi_env env, napi_value obj, const char *key, uint32_t lo, uint32_t hi,
                   uint32_t dflt, uint32_t *out) {
  napi_value v;
  *out = dflt;
  if (opt_prop(env, obj, key, &v)) return -1;
  return v ? get_u32_range(env, v, key, lo, hi, out) : 0;
}

/* Packet slots (slots_t, addon.h): the three arrays, then the bounds the batch call relies on. */
int get_slots(napi_env env, napi_value b, napi_value o, napi_value l, slots_t *s) {
  if (get_typed(env, b, napi_uint8_array, "buffer", (void **)&s->buf, &s->buflen)) return -1;
  if (get_typed(env, o, napi_uint32_array, "offsets", (void **)&s->offs, &s->noffs)) return -1;
  if (get_typed(env, l, napi_uint32_array, "lengths", (void **)&s->lens, &s->nlens)) return -1;
  return 0;
}

int check_read_slots(napi_env env, const slots_t *s, uint32_t max, uint32_t cap) {
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

int check_write_slots(napi_env env, const slots_t *s, uint32_t from, uint32_t to) {
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

napi_value ret_u32(napi_env env, uint32_t v) {
  napi_value r;
  napi_create_uint32(env, v, &r);
  return r;
}

napi_value ret_i32(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

napi_value ret_undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}
