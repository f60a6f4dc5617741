/* Launch stage, native front: the `sandboxer` command. It runs a cached launch image without Python,
 * and hands every other invocation to the Python `sandboxer` (sandboxer-py, installed next to it).
 *
 * Why it exists: starting CPython costs ~10 ms here, more than firejail's whole launch; a daily
 * `sandboxer run MANIFEST -- CMD` must not pay it. The Python launcher decides everything (it compiles
 * the manifest, probes the host, refuses or warns, and explains failures); when a run needed no
 * warning, no supervision (audit, complain mode), no cgroup and no wall time, it writes a launch image
 * (sandboxer/launch/image.py): the plan's decisions on this host as flat data. This program only
 * executes an image: the same child steps as launch/sequence.py, in the same order.
 *
 * The rule that keeps it small and safe: anything it does not handle, or any doubt (no image, a stale
 * one, an untrusted cache, an option it does not know, a path that fails to open, a child that fails
 * before execve), is handed to the Python launcher with the original arguments, which does it all
 * again and says what went wrong. Nothing user-visible happens here before the workload execs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SANDBOXER_VERSION
#error "build with -DSANDBOXER_VERSION=\"x.y.z\" (setup.py does)"
#endif
#ifndef SANDBOXER_BUILD
#define SANDBOXER_BUILD "source" /* setup.py passes the digest of the package it installs with this front */
#endif
#if defined(__x86_64__)
#define ARCH "x86_64"
#elif defined(__aarch64__)
#define ARCH "aarch64"
#else
#define ARCH "" /* no image is ever used: every run goes to Python */
#endif

/* Landlock's uapi, declared here: distributions' headers lag the kernel (Debian 12's lack ABI 4+). */
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define LL_CREATE_RULESET_VERSION 1
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2
struct ll_path_beneath { uint64_t allowed_access; int32_t parent_fd; } __attribute__((packed));
struct ll_net_port { uint64_t allowed_access; uint64_t port; };

/* Mirrors sandboxer/launch/image.py: change both (and IMAGE_FORMAT) together. */
#define IMAGE_FORMAT 7
static const char MAGIC[8] = {'S', 'B', 'X', 'I', 'M', 'G', '0', '1'};
enum { T_INPUT = 1, T_ENV_PASS, T_ENV_SET, T_EXEC_GRANT, T_LANDLOCK, T_LL_PATH, T_LL_PORT, T_RLIMIT, T_SECCOMP };
enum { F_NETNS = 1, F_LOOPBACK = 2, F_ROOTLESS = 4, F_DROP_BOUNDING = 8, F_EXEC_CHECKED = 16 };
/* Child steps, numbered as launch/sequence.py numbers them (the report format is the same). */
enum { SETSID, PDEATHSIG, SIGNALS, ENVIRONMENT, STDIO, CLOSE_FDS, CGROUP, PIDNS, NETNS, RLIMITS, CAPS,
       NO_NEW_PRIVS, LANDLOCK, INIT_FORK, SECCOMP, HANDOFF, EXECVE };

#define MAX_ITEMS 256
#define MAX_FILE (1 << 20)

static char **orig_argv;
/* This install's bin directory (from /proc/self/exe), or "" without /proc: images are scoped to it, since
 * two installs of one version may carry different builtin: profiles. */
static char install[PATH_MAX];

/* ---- hand-over to the Python launcher ------------------------------------------------------- */

/* execv(path) for a `#!` script, doing the kernel's interpreter step here: it saves one exec round
 * (~0.2 ms). argv becomes: interpreter, its one optional argument, path, then argv[1..]. Anything
 * unexpected is left to the kernel, and so is reporting a failure. */
static void exec_script(const char *path, char **argv)
{
	char line[256 + 1], *interp, *arg = NULL, *end, *args[5 + 4096]; /* 256: the kernel's BINPRM_BUF_SIZE */
	int fd = open(path, O_RDONLY | O_CLOEXEC), n = 0, argc = 0;
	ssize_t got = fd >= 0 ? read(fd, line, sizeof line - 1) : -1;
	if (fd >= 0)
		close(fd);
	while (argv[argc])
		argc++;
	if (got > 2 && line[0] == '#' && line[1] == '!' && argc < 4096 && (end = memchr(line, '\n', (size_t)got))) {
		*end = 0;
		interp = line + 2 + strspn(line + 2, " \t");
		end = interp + strcspn(interp, " \t");
		if (*end) {
			*end = 0;
			arg = end + 1 + strspn(end + 1, " \t");
			for (end = arg + strlen(arg); end > arg && (end[-1] == ' ' || end[-1] == '\t'); )
				*--end = 0;
		}
		args[n++] = interp;
		/* Isolated (-I: no PYTHONPATH, no user site): the launcher imports the package installed with this
		 * front, and so writes images only that package's compiler made (__main__.py checks the flag). */
		const char *name = strrchr(interp, '/') ? strrchr(interp, '/') + 1 : interp;
		if (strncmp(name, "python", 6) == 0)
			args[n++] = "-I";
		if (arg && *arg)
			args[n++] = arg;
		args[n++] = (char *)path;
		for (int i = 1; i <= argc; i++) /* and the terminating NULL */
			args[n++] = argv[i];
		if (*interp)
			execv(interp, args);
	}
	execv(path, argv);
}

