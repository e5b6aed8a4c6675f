/* fixture_file.h - the PyTorch fixture files of the training tests
 * (tools/make_fixtures.py, tools/make_cnn_fixtures.py and
 * tools/make_rnn_fixtures.py write them; their docstrings document the
 * format). A file is lines "KEY VALUE" (a configuration value) and
 * "tensor NAME COUNT V1 V2 ..." (float64 values); '#' starts a comment
 * line. Used by test_optim_fixtures.c, test_cnn_fixtures.c and
 * test_rnn_fixtures.c (and their _f64 twins). */
#ifndef BP_FIXTURE_FILE_H
#define BP_FIXTURE_FILE_H

#include <backprop.h>

#define FX_MAX_ITEMS 128

typedef struct fx_item {
    char *key;      /* config key, or tensor name */
    char *text;     /* config value (rest of the line); NULL for a tensor */
    double *v;      /* tensor values */
    long n;
    int used;       /* for the caller: e.g. matched by a network tensor */
} fx_item;

typedef struct fixture {
    int n_items;
    fx_item items[FX_MAX_ITEMS];
} fixture;

/* Parse one file; on failure prints why (path:line) and returns 0. */
int fixture_read(fixture *f, const char *path);
void fixture_free(fixture *f);
/* The config value (tensor 0) or tensor (tensor 1) named key, or NULL. */
fx_item *fx_find(fixture *f, const char *key, int tensor);
/* A config value; records a failed CHECK (and returns "0") when missing. */
const char *fx_text(fixture *f, const char *name, const char *key);
/* A config value as a number; a failed CHECK when missing or not a number. */
double fx_num(fixture *f, const char *name, const char *key);
/* Tensor `key` with n values (n < 0: any count); NULL (a failed CHECK)
 * when missing or of another count. */
fx_item *fx_tensor(fixture *f, const char *name, const char *key, long n);
/* The training configuration of the fixture: optimizer, loss, schedule and
 * every numeric setting torch used, no shuffling (a failed CHECK for a
 * missing or unparsable one). */
void fx_train_config(fixture *f, const char *name, bp_train_config *cfg);
/* Run `run` on every DIR/NAME.txt in name order (NAME without ".txt");
 * an unreadable file is a failed CHECK. Returns how many files it found,
 * -1 (a failed CHECK) when DIR cannot be opened. */
int fx_each(const char *dir, void (*run)(const char *name, fixture *f));

/* |a - b| / max(|b|, floor); NaN counts as the worst (infinity). */
double fx_rel_err(double a, double b, double floor);
/* ||a - b|| / ||b|| over n values (||b|| 0: the absolute norm); NaN counts
 * as the worst. */
double fx_norm_err(const bp_real *a, const double *b, long n);
/* Config value `key` as a shape "D1 D2 ..." (rank 1..3): a failed CHECK
 * and rank 0 when malformed. */
bp_shape fx_shape(fixture *f, const char *name, const char *key);

#endif
