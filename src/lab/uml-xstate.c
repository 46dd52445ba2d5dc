/*
 * LD_PRELOAD shim for Debian's user-mode Linux 6.1 on CPUs with a large XSAVE area (AMX tiles: 11 KiB).
 *
 * UML keeps its processes' FPU state in a buffer sized for the CPUs it was written for and hands it to
 * the host with PTRACE_SETREGSET(NT_X86_XSTATE). Linux accepts only a whole XSAVE buffer there
 * (xstateregs_set: count must equal the CPU's full user xstate size, else EFAULT), so on such a CPU
 * every guest process dies at its first context switch ("ptrace set fp regs failed, errno = 14").
 *
 * This shim wraps ptrace(): a GETREGSET of the xstate reads the whole area and gives the caller the part
 * that fits its buffer; a SETREGSET reads the whole current area, lays the caller's part over it and
 * writes the whole. The state beyond the caller's buffer (AMX, which UML's processes never use) stays
 * as it was. Everything else goes to glibc's ptrace unchanged. Lab tooling only: built on demand by
 * src/lab/uml-xstate.ts, used for the user-mode Linux lab hosts, never by userfan itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

typedef long (*ptrace_fn)(enum __ptrace_request, ...);

/* The largest XSAVE area x86 defines today is ~11 KiB (AMX); the kernel shortens iov_len to the real size. */
static char whole[64 * 1024];

static ptrace_fn real_ptrace(void) {
  static ptrace_fn f;
  if (!f) f = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
  return f;
}

static long xstate(enum __ptrace_request req, pid_t pid, struct iovec *iov) {
  ptrace_fn real = real_ptrace();
  struct iovec all = {whole, sizeof whole};
  long r = real(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &all);
  if (r < 0) return r;
  size_t n = iov->iov_len < all.iov_len ? iov->iov_len : all.iov_len;
  if (req == PTRACE_GETREGSET) {
    memcpy(iov->iov_base, whole, n);
    iov->iov_len = n;
    return 0;
  }
  memcpy(whole, iov->iov_base, n);
  return real(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &all);
}

long ptrace(enum __ptrace_request req, ...) {
  va_list ap;
  va_start(ap, req);
  pid_t pid = va_arg(ap, pid_t);
  void *addr = va_arg(ap, void *);
  void *data = va_arg(ap, void *);
  va_end(ap);
  if ((req == PTRACE_GETREGSET || req == PTRACE_SETREGSET) && (unsigned long)addr == NT_X86_XSTATE && data)
    return xstate(req, pid, (struct iovec *)data);
  ptrace_fn real = real_ptrace();
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  return real(req, pid, addr, data);
}