static _Noreturn void python(void)
{
	char self[PATH_MAX], *slash;
	struct stat me, py;
	const char *from = getenv("SANDBOXER_FROM_FRONT");
	size_t n = 0;
	if (install[0])
		n = (size_t)snprintf(self, sizeof self, "%s/sandboxer-py", install);
	else if ((slash = strrchr(orig_argv[0], '/')) && (size_t)(slash - orig_argv[0]) < sizeof self - 16) /* no /proc */
		n = (size_t)snprintf(self, sizeof self, "%.*s/sandboxer-py", (int)(slash - orig_argv[0]), orig_argv[0]);
	if (n == 0 || n >= sizeof self) {
		fprintf(stderr, "sandboxer: cannot find the Python part of sandboxer (no /proc/self/exe, no path in argv[0])\n");
		exit(125);
	}
	/* A broken install (sandboxer-py is this program, or a front again) must not loop forever: the launcher
	 * removes the variable at once, so finding it set means a front started a front. */
	if (from || (stat("/proc/self/exe", &me) == 0 && stat(self, &py) == 0 && me.st_dev == py.st_dev &&
		     me.st_ino == py.st_ino)) {
		fprintf(stderr, "sandboxer: %s is not the Python launcher (it started this program again): reinstall sandboxer\n", self);
		exit(125);
	}
	/* "Write the image I missed, for this install"; "-" (no /proc: no images) only marks the hand-over. */
	setenv("SANDBOXER_FROM_FRONT", install[0] ? install : "-", 1);
	orig_argv[0] = self;
	exec_script(self, orig_argv);
	fprintf(stderr, "sandboxer: cannot start the Python part of sandboxer (%s): %s\n", self, strerror(errno));
	exit(125);
}

/* ---- SHA-256 (FIPS 180-4), for the cache key and the freshness of extended profiles ------------ */

static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const unsigned char *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
	for (int i = 0; i < 64; i++) {
		t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
		t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
	}
	h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

/* The lowercase hex digest of data[0..len) into hex[65]. */
static void sha256_hex(const void *data, size_t len, char hex[65])
{
	uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	unsigned char tail[128] = {0};
	const unsigned char *p = data;
	size_t full = len & ~(size_t)63, rest = len - full, n = rest < 56 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (size_t i = 0; i < full; i += 64)
		sha256_block(h, p + i);
	memcpy(tail, p + full, rest);
	tail[rest] = 0x80;
	for (int i = 0; i < 8; i++)
		tail[n - 1 - i] = (unsigned char)(bits >> (8 * i));
	for (size_t i = 0; i < n; i += 64)
		sha256_block(h, tail + i);
	for (int i = 0; i < 8; i++)
		sprintf(hex + 8 * i, "%08x", h[i]);
}

/* ---- files: whole reads, and the cache's trust rules (sandboxer/cache.py) --------------------- */

/* Read a regular file of at most MAX_FILE bytes; malloc'd, NULL on any failure. */
static unsigned char *read_fd(int fd, size_t *len, struct stat *st)
{
	unsigned char *buf = NULL;
	size_t got = 0;
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size > MAX_FILE)
		return NULL;
	buf = malloc((size_t)st->st_size + 1);
	while (buf) {
		ssize_t n = read(fd, buf + got, (size_t)st->st_size + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (got += (size_t)n) > (size_t)st->st_size) {
			free(buf);
			return NULL; /* an error, or the file grew: let Python read it */
		}
		if (n == 0)
			break;
	}
	*len = got;
	return buf;
}

static unsigned char *read_file(const char *path, size_t *len)
{
	struct stat st;
	unsigned char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	buf = read_fd(fd, len, &st);
	close(fd);
	return buf;
}

/* cache.trusted_dir: `real` and every directory above it are ours or root's and not writable by
 * others (a sticky shared directory such as /tmp is fine above the entry's own). */
