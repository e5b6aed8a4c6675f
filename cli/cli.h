/*
 * cli.h - shared declarations of the `backprop` command-line tool.
 *
 * The tool uses only the public header backprop.h (and cJSON for JSON).
 * Conventions of every command:
 *   - results go to stdout, progress and messages to stderr;
 *   - an error is exactly one line "backprop: ..." on stderr;
 *   - exit status: 0 success, 1 failure (data, files, training),
 *     2 usage error (unknown option, bad option value), 130 interrupted;
 *   - nothing is written when a command fails.
 */
#ifndef BP_CLI_H
#define BP_CLI_H

#include "backprop.h"

#include <stdio.h>

#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 2
#define CLI_INTERRUPTED 130

/* ---- commands (one file each) ---- */
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_gradcheck(int argc, char **argv);
int cmd_generate(int argc, char **argv);     /* text.c */
int cmd_export(int argc, char **argv);       /* cmd_export.c */

/* ---- usage texts (usage.c) ---- */
extern const char *const usage_main;
extern const char *const usage_train;
extern const char *const usage_eval;
extern const char *const usage_predict;
extern const char *const usage_info;
extern const char *const usage_gradcheck;
extern const char *const usage_generate;
extern const char *const usage_export;

/* ---- messages (util.c) ---- */
/* Print "backprop: MESSAGE" and a newline on stderr; returns `status`. */
int cli_fail(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- option parsing (util.c) ---- */
/* One option of a command: `name` is the long form ("--lr"), `alias` an
 * optional short form ("-o"), `arg` 1 when the option takes a value. */
typedef struct cli_opt {
    const char *name;
    const char *alias;
    int arg;
} cli_opt;

typedef struct cli_parser {
    const char *cmd;        /* "train", for messages */
    int argc;
    char **argv;
    int i;                  /* next argv index */
    int only_positional;    /* after "--" */
} cli_parser;

#define CLI_ARG_END (-1)        /* no more arguments */
#define CLI_ARG_POSITIONAL (-2) /* *value is a positional argument */
#define CLI_ARG_ERROR (-3)      /* message printed; exit with CLI_USAGE */

/* Next argument: the index of the option in `opts` (terminated by a NULL
 * name) with *value set for options that take one, or one of CLI_ARG_*.
 * Accepts "--name value", "--name=value", "-o value" and "--" to end the
 * options. */
int cli_next(cli_parser *p, const cli_opt *opts, const char **value);

/* Number parsers for option values: on failure print
 * "backprop: OPT: 'TEXT' is not ..." and return CLI_USAGE; else 0. */
int cli_double(const char *opt, const char *text, double lo, double hi, double *out);
int cli_int(const char *opt, const char *text, long lo, long hi, int *out);
int cli_u64(const char *opt, const char *text, uint64_t *out);
/* A per-sample shape C,H,W | T,F | F (positive integers, the whole text). */
int cli_shape(const char *opt, const char *text, bp_shape *out);

/* Pick `text` among `names` (NULL-terminated); CLI_USAGE with a message
 * listing the choices when it is none of them. */
int cli_choice(const char *opt, const char *text, const char *const *names, int *out);

/* --precision f32|bf16 (train, eval, predict): *out is the bp_precision;
 * CLI_USAGE with a message for another value. */
int cli_precision(const char *opt, const char *text, int *out);
/* "f32" or "bf16": the option's value, and the model's "precision" key. */
const char *cli_precision_name(int p);
/* CLI_OK, or CLI_FAIL with "backprop: --precision bf16 needs a CPU with
 * AVX512_BF16 ..." printed where bp_bf16_supported() is 0. Checked before
 * any file is read or written. */
int cli_precision_check(int p);

/* ---- small helpers (util.c) ---- */
double cli_now(void);                          /* monotonic seconds */
char *cli_strdup(const char *s);               /* NULL on ENOMEM */
char *cli_printf(const char *fmt, ...)         /* malloc'd string, NULL on ENOMEM */
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Write `s` as one CSV field (quoted when it holds , " CR LF or spaces at
 * its ends). */
void cli_csv_field(FILE *f, const char *s);
/* "%.*g" with the shortest precision that round-trips a float; "nan"
 * becomes "" in CSV output (cli_csv_num). */
void cli_fmt_num(char *buf, size_t size, double v);
/* 421834 -> "421,834" into buf (always terminated). */
void cli_fmt_count(char *buf, size_t size, size_t v);

/* Atomic text output: open a temporary file next to `path`; commit renames
 * it over `path` after flushing and fsync; abort removes it. */
typedef struct cli_outfile {
    FILE *f;
    char *path;
    char *tmp;
} cli_outfile;
int cli_out_open(cli_outfile *o, const char *path);      /* CLI_FAIL + message */
/* Remove the temporaries of every open cli_outfile (async-signal-safe:
 * for a SIGTERM handler; the files are not closed). */
void cli_remove_temps(void);
/* "a,b,c": names joined by commas (a --target list); malloc'd, NULL if out of memory. */
char *cli_join_names(char *const *names, int n);
/* 1 if a and b name the same file (same text, or same device and inode). */
int cli_same_file(const char *a, const char *b);
/* CLI_USAGE + message if two outputs are the same file or an output is one
 * of the inputs (NULL entries are skipped); names are for the message. */
int cli_check_outputs(const char *const *outs, const char *const *out_names, int n_out,
                      const char *const *ins, const char *const *in_names, int n_in);
int cli_out_commit(cli_outfile *o);                       /* CLI_FAIL + message */
void cli_out_abort(cli_outfile *o);

/* ---- input files (input.c) ---- */
/* The bytes of an input file, read once: the first call reads all of
 * `path` ("-": standard input) into memory, later calls for the same path
 * return the same bytes (so pipes and FIFOs work; see input.c). The data
 * stays owned by input.c (NUL after it). CLI_FAIL with msg filled when it
 * cannot be opened/read or is larger than cli_input_limit(). */
int cli_input_read(const char *path, const unsigned char **data, size_t *size, char *msg,
                   size_t msz);
/* The name of an input in messages: "<stdin>" for "-", else path. */
const char *cli_input_name(const char *path);
/* The most bytes an input (or a decompressed .csv.gz) may have: half the
 * physical memory, or $BACKPROP_MAX_INPUT (bytes, optional K/M/G suffix). */
size_t cli_input_limit(void);
/* Free the bytes read so far once the data sets are built (a later read
 * of the same path is an internal error, not a silent second read). */
void cli_inputs_release(void);
void cli_inputs_free(void);

/* The CSV dialect of the command's CSV inputs (DATA and --val): set from
 * --delimiter / --skip-rows / --no-header, and for eval/predict from the
 * model's metadata where no option overrides it. */
typedef struct cli_csv_dialect {
    char delimiter;      /* 0: ',' */
    int skip_rows;
    int no_header;
    int set_delimiter, set_skip_rows, set_no_header; /* given as options */
} cli_csv_dialect;
extern cli_csv_dialect cli_csv;
/* --delimiter's value: one character, or tab, \t, space, comma, semicolon. */
int cli_delimiter(const char *opt, const char *text, char *out);
/* The dialect options of eval, predict and export (--delimiter C,
 * --skip-rows N, --no-header) into cli_csv: 1 when `name` is one of them
 * (*r set to its parse status: 0 or CLI_USAGE, message printed), else 0. */
int cli_dialect_option(const char *name, const char *value, int *r);
/* Copy the dialect (and the input limit) into bp_csv_options. */
void cli_csv_apply(bp_csv_options *co);
/* Take the dialect a model was trained with (csv_delimiter, csv_skip_rows,
 * csv_header) where no option set it; CLI_FAIL + message if invalid. */
int cli_csv_from_model(const bp_net *net, const char *model_path);

/* ---- threads (threads.c) ---- */
/* train, eval and predict: make OpenMP's idle threads wait briefly before
 * sleeping (GOMP_SPINCOUNT) unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is
 * set, by setting it and re-executing the program once. First thing in main. */
void cli_short_waits(int argc, char **argv);
/* --threads N (n < 0: not given): bp_set_threads, with a warning on stderr
 * when N is more than the cores available. */
void cli_set_threads(int n);

/* ---- data sets (dataset.c) ---- */
typedef enum cli_need {
    CLI_TARGET_REQUIRED = 0, /* train, eval */
    CLI_TARGET_OPTIONAL      /* predict */
} cli_need;

typedef struct cli_dataset {
    bp_data d;
    int is_idx;
    char **features;      /* CSV feature names [d.n_inputs] or NULL */
    char **targets;       /* CSV target names [n_target_names] or NULL */
    int n_target_names;
} cli_dataset;

/* What a read needs to know. Zero-initialize. */
typedef struct cli_read_opts {
    const char *labels;                /* IDX labels file */
    const char *target;                /* CSV target column(s), NULL: last */
    bp_task task;
    const char *const *class_names;    /* fixed classes (a model's) */
    int n_class_names;
    cli_need need;
    int no_target;                     /* CSV: every column is a feature */
    const char *const *feature_names;  /* CSV: features by name (a model's), or NULL */
    int n_feature_names;
} cli_read_opts;

/* 1 when `path` holds IDX data (bp_is_idx_data: two zero bytes first,
 * looking inside gzip), or plain data whose name contains "-ubyte" or
 * ".idx" (so the IDX reader reports a bad magic). -1 if it cannot be read
 * (message printed). Reads through cli_input_read. */
int cli_is_idx(const char *path);

/* Read DATA as CSV or IDX. CLI_OK, or CLI_FAIL with the message printed. */
int cli_read_data(cli_dataset *ds, const char *path, const cli_read_opts *o);
/* The same, with the message left in msg[size] instead of printed. */
int cli_read_data_quiet(cli_dataset *ds, const char *path, const cli_read_opts *o, char *msg,
                        size_t size);
/* The --target value that picks a model's targets in the CSV file `path`:
 * its stored names when the header has them all, else the last n_targets
 * columns by index. malloc'd; NULL when the header cannot be read. */
char *cli_target_for(const char *path, char *const *names, int n_names, int n_targets);
void cli_dataset_free(cli_dataset *ds);

/* Column names of a CSV file's header row (with the cli_csv dialect, from
 * cli_input_read's bytes); NULL on failure. */
char **cli_csv_header(const char *path, int *n);
/* 1 when two of names[0..n) are equal, with the first such pair's 0-based
 * columns in *first < *second (the earliest column of the name whose
 * second copy comes first); 0 when all differ; -1 out of memory. */
int cli_csv_duplicate(char *const *names, int n, int *first, int *second);

/* ---- model metadata helpers (dataset.c) ---- */
/* Parse a JSON array of strings; NULL (and *n = 0) if absent or invalid. */
char **cli_json_strings(const char *json, int *n);
/* A JSON array string of `n` strings, malloc'd; NULL on ENOMEM. */
char *cli_json_array(char *const *s, int n);

/* What a saved model says about its task. */
typedef struct cli_model_info {
    int classify;         /* 1: classification */
    bp_loss loss;
    int n_classes;
    char **classes;       /* [n_classes] (names "0".."K-1" if not stored) */
    int n_targets;        /* regression targets, 1 for classification */
    char **targets;       /* target names [n_target_names] or NULL */
    int n_target_names;
    char **features;      /* CSV feature names the model was trained on [n_features], or NULL */
    int n_features;
    int out_kind;         /* kind of the last layer (softmax/sigmoid already applied) */
    /* Text models (task "text"; classify is 0): */
    int text;
    bp_vocab vocab;       /* "vocab" and "encoding" */
    int seq_len;          /* T: the input shape [T] */
    int streams;          /* the parallel streams it was trained with ("batch"; 32 if absent) */
} cli_model_info;
/* Reads the task, classes, targets and features of a model; calls
 * cli_model_check first. CLI_OK, or CLI_FAIL with the message printed. */
int cli_model_info_get(cli_model_info *mi, const bp_net *net, const char *model_path);
/* Validate every metadata key the tool uses (task, loss, classes, n_classes,
 * n_targets, targets, features, data_format, normalize / norm_shift /
 * norm_scale, hidden) against the network: a key that is present must be
 * well formed and agree with it (model_check.c). CLI_OK, or CLI_FAIL with
 * "backprop: MODEL: metadata "KEY" ..." printed. */
int cli_model_check(const bp_net *net, const char *model_path);
void cli_model_info_free(cli_model_info *mi);
/* Read DATA's rows for a loaded non-text model (cmd_eval.c): the model's
 * CSV dialect, feature and target columns, classes; width and image shape
 * checked; rows raw (not normalized). CLI_OK, or the status with the
 * message printed. */
int cli_read_model_rows(const bp_net *net, const cli_model_info *mi, const char *model,
                        const char *data, const char *labels, const char *target, cli_need need,
                        cli_dataset *ds);

/* ---- SVG learning curves (plot.c) ---- */
typedef struct cli_history {
    int n, cap;
    double *train_loss, *val_loss, *train_acc, *val_acc;
} cli_history;
int cli_history_add(cli_history *h, double tl, double vl, double ta, double va);
void cli_history_free(cli_history *h);
/* Write the SVG to `f`; `classify` adds the accuracy panel. */
void cli_plot_svg(FILE *f, const cli_history *h, int classify, const char *title,
                  const char *loss_name);

/* ---- text (text.c) ---- */
/* A text as token ids, with its vocabulary. */
typedef struct cli_text {
    bp_vocab vocab;
    int32_t *ids;         /* [n] */
    size_t n;
} cli_text;
/* Read `path` (through cli_input_read) as text with `enc`: the vocabulary
 * is the text's own (fixed NULL) or a copy of `fixed` (a model's; a
 * character outside it is an error naming the line and column). `hint` is
 * appended to an invalid UTF-8 message. CLI_OK, or CLI_FAIL with msg set
 * (not printed). */
int cli_text_read(cli_text *t, const char *path, bp_text_encoding enc, const bp_vocab *fixed,
                  const char *hint, char *msg, size_t msz);
void cli_text_free(cli_text *t);
/* Training rows of ids[0..n): `streams` parallel streams of windows of T
 * steps, row k*streams + s = window k of stream s (see text.c); x the ids,
 * y the next ids, n_classes = vocab, owned arrays. Returns the rows, 0 when
 * the text is too short (n - 1 < streams * T), -1 out of memory. */
int cli_text_windows(const int32_t *ids, size_t n, int streams, int T, int vocab, bp_data *out);
/* Scores of a text model over a whole text. */
typedef struct cli_text_score {
    long predictions;     /* characters predicted: n - 1 */
    double loss;          /* mean cross-entropy, nats per character */
    double bits_per_char; /* loss / ln 2 */
    double accuracy;      /* the most likely next character is the right one */
    int streams, window;  /* the layout used */
} cli_text_score;
/* Every prediction of ids[0..n) (n >= 2) once, with carried state, in up to
 * `streams` parallel streams (fewer when the text is short: each stream at
 * least one window of the net's T steps). The net is left stateless.
 * CLI_OK or CLI_FAIL (message printed). */
int cli_text_loss(bp_net *net, int softmax_out, const int32_t *ids, size_t n, int streams,
                  cli_text_score *sc);
/* `backprop eval MODEL TEXT` for a text model (mi->text). streams <= 0:
 * the model's. */
int cli_eval_text(bp_net *net, const cli_model_info *mi, const char *model, const char *data,
                  int streams, int json);
/* `backprop predict MODEL TEXT` for a text model: the text cut into
 * consecutive windows of the model's T tokens (a final partial one left
 * out), each run from a zero state; a header "window,step,id,next" (and
 * ",p0..,p{V-1}" with proba) and a row per step to `f`: the window, the
 * step, the input token's id, the most likely next token (a CSV field) and
 * the next token's probabilities by id. CLI_OK or CLI_FAIL (printed). */
int cli_predict_text(bp_net *net, const cli_model_info *mi, const char *data, int proba, FILE *f);

/* ---- data-parallel training (dist.c) ----
 * cli_rank: this process's rank once launched by mpirun as several ranks,
 * else -1 (cli_fail then prefixes "rank R: "). cli_dist_guess_rank reads
 * it from the launcher's environment (before MPI starts); cli_dist_start
 * starts MPI when launched as several ranks (CLI_OK, or a failure printed);
 * cli_dist_comm is the communicator, or NULL for one process;
 * cli_dist_leader is 1 on rank 0 and without MPI; cli_dist_settled says
 * no rank waits for this one any more (a collective call failed the same
 * on every rank, or training ended): a failure from then on finalizes;
 * cli_dist_end finalizes, or ends the whole
 * job (MPI_Abort) when this rank failed alone (the others may be waiting
 * for it), and returns status. cli_dist_default_threads: threads per rank without
 * --threads (-1 for one process). */
extern int cli_rank;
extern int cli_mpi_started; /* MPI started: usage errors may differ by rank */
int cli_dist_launched(void);
void cli_dist_guess_rank(void);
int cli_dist_start(int *argc, char ***argv);
const bp_comm *cli_dist_comm(void);
int cli_dist_leader(void);
void cli_dist_settled(void);
int cli_dist_end(int status);
int cli_dist_default_threads(void);

#endif /* BP_CLI_H */
