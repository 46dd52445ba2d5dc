/* Checksums: the Internet checksum's one's-complement sum over a batch of byte ranges. */
#include "addon.h"

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

napi_status sum_register(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
    FN("sum16Batch", sum16_batch),
  };
  return napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
}