static int trusted_dir(const char *real)
{
	char d[PATH_MAX];
	uid_t uid = geteuid();
	snprintf(d, sizeof d, "%s", real);
	for (;;) {
		struct stat st;
		int own = strcmp(d, real) == 0;
		if (lstat(d, &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_uid != 0 && st.st_uid != uid))
			return 0;
		if ((st.st_mode & 022) && !((st.st_mode & S_ISVTX) && !own))
			return 0;
		if (strcmp(d, "/") == 0)
			return 1;
		char *slash = strrchr(d, '/');
		if (slash == d)
			slash[1] = 0;
		else
			*slash = 0;
	}
}

/* cache.read_trusted: the entry's bytes, or NULL (no entry, or one we must not trust). */
static unsigned char *read_trusted(const char *dir, const char *name, size_t *len)
{
	char real[PATH_MAX], path[PATH_MAX * 2];
	struct stat st;
	unsigned char *buf;
	int fd;
	if (!realpath(dir, real) || !trusted_dir(real))
		return NULL;
	snprintf(path, sizeof path, "%s/%s", real, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	buf = read_fd(fd, len, &st);
	close(fd);
	if (buf && (st.st_nlink != 1 || st.st_uid != geteuid() || (st.st_mode & 022) || *len == 0)) {
		free(buf);
		buf = NULL;
	}
	return buf;
}

/* ---- the launch image ------------------------------------------------------------------------ */

struct item { const unsigned char *p; uint32_t len; };

struct image {
	uint32_t uid, gid, flags, null_stdio;
	struct item input[MAX_ITEMS], pass[MAX_ITEMS], set[MAX_ITEMS], exec_grant[MAX_ITEMS];
	struct item ll_path[MAX_ITEMS], ll_port[MAX_ITEMS], rlimit[64];
	int n_input, n_pass, n_set, n_exec, n_path, n_port, n_rlimit;
	int has_landlock;
	uint32_t ll_abi, ll_size, ll_restrict_flags;
	uint64_t ll_fs, ll_net, ll_scoped, ll_file_only;
	struct item bpf;
};

static uint32_t u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int add(struct item *list, int *n, int max, const unsigned char *p, uint32_t len)
{
	if (*n >= max)
		return 0;
	list[*n].p = p, list[*n].len = len;
	return ++*n, 1;
}

static int nul(const unsigned char *p, uint32_t n) { return memchr(p, 0, n) != NULL; }

/* Parse (and bound-check) an image; 0 when it is not one this program understands. */
static int parse_image(const unsigned char *b, size_t len, struct image *im)
{
	size_t off = 24;
	memset(im, 0, sizeof *im);
	if (len < off || memcmp(b, MAGIC, 8) != 0)
		return 0;
	im->uid = u32(b + 8), im->gid = u32(b + 12), im->flags = u32(b + 16), im->null_stdio = u32(b + 20);
	while (off + 8 <= len) {
		uint32_t tag = u32(b + off), n = u32(b + off + 4);
		const unsigned char *p = b + off + 8;
		int ok = 1;
		if (n > len - off - 8)
			return 0;
		switch (tag) {
		/* Strings must hold no NUL: cut short, one would name another file. */
		case T_INPUT: ok = n > 66 && 66u + (p[64] | p[65] << 8) < n && !nul(p, 64) && !nul(p + 66, n - 66) &&
				   add(im->input, &im->n_input, MAX_ITEMS, p, n); break;
		case T_ENV_PASS: ok = !nul(p, n) && add(im->pass, &im->n_pass, MAX_ITEMS, p, n); break;
		case T_ENV_SET: ok = !nul(p, n) && memchr(p, '=', n) && add(im->set, &im->n_set, MAX_ITEMS, p, n); break;
		case T_EXEC_GRANT: ok = !nul(p, n) && add(im->exec_grant, &im->n_exec, MAX_ITEMS, p, n); break;
		case T_LANDLOCK:
			ok = n == 44;
			if (ok) {
				im->has_landlock = 1;
				im->ll_abi = u32(p), im->ll_size = u32(p + 4), im->ll_fs = u64(p + 8), im->ll_net = u64(p + 16);
				im->ll_scoped = u64(p + 24), im->ll_file_only = u64(p + 32), im->ll_restrict_flags = u32(p + 40);
			}
			break;
		case T_LL_PATH: ok = n > 8 && !nul(p + 8, n - 8) && add(im->ll_path, &im->n_path, MAX_ITEMS, p, n); break;
		case T_LL_PORT: ok = n == 16 && add(im->ll_port, &im->n_port, MAX_ITEMS, p, n); break;
		case T_RLIMIT: ok = n == 24 && add(im->rlimit, &im->n_rlimit, 64, p, n); break;
		case T_SECCOMP: ok = n > 0 && n % 8 == 0 && n / 8 <= BPF_MAXINSNS; im->bpf.p = p, im->bpf.len = n; break;
		default: ok = 0; /* a newer writer: not ours to guess */
		}
		if (!ok)
			return 0;
		off += 8 + n;
	}
	return off == len;
}

/* NUL-terminated copy of an item (images store strings without terminators). */
static char *str(struct item it)
{
	char *s = malloc(it.len + 1);
	if (s) {
		memcpy(s, it.p, it.len);
		s[it.len] = 0;
	}
	return s;
}

/* ---- what one run adds: options, environment, the command ------------------------------------ */

struct run {
	const char *source;
	char **command;
	const char *env_opts[MAX_ITEMS];
	int n_env_opts;
	int keep[MAX_ITEMS];
	int n_keep;
};

/* runner.parse_args for the options this program handles; 0 for anything else (Python parses it). */
static int parse_run(int argc, char **argv, struct run *r)
{
	memset(r, 0, sizeof *r);
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			r->command = argv + i + 1;
			break;
		}
		if (strcmp(a, "--env") == 0 || strcmp(a, "--keep-fd") == 0) {
			const char *v = i + 1 < argc ? argv[++i] : NULL;
			if (!v)
				return 0;
			if (a[2] == 'e') {
				if (r->n_env_opts >= MAX_ITEMS || !strchr(v, '=') || v[0] == '=')
					return 0;
				r->env_opts[r->n_env_opts++] = v;
			} else {
				long fd = 0;
				if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 9 || r->n_keep >= MAX_ITEMS)
					return 0; /* Python's isdigit() rule; anything else is its usage error */
				fd = strtol(v, NULL, 10);
				r->keep[r->n_keep++] = (int)fd;
			}
		} else if (a[0] == '-' && a[1]) {
			return 0;
		} else if (!r->source) {
			r->source = a;
		} else {
			r->command = argv + i;
			break;
		}
	}
	return r->source && r->command && r->command[0] && r->command[0][0];
}

