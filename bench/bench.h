/*
 * What the C bench programs share: a monotonic clock, the process's CPU time, and a fatal error that
 * names the program. Define PROG (a string) before including it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* User and system CPU seconds of the whole process. */
static inline double cpu(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static inline void die(const char *what) {
  fprintf(stderr, PROG ": %s: %s\n", what, strerror(errno));
  exit(1);
}
