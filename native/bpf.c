/*
 * eBPF: load a TC program, attach it to an interface's egress (tcx), and run one on a frame (tests).
 * The program itself is built in TypeScript (src/io/tx-gso.ts) like the share filter; these calls
 * only hand it to the kernel.
 */
#include "addon.h"

#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

/* tcx (Linux 6.6), newer than some installed headers: enum bpf_attach_type. */
#define BPF_TCX_EGRESS_TYPE 47

static long sys_bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof *a); }

/*
 * bpfLoadTc(insns, license) -> fd of a TC program for tcx egress (tcxLink). insns: the eBPF
 * instructions as bytes (struct bpf_insn, 8 each). A program the verifier refuses throws with the
 * verifier's last lines.
 */
static napi_value bpf_load_tc(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint8_t *insns;
  size_t len;
  char license[64];
  if (get_args(env, info, 2, argv) || get_typed(env, argv[0], napi_uint8_array, "insns", (void **)&insns, &len) ||
      get_string(env, argv[1], "license", license, sizeof license))
    return NULL;
  const char *what = "TC program";
  if (len == 0 || len % 8 || len / 8 > 4096) return throw_range(env, "insns must be 1 to 4096 eBPF instructions (8 bytes each)");
  /* Thread-local: each context runs on its own thread, so no two calls share the log. */
  static __thread char log[8192];
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SCHED_CLS;
  a.insns = (uint64_t)(uintptr_t)insns;
  a.insn_cnt = (uint32_t)(len / 8);
  a.license = (uint64_t)(uintptr_t)license;
  a.expected_attach_type = BPF_TCX_EGRESS_TYPE;
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

/* bpfTestRun(prog, frame) -> what the program returns for that frame, e.g. a TC_ACT_* (BPF_PROG_TEST_RUN; tests). */
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

napi_status bpf_register(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
    FN("bpfLoadTc", bpf_load_tc),
    FN("tcxLink", tcx_link),
    FN("bpfTestRun", bpf_test_run),
  };
  return napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
}