/* An envp in the order Python builds its dict: passed names, then fixed values, then --env. */
struct env { char *entry[3 * MAX_ITEMS + 1]; int n; };

static void env_put(struct env *e, char *entry)
{
	size_t klen = strcspn(entry, "=");
	for (int i = 0; i < e->n; i++)
		if (strncmp(e->entry[i], entry, klen) == 0 && e->entry[i][klen] == '=') {
			e->entry[i] = entry;
			return;
		}
	e->entry[e->n++] = entry;
	e->entry[e->n] = NULL;
}

static int build_env(const struct image *im, const struct run *r, struct env *e)
{
	e->n = 0;
	e->entry[0] = NULL;
	for (int i = 0; i < im->n_pass; i++) {
		char *name = str(im->pass[i]), *v = name ? getenv(name) : NULL, *entry = NULL;
		if (!name)
			return 0;
		if (v) {
			if (!(entry = malloc(strlen(name) + strlen(v) + 2)))
				return free(name), 0;
			sprintf(entry, "%s=%s", name, v);
			env_put(e, entry);
		}
		free(name);
	}
	for (int i = 0; i < im->n_set; i++) {
		char *entry = str(im->set[i]);
		if (!entry)
			return 0;
		env_put(e, entry);
	}
	for (int i = 0; i < r->n_env_opts; i++)
		env_put(e, (char *)r->env_opts[i]);
	return 1;
}

static const char *env_get(const struct env *e, const char *name)
{
	size_t n = strlen(name);
	for (int i = 0; i < e->n; i++)
		if (strncmp(e->entry[i], name, n) == 0 && e->entry[i][n] == '=')
			return e->entry[i] + n + 1;
	return NULL;
}

/* command.exec_grants + ExecGrant.covers: is the real file under a path granted `execute`? */
static int exec_granted(const struct image *im, const char *real_file)
{
	if (!(im->flags & F_EXEC_CHECKED))
		return 1;
	for (int i = 0; i < im->n_exec; i++) {
		char *p = str(im->exec_grant[i]), real[PATH_MAX];
		int ok = p && realpath(p, real);
		free(p);
		if (!ok)
			continue;
		size_t n = strlen(real);
		while (n > 1 && real[n - 1] == '/')
			real[--n] = 0;
		if (strcmp(real_file, real) == 0 || (strncmp(real_file, real, n) == 0 && real_file[n] == '/') ||
		    strcmp(real, "/") == 0)
			return 1;
	}
	return 0;
}

/* command._kind == "ok": a regular file we may execute (following symlinks, as execve does). */
static int runnable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static int absolute(const char *path, char *out, size_t size);

/* command.resolve_command's successful outcomes; 0 for every failure (Python explains it). `out` is the path
 * execve gets, folded as paths.absolute() folds it (a #! interpreter sees it as its script's name). */
