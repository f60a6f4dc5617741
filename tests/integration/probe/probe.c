/* probe: try named operations, one per argument, and print "<op> ok" or "<op> <ERRNO name>" for each.
 *
 * Built static (gcc -static -O2) so it runs in an empty container root file system. Each operation
 * is one system call, made directly where libc could substitute another one (fork → clone).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_PACKET
#define AF_PACKET 17
#endif

static int close_ok(int fd) { return fd < 0 ? -1 : (close(fd), 0); }

/* 0 when the call failed with `expected`, the errno the kernel itself gives the probe's bad arguments. */
static int reached(long r, int expected) { return r < 0 && errno == expected ? 0 : -1; }

static int try_op(const char *op) {
    if (!strcmp(op, "getpid")) return syscall(SYS_getpid) > 0 ? 0 : -1;
    if (!strcmp(op, "socket-inet-stream")) return close_ok(socket(AF_INET, SOCK_STREAM, 0));
    if (!strcmp(op, "socket-inet6-stream")) return close_ok(socket(AF_INET6, SOCK_STREAM, 0));
    if (!strcmp(op, "socket-inet-dgram")) return close_ok(socket(AF_INET, SOCK_DGRAM, 0));
    if (!strcmp(op, "socket-unix")) return close_ok(socket(AF_UNIX, SOCK_STREAM, 0));
    if (!strcmp(op, "socket-packet")) return close_ok(socket(AF_PACKET, SOCK_RAW, 0));
    if (!strcmp(op, "unshare-net")) return syscall(SYS_unshare, CLONE_NEWNET);
    /* Peeking at a process we do not trace fails with ESRCH once the kernel runs ptrace: that is "ok". */
    if (!strcmp(op, "ptrace")) return reached(syscall(SYS_ptrace, PTRACE_PEEKDATA, getpid(), 0, 0), ESRCH);
    /* A NULL clone_args fails with EINVAL inside clone3 when the filter lets it through. */
    if (!strcmp(op, "clone3")) return reached(syscall(SYS_clone3, NULL, 0), EINVAL);
    if (!strcmp(op, "io-uring-setup")) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        return close_ok(syscall(SYS_io_uring_setup, 1, &p));
    }
    if (!strcmp(op, "fork")) {
        long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) syscall(SYS_exit_group, 0);
        if (pid < 0) return -1;
        return waitpid(pid, NULL, 0) == pid ? 0 : -1;
    }
    if (!strncmp(op, "mkdir:", 6)) return syscall(SYS_mkdir, op + 6, 0700);
    if (!strncmp(op, "open-read:", 10)) return close_ok(syscall(SYS_openat, AT_FDCWD, op + 10, O_RDONLY | O_CLOEXEC));
    errno = EINVAL;
    fprintf(stderr, "probe: unknown operation %s\n", op);
    return -2;
}

int main(int argc, char **argv) {
    int status = 0;
    for (int i = 1; i < argc; i++) {
        errno = 0;
        int r = try_op(argv[i]);
        if (r == -2) status = 2;
        const char *name = r >= 0 ? "ok" : strerrorname_np(errno);
        printf("%s %s\n", argv[i], name ? name : "E?");
    }
    fflush(stdout);
    return status;
}
