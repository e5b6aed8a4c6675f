/* fixture_file.c - the fixture files of the training tests (see
 * fixture_file.h). */
#include "fixture_file.h"

#include "check.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fixture_free(fixture *f)
{
    for (int i = 0; i < f->n_items; i++) {
        free(f->items[i].key);
        free(f->items[i].text);
        free(f->items[i].v);
    }
    f->n_items = 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int fixture_read(fixture *f, const char *path)
{
    FILE *fp = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, ok = 1;
    f->n_items = 0;
    if (!fp) {
        fprintf(stderr, "%s: cannot open\n", path);
        return 0;
    }
    while (ok && (len = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        if (f->n_items == FX_MAX_ITEMS) {
            fprintf(stderr, "%s:%d: too many items\n", path, lineno);
            ok = 0;
            break;
        }
        fx_item *it = &f->items[f->n_items];
        memset(it, 0, sizeof *it);
        char *sp = strchr(line, ' ');
        if (!sp) {
            fprintf(stderr, "%s:%d: expected 'KEY VALUE'\n", path, lineno);
            ok = 0;
            break;
        }
        *sp = '\0';
        if (strcmp(line, "tensor") == 0) {
            char *p = sp + 1, *end;
            char *name_end = strchr(p, ' ');
            if (!name_end) {
                fprintf(stderr, "%s:%d: tensor without a count\n", path, lineno);
                ok = 0;
                break;
            }
            *name_end = '\0';
            it->key = dup_str(p);
            p = name_end + 1;
            it->n = strtol(p, &end, 10);
            if (end == p || it->n < 0 || it->n > 10000000) {
                fprintf(stderr, "%s:%d: bad tensor count\n", path, lineno);
                ok = 0;
                free(it->key);
                break;
            }
            it->v = malloc((size_t)(it->n ? it->n : 1) * sizeof(double));
            p = end;
            for (long i = 0; it->v && i < it->n; i++) {
                it->v[i] = strtod(p, &end);
                if (end == p) {
                    fprintf(stderr, "%s:%d: tensor %s: %ld values, expected %ld\n",
                            path, lineno, it->key, i, it->n);
                    ok = 0;
                    break;
                }
                p = end;
            }
        } else {
            it->key = dup_str(line);
            it->text = dup_str(sp + 1);
        }
        f->n_items++;
        if (!it->key || (!it->text && !it->v)) {
            fprintf(stderr, "%s:%d: out of memory\n", path, lineno);
            ok = 0;
        }
    }
    free(line);
    fclose(fp);
    if (!ok) fixture_free(f);
    return ok;
}

fx_item *fx_find(fixture *f, const char *key, int tensor)
{
    for (int i = 0; i < f->n_items; i++)
        if (strcmp(f->items[i].key, key) == 0 && (f->items[i].v != NULL) == tensor)
            return &f->items[i];
    return NULL;
}

const char *fx_text(fixture *f, const char *name, const char *key)
{
    const fx_item *it = fx_find(f, key, 0);
    CHECK(it != NULL, "%s: missing key '%s'", name, key);
    return it ? it->text : "0";
}

double fx_num(fixture *f, const char *name, const char *key)
{
    const char *s = fx_text(f, name, key);
    char *end;
    double v = strtod(s, &end);
    CHECK(end != s && *end == '\0', "%s: key '%s': bad number '%s'", name, key, s);
    return v;
}

fx_item *fx_tensor(fixture *f, const char *name, const char *key, long n)
{
    fx_item *it = fx_find(f, key, 1);
    CHECK(it != NULL, "%s: missing tensor '%s'", name, key);
    if (it && n >= 0) {
        CHECK(it->n == n, "%s: tensor '%s' has %ld values, expected %ld", name, key,
              it->n, n);
        if (it->n != n) return NULL;
    }
    return it;
}

void fx_train_config(fixture *f, const char *name, bp_train_config *cfg)
{
    bp_error err;
    bp_optimizer opt = BP_SGD;
    bp_loss loss = BP_LOSS_MSE;
    bp_schedule sched = BP_SCHED_CONSTANT;
    memset(&err, 0, sizeof err);
    CHECK(bp_optimizer_parse(fx_text(f, name, "optimizer"), &opt, &err) == BP_OK,
          "%s: %s", name, err.message);
    CHECK(bp_loss_parse(fx_text(f, name, "loss"), &loss, &err) == BP_OK, "%s: %s",
          name, err.message);
    CHECK(bp_schedule_parse(fx_text(f, name, "schedule"), &sched, &err) == BP_OK,
          "%s: %s", name, err.message);
    bp_train_config_default(cfg, opt);
    cfg->loss = loss;
    cfg->schedule = sched;
    cfg->lr = fx_num(f, name, "lr");
    cfg->momentum = fx_num(f, name, "momentum");
    cfg->dampening = fx_num(f, name, "dampening");
    cfg->beta1 = fx_num(f, name, "beta1");
    cfg->beta2 = fx_num(f, name, "beta2");
    cfg->eps = fx_num(f, name, "eps");
    cfg->alpha = fx_num(f, name, "alpha");
    cfg->lr_decay = fx_num(f, name, "lr_decay");
    cfg->weight_decay = fx_num(f, name, "weight_decay");
    cfg->l1 = fx_num(f, name, "l1");
    cfg->l2 = fx_num(f, name, "l2");
    cfg->clip_value = fx_num(f, name, "clip_value");
    cfg->clip_norm = fx_num(f, name, "clip_norm");
    cfg->warmup = (int)fx_num(f, name, "warmup");
    cfg->step_size = (int)fx_num(f, name, "step_size");
    cfg->gamma = fx_num(f, name, "gamma");
    cfg->min_lr = fx_num(f, name, "min_lr");
    cfg->total_steps = (long)fx_num(f, name, "total_steps");
    cfg->freeze = (int)fx_num(f, name, "freeze");
    cfg->shuffle = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int fx_each(const char *dir, void (*run)(const char *name, fixture *f))
{
    char *names[256];
    int n = 0;
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot open fixture directory %s", dir);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".txt") == 0) {
            names[n] = dup_str(e->d_name);
            if (names[n]) n++;
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++) {
        char path[4096];
        fixture *f = malloc(sizeof *f);
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        names[i][strlen(names[i]) - 4] = '\0';
        if (!f || !fixture_read(f, path)) {
            CHECK(0, "%s: unreadable fixture", path);
        } else {
            run(names[i], f);
            fixture_free(f);
        }
        free(f);
        free(names[i]);
    }
    return n;
}

double fx_rel_err(double a, double b, double floor)
{
    double s = fabs(b) > floor ? fabs(b) : floor;
    double e = fabs(a - b) / s;
    return e == e ? e : INFINITY;
}

double fx_norm_err(const bp_real *a, const double *b, long n)
{
    double d2 = 0, b2 = 0;
    for (long q = 0; q < n; q++) {
        d2 += ((double)a[q] - b[q]) * ((double)a[q] - b[q]);
        b2 += b[q] * b[q];
    }
    double e = sqrt(d2 / (b2 > 0 ? b2 : 1));
    return e == e ? e : INFINITY;
}

bp_shape fx_shape(fixture *f, const char *name, const char *key)
{
    bp_shape shape;
    memset(&shape, 0, sizeof shape);
    const char *s = fx_text(f, name, key);
    char *end;
    while (shape.rank < BP_MAX_RANK) {
        long d = strtol(s, &end, 10);
        if (end == s) break;
        shape.dim[shape.rank++] = (int)d;
        s = end;
    }
    while (*s == ' ') s++;
    if (*s != '\0' || shape.rank == 0) {
        CHECK(0, "%s: %s '%s' is not a shape", name, key, fx_text(f, name, key));
        shape.rank = 0;
    }
    return shape;
}