static int resolve(const struct image *im, const struct env *e, const char *name, char *out, size_t size)
{
	char cwd[PATH_MAX], real[PATH_MAX], cand[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return 0;
	if (strchr(name, '/')) {
		if ((size_t)snprintf(cand, sizeof cand, "%s%s%s", name[0] == '/' ? "" : cwd, name[0] == '/' ? "" : "/", name) >= sizeof cand)
			return 0;
		return runnable(cand) && realpath(cand, real) && exec_granted(im, real) && absolute(cand, out, size);
	}
	const char *search = env_get(e, "PATH");
	if (!search)
		search = getenv("PATH");
	if (!search)
		search = "/bin:/usr/bin"; /* os.defpath */
	for (const char *d = search;; d++) {
		size_t n = strcspn(d, ":");
		char dir[PATH_MAX];
		if (n >= sizeof dir)
			return 0;
		memcpy(dir, d, n);
		dir[n] = 0;
		if (!n)
			strcpy(dir, ".");
		if ((size_t)snprintf(cand, sizeof cand, "%s%s%s/%s", dir[0] == '/' ? "" : cwd, dir[0] == '/' ? "" : "/", dir, name) < sizeof cand &&
		    runnable(cand) && realpath(cand, real)) {
			/* Python stops at the first runnable candidate only when it is granted; an ungranted one
			 * earlier on PATH becomes its error message, so any such case is Python's to report. */
			return exec_granted(im, real) && absolute(cand, out, size);
		}
		d += n;
		if (!*d)
			return 0;
	}
}

/* runner._is_wasm: a regular file starting with \0asm is Python's (the wasm host). */
static int is_wasm(const char *path)
{
	char magic[4];
	struct stat st;
	int fd, wasm = 0;
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return 0;
	wasm = read(fd, magic, 4) == 4 && memcmp(magic, "\0asm", 4) == 0;
	close(fd);
	return wasm;
}

/* ---- the child: launch/sequence.py run_child, one line per step ------------------------------ */

struct prepared {
	int err_fd, devnull_fd, landlock_fd, cap_last_cap;
	const char *exe;
	char **argv, **envp;
	const struct image *im;
	const struct run *r;
	struct sock_fprog prog;
};

static int write_proc(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ok;
	if (fd < 0)
		return -1;
	ok = write(fd, data, strlen(data)) == (ssize_t)strlen(data);
	close(fd);
	return ok ? 0 : -1;
}

static int close_fds(const struct prepared *p)
{
	int keep[MAX_ITEMS + 2], n = 0, lo = 3;
	keep[n++] = p->err_fd;
	if (p->landlock_fd >= 0)
		keep[n++] = p->landlock_fd;
	for (int i = 0; i < p->r->n_keep; i++)
		keep[n++] = p->r->keep[i];
	for (;;) { /* close the gaps between kept fds, lowest first */
		int next = INT_MAX;
		for (int i = 0; i < n; i++)
			if (keep[i] >= lo && keep[i] < next)
				next = keep[i];
		if (next == INT_MAX)
			return (int)syscall(SYS_close_range, lo, ~0U, 0);
		if (next > lo && syscall(SYS_close_range, lo, next - 1, 0) != 0)
			return -1;
		lo = next + 1;
	}
}

static int keep_inheritable(const struct prepared *p)
{
	for (int i = 0; i < p->r->n_keep; i++)
		if (p->r->keep[i] > 2 && fcntl(p->r->keep[i], F_SETFD, 0) != 0)
			return -1;
	return 0;
}

static int enter_netns(const struct prepared *p)
{
	uint32_t f = p->im->flags;
	char map[64];
	if (!(f & F_NETNS))
		return 0;
	if (f & F_ROOTLESS) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0 || write_proc("/proc/self/setgroups", "deny") != 0)
			return -1;
		snprintf(map, sizeof map, "%u %u 1", p->im->uid, p->im->uid);
		if (write_proc("/proc/self/uid_map", map) != 0)
			return -1;
		snprintf(map, sizeof map, "%u %u 1", p->im->gid, p->im->gid);
		if (write_proc("/proc/self/gid_map", map) != 0)
			return -1;
	} else if (unshare(CLONE_NEWNET) != 0) {
		return -1;
	}
	if (f & F_LOOPBACK) {
		struct ifreq ifr = {0};
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = -1;
		if (fd < 0)
			return -1;
		strcpy(ifr.ifr_name, "lo");
		if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
			ifr.ifr_flags |= IFF_UP;
			ret = ioctl(fd, SIOCSIFFLAGS, &ifr);
		}
		close(fd);
		return ret;
	}
	return 0;
}

static int set_rlimits(const struct prepared *p)
{
	for (int i = 0; i < p->im->n_rlimit; i++) {
		const unsigned char *b = p->im->rlimit[i].p;
		struct rlimit rl = {u64(b + 8), u64(b + 16)};
		if (setrlimit((int)u32(b), &rl) != 0)
			return -1;
	}
	return 0;
}

