/*
 * mem.c - how much memory the process may use, and the check made before
 * every large allocation (networks, trainers, workspaces, model files).
 *
 * Why a check at all: Linux overcommits, so malloc of 40 GiB on a 23 GiB
 * machine succeeds and the process is killed by the OOM killer (exit 137,
 * no message) when the memory is first touched. Computing the size first
 * and comparing it with what the machine has turns that into one readable
 * BP_ENOMEM.
 *
 * What "available" means (the first limit that does not fit is reported):
 *   - physical memory (sysconf(_SC_PHYS_PAGES) * page size): the total,
 *     not what is free now. Free memory changes from second to second and
 *     the kernel reclaims caches; a request above the total can never be
 *     served without swapping to a halt. Compared with everything the
 *     object will hold (`total`);
 *   - the address-space limit (RLIMIT_AS, `ulimit -v`) less what the
 *     process maps already (/proc/self/statm);
 *   - the cgroup memory limit (v2 memory.max less memory.current, or v1
 *     memory.limit_in_bytes less memory.usage_in_bytes) when one is set.
 * The last two are compared with the bytes still to allocate (`fresh`),
 * since what is allocated already is counted in their "used" side.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

uint64_t bp_mul_sat(uint64_t a, uint64_t b)
{
    if (a && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

uint64_t bp_add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* One unsigned decimal number from a small file; 0 when absent or "max". */
static int read_u64_file(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    char buf[64];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (buf[0] < '0' || buf[0] > '9') return 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    *out = (uint64_t)v;
    return 1;
}

/* The cgroup memory limit and usage, if a limit is set. */
static int cgroup_limit(uint64_t *limit, uint64_t *usage)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return 0;
    char line[1024], v2[1024] = "", v1[1024] = "";
    int have_v2 = 0, have_v1 = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "0::", 3)) {
            snprintf(v2, sizeof v2, "%s", line + 3);
            have_v2 = 1;
        } else {
            char *c = strchr(line, ':');
            if (c && !strncmp(c + 1, "memory:", 7)) {
                snprintf(v1, sizeof v1, "%s", c + 8);
                have_v1 = 1;
            }
        }
    }
    fclose(f);
    char p[1200], q[1200];
    /* The process's own group, then the root of the mount (in a container
     * the group path is often not visible). */
    for (int root = 0; root < 2; root++) {
        if (have_v1) {
            snprintf(p, sizeof p, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", root ? "" : v1);
            snprintf(q, sizeof q, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", root ? "" : v1);
            /* v1 says "no limit" with a huge number (about 2^63). */
            if (read_u64_file(p, limit) && *limit < ((uint64_t)1 << 62)) {
                if (!read_u64_file(q, usage)) *usage = 0;
                return 1;
            }
        }
        if (have_v2) {
            snprintf(p, sizeof p, "/sys/fs/cgroup%s/memory.max", root ? "" : v2);
            snprintf(q, sizeof q, "/sys/fs/cgroup%s/memory.current", root ? "" : v2);
            if (read_u64_file(p, limit)) {
                if (!read_u64_file(q, usage)) *usage = 0;
                return 1;
            }
        }
    }
    return 0;
}

static void fmt_bytes(char *buf, size_t size, uint64_t b)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (b == UINT64_MAX) {
        snprintf(buf, size, "more than 16 EiB");
        return;
    }
    if (b < 1024) {
        snprintf(buf, size, "%llu bytes", (unsigned long long)b);
        return;
    }
    double v = (double)b / 1024;
    int u = 0;
    while (v >= 1024 && u < 5) v /= 1024, u++;
    snprintf(buf, size, "%.1f %s", v, unit[u]);
}

bp_status bp_mem_check(uint64_t total, uint64_t fresh, const char *subject, const char *detail,
                       bp_error *err)
{
    char need[48], have[48];
    const char *what = NULL;
    uint64_t left = 0;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0) {
        uint64_t phys = bp_mul_sat((uint64_t)pages, (uint64_t)psize);
        if (total > phys) {
            what = "this machine has";
            left = phys;
        }
    }
    struct rlimit rl;
    if (!what && getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        uint64_t mapped = 0, vm_pages = 0;
        FILE *f = fopen("/proc/self/statm", "re");
        if (f) {
            unsigned long long vp = 0;
            if (fscanf(f, "%llu", &vp) == 1) vm_pages = vp;
            fclose(f);
        }
        mapped = psize > 0 ? bp_mul_sat(vm_pages, (uint64_t)psize) : 0;
        uint64_t lim = (uint64_t)rl.rlim_cur;
        uint64_t as_left = lim > mapped ? lim - mapped : 0;
        if (fresh > as_left) {
            what = "the address-space limit (ulimit -v) leaves";
            left = as_left;
        }
    }
    uint64_t cg_lim, cg_use;
    if (!what && cgroup_limit(&cg_lim, &cg_use)) {
        uint64_t cg_left = cg_lim > cg_use ? cg_lim - cg_use : 0;
        if (fresh > cg_left) {
            what = "the cgroup memory limit leaves";
            left = cg_left;
        }
    }
    if (!what) return BP_OK;
    fmt_bytes(need, sizeof need, total);
    fmt_bytes(have, sizeof have, left);
    if (detail && *detail)
        return bp_fail(err, BP_ENOMEM, "%s needs %s (%s); %s %s", subject, need, detail, what, have);
    return bp_fail(err, BP_ENOMEM, "%s needs %s; %s %s", subject, need, what, have);
}

bp_status bp_memory_check(uint64_t bytes, const char *subject, const char *detail, bp_error *err)
{
    return bp_mem_check(bytes, bytes, subject ? subject : "this operation", detail, err);
}
