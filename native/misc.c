/* Namespaces and descriptors: enter a network namespace, pin a thread to a CPU, close a descriptor. */
#include "addon.h"

#include <sched.h>
#include <unistd.h>

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

napi_status misc_register(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
    FN("setNetns", set_netns),
    FN("pinThread", pin_thread),
    FN("close", close_fd),
  };
  return napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
}