static int drop_capabilities(const struct prepared *p)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2] = {{0}};
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		return -1;
	if (p->im->flags & F_DROP_BOUNDING)
		for (int cap = 0; cap <= p->cap_last_cap; cap++)
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
				return -1;
	return (int)syscall(SYS_capset, &hdr, data);
}

static int reset_signals(void)
{
	sigset_t none;
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL); /* glibc refuses its two internal RT signals: as in kernel.py */
	sigemptyset(&none);
	return sigprocmask(SIG_SETMASK, &none, NULL);
}

static _Noreturn void run_child(const struct prepared *p, pid_t parent)
{
	int step, ok;
	uint32_t null = p->im->null_stdio;
	/* Each line: the step, then the call; `ok` false sends "step errno" to the parent. */
	step = SETSID;       ok = setsid() >= 0;
	if (ok) { step = PDEATHSIG;    ok = prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0;
	          if (ok && getppid() != parent) _exit(125); } /* the launcher is already gone */
	if (ok) { step = SIGNALS;      ok = reset_signals() == 0; }
	if (ok) { step = ENVIRONMENT;  ok = 1; } /* built by the parent: granted variables + --env */
	if (ok) { step = STDIO;        for (int fd = 0; ok && fd < 3; fd++) if (null >> fd & 1) ok = dup2(p->devnull_fd, fd) == fd; }
	if (ok) { step = CLOSE_FDS;    ok = close_fds(p) == 0 && keep_inheritable(p) == 0; }
	if (ok) { step = NETNS;        ok = enter_netns(p) == 0; }
	if (ok) { step = RLIMITS;      ok = set_rlimits(p) == 0; }
	if (ok) { step = CAPS;         ok = drop_capabilities(p) == 0; }
	if (ok) { step = NO_NEW_PRIVS; ok = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0; }
	if (ok) { step = LANDLOCK;     ok = p->landlock_fd < 0 || syscall(SYS_landlock_restrict_self, p->landlock_fd, p->im->ll_restrict_flags) == 0; }
	if (ok) { step = SECCOMP;      ok = !p->prog.len || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p->prog) == 0; }
	if (ok) { step = EXECVE;       execve(p->exe, p->argv, p->envp); ok = 0; }
	char report[32];
	int n = snprintf(report, sizeof report, "%d %d", step, errno);
	if (write(p->err_fd, report, (size_t)n) < 0) { /* the parent is gone: nothing left to tell */ }
	_exit(125);
}

/* ---- the parent: prepare, fork, forward signals, reap ---------------------------------------- */

static volatile pid_t workload;
static volatile sig_atomic_t forwarded; /* the last signal forwarded: a failed attempt must not swallow it */

static void forward(int sig)
{
	int saved = errno;
	forwarded = sig;
	if (workload > 0 && killpg(workload, sig) != 0) /* before its setsid() the group is not there yet */
		kill(workload, sig);
	errno = saved;
}

