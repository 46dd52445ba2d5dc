/*
 * What one thread waking another costs on this machine: a ping-pong over two pipes between two
 * threads, each blocked in poll() until the other writes, with the second thread on the same CPU as
 * the first or on another. Between round trips the first thread sleeps `gap` µs, so the other CPU
 * goes idle as it does between pings (on a VM an idle vCPU is halted and must be woken by the host).
 *
 *   wake PEER_CPU ROUNDS GAP_US   ->   {"peerCpu":1,"rounds":2000,"gapUs":1000,"medianUs":…,"p10Us":…,"p90Us":…}
 *
 * Each round trip is two wake-ups. bench/latency.ts runs it beside the echo measurements.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int ping_fd[2], pong_fd[2];
static int rounds, peer_cpu;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  return sched_setaffinity(0, sizeof s, &s);
}

static void wait_readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  while (poll(&p, 1, -1) < 1) {}
}

static void *peer(void *arg) {
  (void)arg;
  if (pin(peer_cpu) != 0) {
    perror("sched_setaffinity (peer)");
    exit(1);
  }
  char c;
  for (int i = 0; i < rounds; i++) {
    wait_readable(ping_fd[0]);
    if (read(ping_fd[0], &c, 1) != 1 || write(pong_fd[1], &c, 1) != 1) exit(1);
  }
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double d = *(const double *)a - *(const double *)b;
  return d < 0 ? -1 : d > 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: wake PEER_CPU ROUNDS GAP_US\n");
    return 2;
  }
  peer_cpu = atoi(argv[1]);
  rounds = atoi(argv[2]);
  int gap = atoi(argv[3]);
  if (rounds < 1 || gap < 0 || pin(0) != 0 || pipe(ping_fd) != 0 || pipe(pong_fd) != 0) {
    perror("wake: setup");
    return 1;
  }
  pthread_t t;
  if (pthread_create(&t, NULL, peer, NULL) != 0) return 1;
  double *v = malloc(sizeof(double) * rounds);
  char c = 'x';
  for (int i = 0; i < rounds; i++) {
    if (gap) usleep(gap);
    double t0 = now_us();
    if (write(ping_fd[1], &c, 1) != 1) return 1;
    wait_readable(pong_fd[0]);
    if (read(pong_fd[0], &c, 1) != 1) return 1;
    v[i] = now_us() - t0;
  }
  pthread_join(t, NULL);
  qsort(v, rounds, sizeof(double), cmp);
  printf("{\"peerCpu\":%d,\"rounds\":%d,\"gapUs\":%d,\"medianUs\":%.2f,\"p10Us\":%.2f,\"p90Us\":%.2f}\n", peer_cpu, rounds, gap,
         v[rounds / 2], v[rounds / 10], v[rounds * 9 / 10]);
  return 0;
}
