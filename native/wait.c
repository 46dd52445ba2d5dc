/* Waiting: poll() with a bounded sleep and optional busy polling, and eventfds to wake a waiter. */
#include "addon.h"

#include <poll.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>

/* A look that comes this long after the last one (µs) means the yield ran another thread: stop looking. */
#define WAIT_SPIN_GIVEN_US 200

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
 * its CPU. It stops looking early when a yield ran another thread for over WAIT_SPIN_GIVEN_US: the
 * CPU is wanted and will not go idle, so looking only takes time from others (a reasoned stop, not
 * one shown to matter). When a look found the descriptors ready, WAIT_CAUGHT is added to the count.
 * times (a Float64Array of 2, optional) receives when the call started and ended, µs on
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

napi_status wait_register(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
    FN("wait", wait_fds),
    FN("eventfdOpen", efd_open),
    FN("eventfdWrite", efd_signal),
    FN("eventfdRead", efd_read),
  };
  return napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
}