static const int FORWARDED[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

/* Landlock's ruleset, every rule added: the fd, or -1 when anything fails (Python then says why). */
static int prepare_landlock(const struct image *im)
{
	uint64_t attr[3] = {im->ll_fs, im->ll_net, im->ll_scoped}; /* struct landlock_ruleset_attr */
	int fd;
	if (im->ll_size > sizeof attr)
		return -1;
	fd = (int)syscall(SYS_landlock_create_ruleset, attr, im->ll_size, 0);
	if (fd < 0)
		return -1;
	for (int i = 0; i < im->n_path; i++) {
		struct ll_path_beneath rule;
		struct stat st;
		char *path = str((struct item){im->ll_path[i].p + 8, im->ll_path[i].len - 8});
		int pfd = path ? open(path, O_PATH | O_CLOEXEC) : -1, ok;
		free(path);
		if (pfd < 0 || fstat(pfd, &st) != 0)
			goto fail;
		rule.allowed_access = u64(im->ll_path[i].p) & im->ll_fs;
		if (!S_ISDIR(st.st_mode))
			rule.allowed_access &= im->ll_file_only; /* directory-only rights on a file: EINVAL */
		rule.parent_fd = pfd;
		ok = !rule.allowed_access || syscall(SYS_landlock_add_rule, fd, LL_RULE_PATH_BENEATH, &rule, 0) == 0;
		close(pfd);
		if (!ok)
			goto fail;
	}
	for (int i = 0; im->ll_net && i < im->n_port; i++) {
		struct ll_net_port rule = {u64(im->ll_port[i].p) & im->ll_net, u64(im->ll_port[i].p + 8)};
		if (rule.allowed_access && syscall(SYS_landlock_add_rule, fd, LL_RULE_NET_PORT, &rule, 0) != 0)
			goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

static int read_int_file(const char *path, int fallback)
{
	char buf[32] = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC), n = -1;
	if (fd >= 0) {
		n = (int)read(fd, buf, sizeof buf - 1);
		close(fd);
	}
	return n > 0 ? atoi(buf) : fallback;
}

/* paths.absolute(): `path` from the current directory, "." and "//" folded, ".." and symlinks kept (they
 * decide what a relative `extends:` names, so the image key is this, not the real path). 0 if too long. */
static int absolute(const char *path, char *out, size_t size)
{
	char joined[PATH_MAX * 2];
	size_t n = 0, used;
	if (strlen(path) >= PATH_MAX) /* the kernel would say ENAMETOOLONG: let Python say it */
		return 0;
	if (path[0] == '/')
		strcpy(joined, path);
	else if (!getcwd(joined, PATH_MAX))
		return 0;
	else if (used = strlen(joined), (size_t)snprintf(joined + used, sizeof joined - used, "/%s", path) >= sizeof joined - used)
		return 0;
	for (char *part = strtok(joined, "/"); part; part = strtok(NULL, "/")) {
		size_t len = strlen(part);
		if (strcmp(part, ".") == 0)
			continue;
		if (n + 1 + len + 1 > size)
			return 0;
		out[n++] = '/';
		memcpy(out + n, part, len);
		n += len;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = 0;
	return 1;
}

/* The image for this manifest, checked fresh and made for this user and host; NULL otherwise. */
static unsigned char *load_image(const char *source, struct image *im)
{
	char typed[PATH_MAX], sha[65], key[65], dir[PATH_MAX], text[PATH_MAX * 3 + 256];
	const char *base = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	unsigned char *manifest, *image;
	size_t len, ilen;
	if (!ARCH[0] || !install[0] || !absolute(source, typed, sizeof typed) || !(manifest = read_file(source, &len)))
		return NULL; /* the manifest is read as typed, as Python reads it ("m.yaml/" is not m.yaml) */
	sha256_hex(manifest, len, sha);
	free(manifest);
	/* The typed name too: the plan's manifest locations ("at", in messages) are written with it. */
	int n = snprintf(text, sizeof text, "%d%c%s%c%s%c%s%c%s%c%s%c%s%c%s", IMAGE_FORMAT, 0, SANDBOXER_VERSION, 0,
			 SANDBOXER_BUILD, 0, install, 0, ARCH, 0, typed, 0, source, 0, sha);
	if (n < 0 || (size_t)n >= sizeof text)
		return NULL;
	sha256_hex(text, (size_t)n, key);
	key[32] = 0;
	if (base && *base)
		n = snprintf(dir, sizeof dir, "%s/sandboxer/images", base);
	else if (home && *home)
		n = snprintf(dir, sizeof dir, "%s/.cache/sandboxer/images", home);
	else
		return NULL;
	if (n < 0 || (size_t)n >= sizeof dir)
		return NULL;
	if (!(image = read_trusted(dir, key, &ilen)))
		return NULL;
	if (!parse_image(image, ilen, im) || im->uid != geteuid() || im->gid != getegid())
		goto stale;
	for (int i = 0; i < im->n_input; i++) { /* cache.fresh(): every file compiled, as it was */
		const unsigned char *p = im->input[i].p;
		uint32_t dlen = (uint32_t)(p[64] | p[65] << 8);
		char *dir_wanted = str((struct item){p + 66, dlen}), *path = str((struct item){p + 66 + dlen, im->input[i].len - 66 - dlen});
		char digest[65], parent[PATH_MAX], real_dir[PATH_MAX], *slash;
		unsigned char *data = path ? read_file(path, &len) : NULL;
		int same = 0;
		if (data) {
			sha256_hex(data, len, digest);
			free(data);
			snprintf(parent, sizeof parent, "%s", path);
			slash = strrchr(parent, '/');
			if (slash == parent)
				slash[1] = 0;
			else if (slash)
				*slash = 0;
			same = slash && dir_wanted && memcmp(digest, p, 64) == 0 && realpath(parent, real_dir) &&
			       strcmp(real_dir, dir_wanted) == 0;
		}
		free(path);
		free(dir_wanted);
		if (!same)
			goto stale;
	}
	if (im->has_landlock && syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION) != im->ll_abi)
		goto stale; /* another kernel: Python probes it and decides again */
	return image;
stale:
	free(image);
	return NULL;
}

/* launch.run._rlimits lowers a hard limit a rootless user cannot raise, with a warning: Python's case. */
static int rlimits_fit(const struct image *im)
{
	if (!(im->flags & F_ROOTLESS))
		return 1;
	for (int i = 0; i < im->n_rlimit; i++) {
		const unsigned char *b = im->rlimit[i].p;
		struct rlimit cur;
		uint64_t hard = u64(b + 16);
		if (getrlimit((int)u32(b), &cur) != 0)
			return 0;
		if (cur.rlim_max != RLIM_INFINITY && (hard == RLIM_INFINITY || hard > cur.rlim_max))
			return 0;
	}
	return 1;
}

/* Wait for the workload, then take its process group down with it (background processes it left
 * behind end with the sandbox, as in supervise.py): waitid(WNOWAIT) first, so that the group id
 * cannot be reused before killpg. The exit code, or 128+n for signal n. */
static int reap(pid_t pid)
{
	siginfo_t info;
	int status = 0;
	while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) < 0 && errno == EINTR)
		;
	killpg(pid, SIGKILL);
	workload = 0; /* once reaped, the pid may be reused: forward nothing to it */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* A fast `sandboxer run`; returns only when Python must do it (nothing has run yet). */
static void run_image(int argc, char **argv)
{
	struct run r;
	struct image im;
	struct env env;
	struct prepared p = {.devnull_fd = -1, .landlock_fd = -1};
	char exe[PATH_MAX], report[64];
	struct sigaction sa = {.sa_handler = forward}, old[4];
	sigset_t block, prev;
	int pipefd[2];
	ssize_t n;
	pid_t pid, self;

	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0) /* a closed 0-2 would be reused by /dev/null or the report pipe */
			return;
	if (!parse_run(argc, argv, &r) || is_wasm(r.command[0]))
		return;
	signal(SIGCHLD, SIG_DFL); /* inherited SIG_IGN would reap the workload before we read its status */
	for (int i = 0; i < r.n_keep; i++) {
		struct stat st;
		if (fstat(r.keep[i], &st) != 0)
			return;
	}
	if (!load_image(r.source, &im) || !rlimits_fit(&im))
		return;
	if (!build_env(&im, &r, &env) || !resolve(&im, &env, r.command[0], exe, sizeof exe))
		return;
	if (im.null_stdio && (p.devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
		return;
	if (im.has_landlock && (p.landlock_fd = prepare_landlock(&im)) < 0)
		return;
	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return;
	p.err_fd = pipefd[1], p.exe = exe, p.argv = r.command, p.envp = env.entry, p.im = &im, p.r = &r;
	p.cap_last_cap = read_int_file("/proc/sys/kernel/cap_last_cap", 40);
	p.prog.len = (unsigned short)(im.bpf.len / 8);
	p.prog.filter = (struct sock_filter *)im.bpf.p; /* the kernel copies it byte-wise: alignment does not matter */

	/* Forwarded signals wait, blocked, until the pid is known; the child resets them first thing. */
	sigemptyset(&block);
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 4; i++)
		sigaddset(&block, FORWARDED[i]);
	sigprocmask(SIG_BLOCK, &block, &prev);
	for (int i = 0; i < 4; i++)
		sigaction(FORWARDED[i], &sa, &old[i]);
	self = getpid();
	pid = fork();
	if (pid == 0)
		run_child(&p, self);
	close(pipefd[1]);
	if (pid > 0) {
		workload = pid;
		sigprocmask(SIG_SETMASK, &prev, NULL);
		while ((n = read(pipefd[0], report, sizeof report)) < 0 && errno == EINTR)
			;
		if (n <= 0) /* EOF: execve happened (a read error cannot be a report: wait as well) */
			exit(reap(pid));
		reap(pid); /* the child failed before execve: Python runs it again and explains */
	}
	workload = 0;
	for (int i = 0; i < 4; i++)
		sigaction(FORWARDED[i], &old[i], NULL);
	sigprocmask(SIG_SETMASK, &prev, NULL);
	close(pipefd[0]);
	if (forwarded) /* the user asked to stop while the attempt failed: do that, rather than start again */
		raise(forwarded); /* under their own disposition: an ignored signal lets the hand-over go on */
}

int main(int argc, char **argv)
{
	if (argc < 1) { /* execve with an empty argv (kernels before 5.18 allow it) */
		fputs("sandboxer: started without argv[0]\n", stderr);
		return 125;
	}
	orig_argv = argv;
	ssize_t n = readlink("/proc/self/exe", install, sizeof install - 16);
	char *slash = n > 0 && (size_t)n < sizeof install - 16 ? memrchr(install, '/', (size_t)n) : NULL; /* not cut */
	if (slash && slash != install)
		*slash = 0;
	else
		install[0] = 0;
	if (argc > 2 && strcmp(argv[1], "run") == 0)
		run_image(argc, argv);
	python();
}
