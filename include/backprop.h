/*
 * backprop.h - the public API of libbackprop.
 *
 * libbackprop trains feed-forward neural networks by backpropagation:
 * forward pass, loss, backward pass by the chain rule, gradient-descent
 * update. This is the only public header; everything in it starts with
 * bp_ / BP_.
 *
 * Conventions (see DESIGN.md):
 *   - tensors are row-major, batch first: x is [n, features];
 *   - a dense layer holds weight [out, in] and bias [out], like torch.nn.Linear;
 *   - losses reduce like PyTorch (mean), optimizers update like torch.optim.
 *
 * Errors: every fallible function returns a bp_status and takes, as its
 * last argument, an optional `bp_error *err` (may be NULL) that receives a
 * readable one-line message. The library never prints, never exits and
 * never aborts on bad input.
 *
 * Ownership: a function that returns an object through `T **out` gives the
 * caller ownership; free it with the matching bp_*_free (which accepts NULL).
 * Input arrays are borrowed for the duration of the call only, unless a
 * function says otherwise.
 *
 * Threads: a network and its trainer are used by one thread at a time; use
 * one network per thread (or clones) for parallel work. Inside a call the
 * GEMM and the optimizer use OpenMP threads (see bp_set_threads).
 *
 * Precision: bp_real is float. A build compiled with -DBP_DOUBLE makes it
 * double everywhere (used by the gradient-check tests); model files are
 * float32 in both builds.
 */
#ifndef BACKPROP_H
#define BACKPROP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BP_VERSION_MAJOR 0
#define BP_VERSION_MINOR 1
#define BP_VERSION_PATCH 0
#define BP_VERSION_STRING "0.1.0"

#ifdef BP_DOUBLE
typedef double bp_real;
#else
typedef float bp_real;
#endif

/* ------------------------------------------------------------------------ */
/* Status and errors                                                         */
/* ------------------------------------------------------------------------ */

typedef enum bp_status {
    BP_OK = 0,
    BP_ENOMEM,       /* an allocation failed */
    BP_EINVAL,       /* an argument is invalid (NULL, out of range, NaN data) */
    BP_ESHAPE,       /* sizes do not agree (data width vs network inputs...) */
    BP_ESPEC,        /* the architecture spec string does not parse */
    BP_EIO,          /* a file could not be opened, read or written */
    BP_EFORMAT,      /* a file is malformed (model, CSV, IDX) */
    BP_ENONFINITE,   /* training produced a NaN/Inf loss or gradient */
    BP_ESTOPPED,     /* a callback asked training to stop (not a failure of data) */
    BP_EUNSUPPORTED, /* valid request this build or version does not support */
    BP_ECOMM,        /* data-parallel training: a collective failed, or the ranks
                        disagree (data, network, settings) or one of them failed */
} bp_status;

/* Message buffer filled by a failing call. `code` repeats the returned status. */
typedef struct bp_error {
    bp_status code;
    char message[512];
} bp_error;

/* Short constant name of a status ("BP_ESHAPE"); never NULL. */
const char *bp_status_name(bp_status s);

/* Library version string, e.g. "0.1.0". */
const char *bp_version(void);

/* Check, before allocating, that `bytes` more can be held: BP_OK, or
 * BP_ENOMEM with "SUBJECT needs 745.1 GiB (DETAIL); this machine has
 * 23.4 GiB" in err (DETAIL and its parentheses are left out when NULL or
 * empty; SUBJECT NULL means "this operation"). "Available" is the least of
 * the physical memory (the total, not what is free now), what the
 * address-space limit (RLIMIT_AS, ulimit -v) leaves beyond what the
 * process maps, and what a cgroup memory limit leaves; the message names
 * the one that does not fit. bp_net_create, bp_net_reserve,
 * bp_trainer_create and bp_net_load make the same check on their sizes
 * (computed without overflow) before they allocate, so a network too large
 * for the machine is refused instead of being killed by the kernel. */
bp_status bp_memory_check(uint64_t bytes, const char *subject, const char *detail,
                          bp_error *err);

/* Process-wide maximum number of threads (OpenMP) for the GEMMs, the
 * optimizer update and CSV parsing. n <= 0 restores the default, all
 * cores; n is capped at the cores available to the process (its CPU
 * affinity mask and cgroup CPU quota), since more threads than cores only
 * wait for each other. Returns the count in effect (1..cores), which is
 * below n when n was capped. This is a maximum: each parallel region uses
 * as many threads as its size is worth (a small layer runs on one).
 * Waiting OpenMP threads spin before sleeping (libgomp: up to
 * GOMP_SPINCOUNT iterations, 300,000 by default, read when the program
 * starts); on a shared machine set OMP_WAIT_POLICY=passive or a small
 * GOMP_SPINCOUNT in the environment (the backprop tool does). */
int bp_set_threads(int n);

/* Arithmetic of the matrix products and convolutions.
 * BP_PRECISION_F32 (default): float32 throughout.
 * BP_PRECISION_BF16: mixed precision, the usual recipe (torch.autocast on a
 * CPU, with bfloat16): the inputs of dense layers' and convolutions'
 * products (activations, weights, output gradients) are rounded to
 * bfloat16 (8 bits of mantissa, float32's range) and the products
 * accumulate in float32; weights (the master copy), gradients, optimizer
 * state, losses and reductions stay float32, and models are saved in
 * float32. In a convolutional network the activations from a convolution
 * to the layer that returns to plain data (flatten, global_avgpool) are
 * stored in bfloat16, forward and backward, where the prepared path keeps
 * them in oneDNN's blocked layout: batch norm (its statistics and
 * parameters float32), pooling, relu, leaky_relu and dropout read and
 * write bfloat16 there (a chain that meets another layer, sigmoid say,
 * stays float32, and under synchronized batch norm, bp_train_config's
 * sync_batchnorm with a communicator, a slot's activations all stay
 * float32). Elsewhere activations are float32. It needs a CPU with the
 * AVX512_BF16 instructions (bp_bf16_supported) and the float build. Only
 * the prepared fast paths take bfloat16: the batch sizes prepared by
 * bp_trainer_create (its max batch), bp_fit (its batch sizes) and
 * bp_forward (each call's); a bp_train_step on another batch size runs its
 * products in float32, as do dense products under 65,536 multiply-adds,
 * recurrent layers and embeddings, and everything when BP_GEMM=sgemm is
 * set (no prepared paths at all). Convolutions of every size are prepared. */
typedef enum bp_precision { BP_PRECISION_F32 = 0, BP_PRECISION_BF16 = 1 } bp_precision;

/* 1 when BP_PRECISION_BF16 can run here: the float build, on a CPU with
 * AVX512_BF16 that oneDNN uses (ONEDNN_MAX_CPU_ISA may forbid it). */
int bp_bf16_supported(void);

/* ------------------------------------------------------------------------ */
/* Networks                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct bp_net bp_net;

/* Layer kinds, the words of the architecture spec. */
typedef enum bp_layer_kind {
    BP_DENSE = 0,    /* dense(N): y = x W^T + b, W [N, in], b [N] */
    BP_IDENTITY,     /* identity: y = x */
    BP_SIGMOID,      /* sigmoid: y = 1 / (1 + exp(-x)) */
    BP_TANH,         /* tanh: y = tanh(x) */
    BP_RELU,         /* relu: y = max(0, x) */
    BP_LEAKY_RELU,   /* leaky_relu(a): y = x > 0 ? x : a x */
    BP_SOFTMAX,      /* softmax: y_i = exp(x_i) / sum_j exp(x_j), per row */
    BP_DROPOUT,      /* dropout(p): training only, y = x * mask / (1-p) */
    BP_CONV,         /* conv(C,K[,stride[,pad]]): torch.nn.Conv2d, W [C, in_ch, K, K], b [C] */
    BP_MAXPOOL,      /* maxpool(K[,stride]): torch.nn.MaxPool2d (stride defaults to K) */
    BP_AVGPOOL,      /* avgpool(K[,stride]): torch.nn.AvgPool2d (stride defaults to K) */
    BP_GLOBAL_AVGPOOL, /* global_avgpool: AdaptiveAvgPool2d(1), [C, H, W] -> [C, 1, 1] */
    BP_FLATTEN,      /* flatten: [C, H, W] (or [T, F]) -> [C*H*W] */
    BP_BATCHNORM,    /* batchnorm: BatchNorm1d on [F], BatchNorm2d on [C, H, W] */
    BP_RNN,          /* rnn(H): torch.nn.RNN(in, H, batch_first=True), tanh; [T, F] -> [T, H] */
    BP_LSTM,         /* lstm(H): torch.nn.LSTM, gates i, f, g, o; [T, F] -> [T, H] */
    BP_GRU,          /* gru(H): torch.nn.GRU, gates r, z, n; [T, F] -> [T, H] */
    BP_LAST,         /* last: x[:, -1], the final step of a sequence, [T, F] -> [F] */
    BP_EMBEDDING     /* embedding(D,V): torch.nn.Embedding(V, D) on token ids [T] -> [T, D];
                        the first layer only */
} bp_layer_kind;

/* One layer description. `units`: dense width, conv output channels, the
 * hidden size H of a recurrent layer, the embedding dimension D.
 * `param`: leaky_relu slope, dropout probability. `kernel`, `stride`,
 * `pad`: conv and pools (0 in a description given to bp_net_create_layers
 * means the default: stride 1 for conv, K for pools; pad 0). `vocab`: the
 * number of token ids an embedding takes (ids 0..vocab-1). */
typedef struct bp_layer_desc {
    bp_layer_kind kind;
    int units;
    double param;
    int kernel, stride, pad;
    int vocab;
} bp_layer_desc;

/* Per-sample shape of an activation (batch dimension not included):
 * rank 1 [F], rank 2 [T, F] (a sequence) or rank 3 [C, H, W] (an image). */
#define BP_MAX_RANK 3
typedef struct bp_shape {
    int rank;
    int dim[BP_MAX_RANK];
} bp_shape;
/* Rank-1 shape [features]. */
bp_shape bp_shape_flat(int features);
/* Number of values of one sample (product of dims; 0 for rank 0). */
size_t bp_shape_size(bp_shape s);
/* "[1, 28, 28]" into buf (always terminated). */
void bp_shape_format(bp_shape s, char *buf, size_t size);

/* Weight initialization schemes. Biases start at zero.
 * BP_INIT_DEFAULT picks He (uniform) for a dense layer followed by relu or
 * leaky_relu, and Xavier (uniform) otherwise. */
typedef enum bp_init {
    BP_INIT_DEFAULT = 0,
    BP_INIT_XAVIER_UNIFORM,  /* U(-a, a), a = sqrt(6 / (in + out)) */
    BP_INIT_XAVIER_NORMAL,   /* N(0, 2 / (in + out)) */
    BP_INIT_HE_UNIFORM,      /* U(-a, a), a = sqrt(6 / in) */
    BP_INIT_HE_NORMAL        /* N(0, 2 / in) */
} bp_init;

/* Build a network for `n_inputs` input features from an architecture spec,
 * e.g. "dense(64) relu dropout(0.2) dense(10)" (see DESIGN.md). The spec is
 * the full network: nothing is appended. Parameters are allocated and
 * initialized with BP_INIT_DEFAULT from `seed`.
 * Returns BP_ESPEC with "spec:1:COL: ..." on a malformed spec, BP_EINVAL if
 * n_inputs < 1, BP_ENOMEM. On failure *out is NULL. */
bp_status bp_net_create(bp_net **out, int n_inputs, const char *spec,
                        uint64_t seed, bp_error *err);

/* Build a network layer by layer from `n_layers` descriptions; same rules
 * and statuses as bp_net_create. */
bp_status bp_net_create_layers(bp_net **out, int n_inputs,
                               const bp_layer_desc *layers, int n_layers,
                               uint64_t seed, bp_error *err);

/* Build a network whose input samples have shape `input` (e.g. [1, 28, 28]
 * for images). A dense layer that follows an image-shaped ([C, H, W])
 * layer gets a flatten inserted before it, and the stored spec shows it.
 * Shape errors (a kernel larger than its input, pooling to nothing, a conv
 * on a flat input) are BP_ESPEC "spec:1:COL: ...". bp_net_create is this
 * with bp_shape_flat(n_inputs). */
bp_status bp_net_create_shaped(bp_net **out, bp_shape input, const char *spec,
                               uint64_t seed, bp_error *err);

/* Free a network and everything it owns. Accepts NULL. */
void bp_net_free(bp_net *net);

/* Deep copy (parameters, metadata; not workspaces). */
bp_status bp_net_clone(bp_net **out, const bp_net *net, bp_error *err);

/* Re-initialize every dense layer with `scheme`, drawing from `seed`. */
bp_status bp_net_init(bp_net *net, bp_init scheme, uint64_t seed, bp_error *err);

int bp_net_inputs(const bp_net *net);      /* input features */
int bp_net_outputs(const bp_net *net);     /* width of the last layer */
int bp_net_layers(const bp_net *net);      /* layers in the spec */
size_t bp_net_param_count(const bp_net *net);
/* Description of layer i (0 <= i < bp_net_layers): units is the width of
 * a dense layer, the output channels of a conv, and the flat output width
 * (bp_shape_size of bp_net_layer_shape) of every other kind. */
bp_layer_desc bp_net_layer(const bp_net *net, int i);

/* Input shape, and the output shape of layer i (0 <= i < bp_net_layers). */
bp_shape bp_net_input_shape(const bp_net *net);
bp_shape bp_net_layer_shape(const bp_net *net, int i);

/* The precision of the network's products from now on, in training and
 * inference (see bp_precision; a new network computes in float32).
 * BP_EINVAL when p is not a precision or is BP_PRECISION_BF16 where
 * bp_bf16_supported() is 0 ("bf16 needs a CPU with AVX512_BF16 ..."),
 * BP_ENOMEM when the bfloat16 copy of the weights (2 bytes a parameter)
 * does not fit; the network is unchanged then. Changing it makes the
 * prepared fast paths again for the new precision (allocates). bp_gradcheck
 * runs in float32 and leaves the precision as it found it. */
bp_status bp_net_set_precision(bp_net *net, bp_precision p, bp_error *err);
bp_precision bp_net_precision(const bp_net *net);
/* Trainable parameters of layer i (weights and biases; not buffers). */
size_t bp_net_layer_param_count(const bp_net *net, int i);
/* 1 for the kinds that hold parameters (dense, conv, batchnorm, rnn,
 * lstm, gru, embedding): the layers `freeze` counts. */
int bp_layer_is_parametric(bp_layer_kind kind);

/* The tensors of a network as the model file holds them, in spec order:
 * trainable parameters ("0.weight", "0.bias") and buffers (batchnorm's
 * "1.running_mean", "1.running_var", "1.num_batches_tracked"). */
typedef enum bp_dtype { BP_DTYPE_F32 = 0, BP_DTYPE_I64 } bp_dtype;
typedef struct bp_tensor {
    char name[40];        /* state_dict key */
    int layer;            /* index of its layer in the spec */
    int rank;             /* 0 (a scalar) .. 4 */
    int64_t shape[4];
    size_t count;         /* elements */
    bp_dtype dtype;
    int trainable;        /* 1: a parameter; 0: a buffer */
    bp_real *data;        /* BP_DTYPE_F32: the values (owned by the network) */
    int64_t *i64;         /* BP_DTYPE_I64: the values (owned by the network) */
} bp_tensor;
int bp_net_tensor_count(const bp_net *net);
/* Fill *out with tensor j (0 <= j < count); returns 0 when out of range.
 * The pointers stay valid for the network's lifetime. */
int bp_net_tensor(bp_net *net, int j, bp_tensor *out);

/* Canonical spec of the network, e.g. "dense(64) relu dense(10)".
 * The string is owned by the network and valid until it is freed. */
const char *bp_net_spec(const bp_net *net);

/* Parameter tensor access for layer i: dense weight [units, in], conv
 * weight [C, in_ch, K, K], batchnorm weight (gamma) [C]; bias [units] / [C]
 * / batchnorm's beta [C]. Returns NULL for a layer without
 * parameters. The pointers stay valid for the network's lifetime. */
bp_real *bp_net_weight(bp_net *net, int i);
bp_real *bp_net_bias(bp_net *net, int i);

/* Inference on a batch: x [n, inputs] -> y [n, outputs] (caller-owned).
 * Dropout is the identity. Grows internal workspaces if n exceeds what was
 * reserved (the only allocation, made once), and prepares the fast path
 * for batches of n on its first call with that n. BP_ESHAPE if n < 1. */
bp_status bp_forward(bp_net *net, const bp_real *x, int n, bp_real *y,
                     bp_error *err);

/* Reserve the workspaces of inference (bp_forward, bp_evaluate) for
 * batches of up to `max_batch` samples so that it never allocates: two
 * activation buffers of the widest layer, which the layers' outputs take
 * in turn. A trainer reserves what training needs itself (every layer's
 * output, for the backward pass), and inference within the trainer's batch
 * uses that. BP_ENOMEM (nothing allocated) when it does not fit. */
bp_status bp_net_reserve(bp_net *net, int max_batch, bp_error *err);

/* Recurrent state carried between passes (truncated backpropagation through
 * time, text generation). By default every pass of a recurrent layer
 * (rnn, lstm, gru) starts from a zero state, as torch's does without h0.
 * bp_net_set_stateful(net, streams) with streams >= 1 makes the network
 * stateful: a pass over exactly `streams` samples starts each recurrent
 * layer from the state (h, and c for an LSTM) the previous such pass ended
 * with, sample s continuing sample s, so consecutive windows of `streams`
 * parallel streams form one long sequence; the gradient of a training
 * pass stops at the window's start (truncated BPTT: the carried state is a
 * constant). Passes of another size start from zero and leave the state
 * alone. The state starts at zero and is zeroed again by
 * bp_net_reset_state. streams 0 turns this off. bp_fit and bp_evaluate on
 * a stateful network go through the rows in order, in batches of
 * `streams` (rows k*streams .. k*streams+streams-1 are window k of every
 * stream), and reset the state before each epoch and each evaluation.
 * BP_EINVAL for streams < 0 or above 2^20; BP_ENOMEM. */
bp_status bp_net_set_stateful(bp_net *net, int streams, bp_error *err);
/* The stream count set by bp_net_set_stateful (0: not stateful). */
int bp_net_stateful(const bp_net *net);
/* Zero the carried state of every recurrent layer. Accepts NULL. */
void bp_net_reset_state(bp_net *net);
/* 1 when the network holds a recurrent layer (rnn, lstm, gru). */
int bp_net_is_recurrent(const bp_net *net);

/* Metadata: string key/value pairs saved in the model file's __metadata__.
 * The library itself sets "format", "spec" and "inputs" on save. Values
 * are copied. bp_net_get_meta returns NULL when the key is absent; the
 * string stays valid until the key is set again or the net is freed. */
bp_status bp_net_set_meta(bp_net *net, const char *key, const char *value,
                          bp_error *err);
const char *bp_net_get_meta(const bp_net *net, const char *key);
int bp_net_meta_count(const bp_net *net);
/* i-th pair (0 <= i < count) in insertion order; returns 0 when out of range. */
int bp_net_meta_at(const bp_net *net, int i, const char **key, const char **value);

/* ------------------------------------------------------------------------ */
/* Model files (safetensors, see DESIGN.md)                                  */
/* ------------------------------------------------------------------------ */

/* Save parameters as float32 safetensors with torch.nn.Sequential key names
 * ("0.weight", "0.bias", "2.weight", ...) and the metadata in __metadata__.
 * Written atomically: a temporary file in the same directory, fsync,
 * rename; on failure the destination is untouched. BP_EIO on failure;
 * BP_EINVAL (nothing written) if a parameter is NaN/Inf or, in the double
 * build, too large for float32: such a file could not be loaded back. */
bp_status bp_net_save(const bp_net *net, const char *path, bp_error *err);

/* Load a model written by bp_net_save (needs the "spec" and "inputs"
 * metadata). Every length, offset, dtype and shape is validated:
 * BP_EIO (cannot read), BP_EFORMAT (malformed, with the reason),
 * BP_ESHAPE (a tensor shape disagrees with the spec), BP_ENOMEM. */
bp_status bp_net_load(bp_net **out, const char *path, bp_error *err);

/* Load parameters only into an existing network (e.g. a state dict saved
 * by PyTorch for the same nn.Sequential): every parameter of the network
 * must be present with the same name, shape and dtype F32; extra tensors
 * are an error (strict, like load_state_dict(strict=True)). */
bp_status bp_net_load_weights(bp_net *net, const char *path, bp_error *err);

/* ------------------------------------------------------------------------ */
/* Data sets                                                                 */
/* ------------------------------------------------------------------------ */

/* A data set in memory: x [n, n_inputs], y [n, n_targets].
 * For classification (n_classes > 0) n_targets is 1 and y holds class
 * indices 0..n_classes-1 as exact integral values. For regression
 * n_classes == 0. A user may fill this struct to view their own arrays
 * (then `owned` is 0 and bp_data_free frees nothing but the names);
 * readers return owned data. class_names is optional (NULL or n_classes
 * strings). */
typedef struct bp_data {
    int n;
    int n_inputs;
    int n_targets;
    int n_classes;
    bp_real *x;
    bp_real *y;
    char **class_names;
    int owned;
    bp_shape shape;   /* per-sample shape: [1, H, W] for IDX images; rank 0 (or
                         [n_inputs]) means flat */
} bp_data;

/* Release what a reader allocated and zero the struct. Accepts NULL. */
void bp_data_free(bp_data *d);

/* What a CSV target column means. */
typedef enum bp_task {
    BP_TASK_AUTO = 0,   /* integer literals or any text: classify; else regress */
    BP_TASK_CLASSIFY,
    BP_TASK_REGRESS
} bp_task;

/* Options of bp_read_csv; zero-initialize, then set what you need. */
typedef struct bp_csv_options {
    /* Target column(s): a header name, a 0-based index ("3"), or a
     * comma-separated list of names/indices for multi-output regression.
     * NULL: the last column. */
    const char *target;
    bp_task task;
    /* no_target: no target column in the file (predict), every column is
     * a feature. target_optional: the named target column(s) are used if
     * the header has them, else the file is read as with no_target. */
    int no_target;
    int target_optional;
    /* Fixed class list (e.g. a model's classes, for eval): labels are
     * mapped to these indices and an unknown label is an error. NULL (or
     * n_class_names 0): the classes are found in the data (non-negative
     * integers keep their value; other labels are sorted). */
    const char *const *class_names;
    int n_class_names;
    /* Feature columns by name (e.g. a model's features, for eval/predict):
     * every column that is not a target must be one of these names, each
     * once, in any order; x follows this order. A missing or an unexpected
     * column is BP_ESHAPE naming it. NULL (or 0): every non-target column
     * is a feature, in file order. */
    const char *const *feature_names;
    int n_feature_names;
    /* The file's dialect. delimiter: the field separator, one byte (0:
     * ','; ';', '\t', ' ', '|' ...; not '"', CR or LF). With a space or tab
     * delimiter that character is not trimmed around fields, so two in a
     * row make an empty field. skip_rows: physical lines (LF, CRLF or CR)
     * skipped before the header, such as the count line that starts
     * sklearn's bundled CSVs; line numbers in messages still count them.
     * no_header: the first row is data; the columns are named "0", "1",
     * ... (so a target or feature name is its 0-based index). */
    char delimiter;
    int skip_rows;
    int no_header;
    /* The largest text accepted, in bytes, after decompression (0: no
     * limit but memory): a larger file, or gzip data that inflates past
     * it, is BP_EFORMAT before more is allocated. */
    size_t max_bytes;
} bp_csv_options;

/* Read a CSV file (RFC 4180: quoted fields, "" escapes, quoted commas and
 * line breaks, CRLF or LF, a last line without a line break, a header row;
 * empty or blank lines are skipped, a UTF-8 byte order mark is ignored,
 * spaces around a field are trimmed; gzip-compressed text, magic 1f 8b, is
 * inflated first; see the dialect options above). Every column that is not a target is
 * a feature and must hold decimal numbers (ints, decimals, exponents,
 * leading +/-; "nan"/"inf" are rejected); they are parsed exactly to
 * bp_real rounding.
 *
 * Targets (opt->target): a header name, else a 0-based index; a whole
 * string that names no column is split at commas into several (each a
 * name or an index; several targets mean regression). With BP_TASK_AUTO a
 * single target column whose values are all integer literals ("3", "-1")
 * or that holds any non-numeric text is classification; otherwise
 * (decimals or exponents in a numeric column, or several targets) it is
 * regression. Class labels without opt->class_names: when every label is
 * a number with a non-negative integral value <= 65535 the value is the
 * class index, n_classes = max + 1 (at least 2) and class_names is NULL;
 * otherwise the distinct labels (numbers ordered by value first, then
 * strings in byte order; "1" and "1.0" are one class) get indices 0..K-1
 * in that order and class_names holds them. With opt->class_names, a
 * label maps to the name equal to its text (or, failing that, to a name
 * with the same numeric value), n_classes = n_class_names, class_names is
 * a copy, an unknown label is an error, and BP_TASK_AUTO means
 * classification (n_class_names == 0 is the same as no list).
 * no_target: every column is a feature, n_targets = 0, y = NULL.
 * target_optional with a named target: when none of the named columns is
 * in the header the file is read as with no_target (a NULL target still
 * means the last column).
 *
 * On error: BP_EIO (cannot open/read: "PATH: cannot open: REASON"),
 * BP_EFORMAT with "PATH:LINE:COL: reason" where LINE is the 1-based line
 * where the field starts and COL the 1-based field (column) number: empty
 * file, no data rows (header only), a row with a different field count
 * than the header ("row has 3 fields, expected 4"), a non-numeric, empty
 * or non-finite feature (the text is quoted), an unterminated quote, a
 * character after a closing quote, a bad target value, an unknown class
 * label, no feature column left; BP_EINVAL (bad option: unknown target
 * column, a target named twice, a target name that two header columns
 * have ("target "y" is ambiguous: columns 2 and 5 ..."), several targets
 * with BP_TASK_CLASSIFY, a negative skip_rows, a quote or line break as
 * delimiter), BP_ENOMEM. A file that ends within the skip_rows lines is
 * BP_EFORMAT.
 * `out` receives owned data; it is zeroed on failure. `feature_names`
 * (may be NULL) receives the n_inputs header names (free with
 * bp_strings_free); it is set to NULL on failure.
 * The file is read in one go; a large file without quotes is parsed by
 * the OpenMP threads (see bp_set_threads), with the same result and the
 * same first error as a serial read. */
bp_status bp_read_csv(bp_data *out, const char *path,
                      const bp_csv_options *opt, char ***feature_names,
                      bp_error *err);

/* Same as bp_read_csv on `size` bytes in memory (copied; the caller keeps
 * `data`). `name` (may be NULL: "<csv>") replaces PATH in messages. */
bp_status bp_read_csv_mem(bp_data *out, const void *data, size_t size,
                          const char *name, const bp_csv_options *opt,
                          char ***feature_names, bp_error *err);

/* The column names of CSV text in memory (plain or gzip), as bp_read_csv
 * with the same options sees them: the header row after opt->skip_rows
 * lines, or "0".."N-1" with opt->no_header (opt may be NULL: defaults;
 * only the dialect fields and max_bytes are used). Reads only as much of
 * the data as the header needs (about 1 MiB unless the header is longer).
 * On success *names holds *n >= 1 strings (free with bp_strings_free).
 * On failure (the messages of bp_read_csv: empty file, unterminated
 * quote, ...) *names is NULL and *n is 0. */
bp_status bp_csv_header(const void *data, size_t size, const char *name,
                        const bp_csv_options *opt, char ***names, int *n,
                        bp_error *err);

/* 1 when `size` bytes at `data` are IDX data rather than CSV text: they
 * start with two zero bytes (an IDX magic; text never does), after
 * inflating the first bytes when they are gzip-compressed (so a .csv.gz is
 * CSV and an MNIST .gz is IDX). 0 otherwise (also for NULL or corrupt
 * gzip data: the reader then reports it). Reads no more than a few
 * decompressed bytes. */
int bp_is_idx_data(const void *data, size_t size);

/* Read an IDX file (the MNIST format: 00 00 TYPE NDIMS, NDIMS big-endian
 * 32-bit sizes, then the data; gzip-compressed if it starts with the gzip
 * magic 1f 8b). Images (type 0x08 unsigned byte, any rank >= 2) become
 * x [n, product of the other dimensions] scaled to [0, 1] (byte / 255);
 * with `labels_path` (an idx1 ubyte file) y [n, 1] holds the labels,
 * n_targets = 1 and n_classes = max label + 1 (at least 2).
 * `labels_path` may be NULL (then n_targets = 0, n_classes = 0, y = NULL).
 * BP_EIO: cannot open/read. BP_EFORMAT "PATH: reason": bad magic, unknown
 * or unsupported type ("unsupported IDX type 0x0D (float32)"), wrong rank,
 * a zero size, data shorter than the sizes say (truncated) or longer
 * (trailing bytes), corrupt or truncated gzip data, more than 2^31 bytes
 * of data (gzip data is inflated only up to the size its header declares,
 * and a header declaring more than the compressed bytes could hold is
 * refused before inflating, so a small "gzip bomb" costs no memory), a label count different from the image count (naming both
 * files and counts). BP_ENOMEM. `out` is zeroed on failure. */
bp_status bp_read_idx(bp_data *out, const char *images_path,
                      const char *labels_path, bp_error *err);

/* Same as bp_read_idx on buffers in memory (plain or gzip); `labels` may be
 * NULL. Messages name the buffers "images" and "labels". */
bp_status bp_read_idx_mem(bp_data *out, const void *images, size_t images_size,
                          const void *labels, size_t labels_size,
                          bp_error *err);

/* bp_read_idx_mem with the names that messages use for the two buffers
 * (e.g. their file names; NULL: "images", "labels"). */
bp_status bp_read_idx_mem_named(bp_data *out, const void *images, size_t images_size,
                                const char *images_name, const void *labels,
                                size_t labels_size, const char *labels_name,
                                bp_error *err);

/* Free an array of `n` strings and the array. Accepts NULL. */
void bp_strings_free(char **s, int n);

/* Input normalization, fitted on training data and stored in the model:
 * x' = (x - shift) * scale, per feature. */
typedef enum bp_norm_kind {
    BP_NORM_NONE = 0,
    BP_NORM_STANDARD,   /* shift = mean, scale = 1 / std (population std;
                           1 if the feature is constant) */
    BP_NORM_MINMAX      /* shift = min, scale = 1 / (max - min) (1 if equal) */
} bp_norm_kind;

/* A normalization. For BP_NORM_NONE shift and scale are NULL. Free with
 * bp_norm_free. */
typedef struct bp_norm {
    bp_norm_kind kind;
    int n;            /* features */
    bp_real *shift;   /* [n], owned */
    bp_real *scale;   /* [n], owned */
} bp_norm;

/* "none", "standard", "minmax" (the CLI's --normalize words). */
const char *bp_norm_name(bp_norm_kind k);
/* Inverse of bp_norm_name; BP_EINVAL for another word. */
bp_status bp_norm_parse(const char *name, bp_norm_kind *out, bp_error *err);
/* Compute the normalization of d's features (d->x [n, n_inputs]),
 * accumulating in double. BP_NORM_NONE gives n = n_inputs and no arrays.
 * BP_EINVAL: no rows or features, an unknown kind, a NaN/Inf value (the
 * message names row and feature). `out` is zeroed on failure. */
bp_status bp_norm_fit(bp_norm *out, const bp_data *d, bp_norm_kind kind,
                      bp_error *err);
/* Apply to d->x in place (the data may be a user's view). A no-op for
 * BP_NORM_NONE; BP_ESHAPE if d->n_inputs differs from nm->n. */
bp_status bp_norm_apply(const bp_norm *nm, bp_data *d, bp_error *err);
/* Free the arrays and zero the struct. Accepts NULL. */
void bp_norm_free(bp_norm *nm);
/* Store in / read from a network's metadata: "normalize" (the name),
 * "norm_shift" and "norm_scale" (n comma-separated %.9g values; exact for
 * float32). to_meta: BP_ESHAPE if nm->n differs from the network's inputs;
 * storing BP_NORM_NONE empties any stored lists. from_meta: a net without
 * "normalize" gives BP_NORM_NONE; BP_EFORMAT if the name is unknown or a
 * list is missing, has another count than the network's inputs, or holds
 * anything but finite numbers. `out` is zeroed on failure. */
bp_status bp_norm_to_meta(const bp_norm *nm, bp_net *net, bp_error *err);
bp_status bp_norm_from_meta(bp_norm *out, const bp_net *net, bp_error *err);

/* Target normalization (regression): the same transform on d->y
 * [n, n_targets], fitted on the training rows; the network is trained on
 * y' = (y - shift) * scale and its outputs are mapped back with
 * bp_norm_invert. nm->n is the number of targets.
 * fit_targets: BP_EINVAL as bp_norm_fit (no rows, a NaN/Inf target naming
 * row and target) or when d holds class labels (n_classes > 0); `out` is
 * zeroed on failure. apply_targets: in place on d->y; a no-op for
 * BP_NORM_NONE; BP_ESHAPE if d->n_targets differs from nm->n, BP_EINVAL
 * for class labels. */
bp_status bp_norm_fit_targets(bp_norm *out, const bp_data *d, bp_norm_kind kind,
                              bp_error *err);
bp_status bp_norm_apply_targets(const bp_norm *nm, bp_data *d, bp_error *err);
/* The inverse v = v / scale + shift, in place on v [rows, nm->n] (e.g. a
 * network's outputs, giving predictions in the targets' units). A no-op
 * for BP_NORM_NONE or rows <= 0; BP_EINVAL for a NULL argument. */
bp_status bp_norm_invert(const bp_norm *nm, bp_real *v, int rows, bp_error *err);
/* Store in / read from a network's metadata: "normalize_target" (the
 * name), "target_shift" and "target_scale" (one value per network output),
 * with the rules of bp_norm_to_meta / bp_norm_from_meta (counts checked
 * against bp_net_outputs; a net without "normalize_target" gives
 * BP_NORM_NONE). from_meta also gives BP_EFORMAT for a zero scale (the
 * inverse divides by it). `out` is zeroed on failure. */
bp_status bp_norm_targets_to_meta(const bp_norm *nm, bp_net *net, bp_error *err);
bp_status bp_norm_targets_from_meta(bp_norm *out, const bp_net *net, bp_error *err);

/* ------------------------------------------------------------------------ */
/* Text (character-level language models)                                    */
/* ------------------------------------------------------------------------ */

/* How a text becomes symbols. */
typedef enum bp_text_encoding {
    BP_TEXT_UTF8 = 0,   /* Unicode characters (code points) decoded from UTF-8, strictly:
                           an overlong form, a surrogate, a code point above U+10FFFF, a
                           stray continuation byte or a truncated sequence is an error;
                           one byte order mark at the start is skipped */
    BP_TEXT_BYTES       /* bytes 0..255: any file, nothing decoded or skipped */
} bp_text_encoding;

/* "utf8", "bytes"; the parser also takes "utf-8" and returns BP_EINVAL for
 * another word. */
const char *bp_text_encoding_name(bp_text_encoding e);
bp_status bp_text_encoding_parse(const char *name, bp_text_encoding *out, bp_error *err);

/* A vocabulary: token id i is symbols[i] (a code point, or a byte value),
 * the symbols strictly increasing. Free with bp_vocab_free. */
typedef struct bp_vocab {
    bp_text_encoding encoding;
    int size;             /* tokens; ids are 0..size-1 */
    uint32_t *symbols;    /* [size], owned */
} bp_vocab;

/* Release the symbols and zero the struct. Accepts NULL. */
void bp_vocab_free(bp_vocab *v);

/* The vocabulary of a text: every distinct symbol of `size` bytes at
 * `text`, in increasing order (so the ids depend only on the set of
 * symbols). `name` (may be NULL: "<text>") starts the messages. BP_EFORMAT
 * "NAME:LINE:COL: invalid UTF-8 byte 0xC3 (byte offset 1234)" (LINE counts
 * LF line ends from 1, COL the characters of the line from 1) or
 * "NAME: empty text (no characters)"; BP_EINVAL, BP_ENOMEM. `out` is zeroed
 * on failure. Linear in `size`; 136 KiB of scratch for UTF-8. */
bp_status bp_vocab_build(bp_vocab *out, const void *text, size_t size, bp_text_encoding enc,
                         const char *name, bp_error *err);

/* The id of a symbol, or -1 when the vocabulary does not hold it. */
int bp_vocab_id(const bp_vocab *v, uint32_t symbol);

/* The bytes of token `id` (its UTF-8 encoding, or its one byte) into out;
 * returns their count 1..4, or 0 when id is not an id of v. */
int bp_vocab_token_bytes(const bp_vocab *v, int id, char out[4]);

/* Token ids of a text, with v->encoding: ids (caller-owned, room for at
 * least `size` ids: a text never has more symbols than bytes) receive the
 * ids and *n their count (0 for an empty text). BP_EFORMAT
 * "NAME:LINE:COL: character 'é' (U+00E9) is not in the model's vocabulary"
 * (a byte text: "byte 0xE9"; control characters by code point only, "\n",
 * "\r" and "\t" escaped), or the invalid UTF-8 message of bp_vocab_build;
 * BP_EINVAL for a NULL argument or an invalid vocabulary. *n is 0 on
 * failure (ids may be partly written). */
bp_status bp_text_ids(const bp_vocab *v, const void *text, size_t size, const char *name,
                      int32_t *ids, size_t *n, bp_error *err);

/* The vocabulary as text: its symbols in decimal, joined by commas
 * ("10,32,33,101"), written into buf like snprintf (terminated when size >
 * 0; buf may be NULL with size 0). Returns the length of the full text. */
size_t bp_vocab_format(const bp_vocab *v, char *buf, size_t size);

/* Inverse of bp_vocab_format for `enc`: canonical decimals (digits only,
 * no sign, space or leading zero) joined by single commas, each a byte
 * value (0..255) or a code point (0..1114111, not a surrogate), strictly
 * increasing. BP_EFORMAT with "vocabulary: ..." for an empty text, a
 * value that is not such a number, out of range, a duplicate or a value
 * below the one before it; BP_ENOMEM. `out` is zeroed on failure. */
bp_status bp_vocab_parse(bp_vocab *out, const char *text, bp_text_encoding enc, bp_error *err);

/* Store in / read from a network's metadata: "vocab" (bp_vocab_format) and
 * "encoding" (bp_text_encoding_name). When the network's first layer is an
 * embedding, it must take exactly v->size ids: to_meta gives BP_ESHAPE,
 * from_meta BP_EFORMAT otherwise. from_meta: BP_EFORMAT "model metadata:
 * ..." when a key is missing or invalid (bp_vocab_parse's reasons); `out`
 * is zeroed on failure. */
bp_status bp_vocab_to_meta(const bp_vocab *v, bp_net *net, bp_error *err);
bp_status bp_vocab_from_meta(bp_vocab *out, const bp_net *net, bp_error *err);

/* ------------------------------------------------------------------------ */
/* Training                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum bp_loss {
    BP_LOSS_MSE = 0,       /* mean over all elements of (y - t)^2 */
    BP_LOSS_CROSS_ENTROPY, /* mean over rows of -log softmax(z)[label]; t = class index */
    BP_LOSS_BCE            /* mean over elements of the logistic loss on logits z */
} bp_loss;
/* A final softmax layer with BP_LOSS_CROSS_ENTROPY (or a final sigmoid with
 * BP_LOSS_BCE) is fused into the loss: the loss is computed on the logits
 * before it, in a numerically stable way, and bp_forward still returns
 * probabilities. */

/* Steps per sample of the loss: T when the output the loss sees is a
 * sequence [T, K] (a dense on every step of a recurrent layer's output),
 * else 1. With T > 1, cross-entropy takes T class indices per sample (one
 * per step: the targets are [n, T]) and averages over every step of every
 * sample, accuracy counts steps, and mse/bce average over every element. */
int bp_net_loss_steps(const bp_net *net, bp_loss loss);

typedef enum bp_optimizer {
    BP_SGD = 0,     /* p -= lr g */
    BP_MOMENTUM,    /* torch.optim.SGD(momentum, dampening) */
    BP_NESTEROV,    /* torch.optim.SGD(momentum, nesterov=True) */
    BP_ADAM,        /* torch.optim.Adam */
    BP_ADAMW,       /* torch.optim.AdamW (decoupled weight decay) */
    BP_RMSPROP,     /* torch.optim.RMSprop (not centered) */
    BP_ADAGRAD      /* torch.optim.Adagrad */
} bp_optimizer;

/* Learning-rate schedule, evaluated per optimizer step t = 0, 1, 2, ...:
 *   warm-up (t < warmup):   factor = (t + 1) / warmup
 *   then with s = t - warmup:
 *   BP_SCHED_CONSTANT       factor = 1
 *   BP_SCHED_STEP           factor = gamma ^ floor(s / step_size)
 *   BP_SCHED_EXP            factor = gamma ^ s
 *   BP_SCHED_COSINE         factor = m + (1 - m) (1 + cos(pi min(s, T) / T)) / 2,
 *                           m = min_lr / lr, T = max(1, total_steps - warmup)
 * and lr(t) = lr * factor. */
typedef enum bp_schedule {
    BP_SCHED_CONSTANT = 0,
    BP_SCHED_STEP,
    BP_SCHED_EXP,
    BP_SCHED_COSINE
} bp_schedule;

struct bp_epoch_info;
struct bp_step_info;

/* Everything that configures training. Fill with bp_train_config_default,
 * then change fields. Fields marked [fit] are only used by bp_fit. */
typedef struct bp_train_config {
    bp_loss loss;
    bp_optimizer optimizer;
    double lr;            /* learning rate */
    double momentum;      /* BP_MOMENTUM/BP_NESTEROV (default 0.9), BP_RMSPROP (default 0) */
    double dampening;     /* BP_MOMENTUM (default 0; must be 0 for Nesterov) */
    double beta1, beta2;  /* Adam/AdamW (0.9, 0.999) */
    double eps;           /* Adam/AdamW/RMSprop 1e-8, Adagrad 1e-10 */
    double alpha;         /* RMSprop smoothing constant (0.99) */
    double lr_decay;      /* Adagrad lr_decay (0) */
    double weight_decay;  /* torch's weight_decay on every parameter: coupled
                             (g += wd p) for all but AdamW, decoupled for AdamW
                             (default 0, AdamW 0.01) */
    double l1;            /* adds l1 * sum|W| over dense weights to the loss */
    double l2;            /* adds l2 / 2 * sum W^2 over dense weights to the loss */
    double clip_value;    /* > 0: clamp each gradient to [-v, v] (first) */
    double clip_norm;     /* > 0: rescale gradients to global L2 norm <= c (then) */
    bp_schedule schedule;
    int warmup;           /* linear warm-up steps (0: none) */
    int step_size;        /* BP_SCHED_STEP period in steps */
    double gamma;         /* BP_SCHED_STEP / BP_SCHED_EXP factor */
    double min_lr;        /* BP_SCHED_COSINE floor */
    long total_steps;     /* BP_SCHED_COSINE length. 0: only in bp_fit, where each call
                             ends the curve at its last step (steps done before the call
                             + epochs * steps per epoch); bp_train_step then gives BP_EINVAL */
    int freeze;           /* keep the first `freeze` parametric layers (dense, conv,
                             batchnorm, recurrent, embedding) fixed; a frozen batchnorm
                             normalizes with its
                             running statistics and does not update them */
    int augment_hflip;    /* [fit] image inputs [C, H, W]: flip each training sample
                             horizontally with probability 1/2 (default 0) */
    int augment_shift;    /* [fit] image inputs: translate each training sample by a
                             random (dy, dx) in [-s, s]^2, zero fill (default 0) */

    int batch_size;       /* [fit] 0 = full batch, 1 = stochastic, default 32 */
    int epochs;           /* [fit] default 10 */
    int shuffle;          /* [fit] reshuffle every epoch (default 1) */
    uint64_t seed;        /* shuffling and dropout randomness */
    int patience;         /* [fit] early stopping: stop after `patience`
                             epochs without improvement of the validation loss
                             (training loss without validation data) and
                             restore the best weights; 0 = off */
    double min_delta;     /* [fit] improvement smaller than this does not count */
    /* [fit] called after every epoch; return non-zero to stop (bp_fit then
     * returns BP_OK with stopped_early set). May be NULL. */
    int (*on_epoch)(const struct bp_epoch_info *info, void *user);
    /* [fit] called after every step (for progress displays). May be NULL. */
    int (*on_step)(const struct bp_step_info *info, void *user);
    void *user;           /* passed to the callbacks */
    int sync_batchnorm;   /* data-parallel (bp_trainer_set_comm): batchnorm layers
                             normalize with the statistics of the whole global batch
                             (torch's SyncBatchNorm); 0 (default): each rank's own
                             slice, as DistributedDataParallel does */
    bp_precision precision; /* BP_PRECISION_F32 (default) or _BF16 (see bp_precision):
                             bp_trainer_create sets the network's precision to it
                             (bp_net_set_precision), which stays after the trainer
                             is freed (a failed bp_trainer_create leaves it as it
                             was). Added after 0.1.0, at the end: code compiled
                             against an older header must be rebuilt. */
} bp_train_config;

/* Fill `cfg` with PyTorch's defaults for `opt` (lr: SGD family 0.01, Adam
 * and AdamW 0.001, RMSprop 0.01, Adagrad 0.01) and cross-entropy loss. */
void bp_train_config_default(bp_train_config *cfg, bp_optimizer opt);

/* Per-step progress, for on_step. */
typedef struct bp_step_info {
    int epoch, epochs;        /* 1-based epoch */
    int batch, batches;       /* 1-based batch within the epoch */
    long step;                /* optimizer steps done so far (1-based) */
    long samples;             /* samples seen in this epoch */
    double loss;              /* running mean loss over this epoch */
    double lr;                /* learning rate of this step */
    double seconds;           /* since the epoch started */
} bp_step_info;

/* Per-epoch summary and diagnostics, for on_epoch. Arrays are indexed by
 * layer (0 .. n_layers-1) and owned by the trainer (valid in the callback). */
typedef struct bp_epoch_info {
    int epoch, epochs;        /* 1-based */
    long step;                /* optimizer steps done so far */
    double train_loss;        /* mean training loss over the epoch's steps */
    double train_accuracy;    /* classification only, else NaN */
    double val_loss;          /* NaN without validation data */
    double val_accuracy;      /* NaN without validation data or for regression */
    double lr;                /* learning rate of the epoch's last step */
    double seconds;           /* wall time of the epoch */
    int best_epoch;           /* epoch with the best monitored loss so far */
    int n_layers;
    /* RMS over the epoch's steps of each layer's gradient L2 norm (weights
     * and bias together); 0 for layers without parameters. */
    const double *grad_norm;
    /* For relu layers: fraction of units that output 0 for every training
     * sample of the epoch ("dead" units); -1 for other layers. */
    const double *dead_fraction;
    /* Recurrent layers (rnn, lstm, gru): RMS over the epoch's steps of the
     * L2 norm of the loss gradient reaching the layer's gate
     * pre-activations at the first step of the sequence and at its last
     * step (over the batch); 0 for other layers. Backpropagation through
     * time carries the gradient from step T-1 down to step 0, so a ratio
     * first / last far below 1 shows it vanishing through time, far above
     * 1 exploding (clip with clip_norm). Added after 0.1.0, at the end. */
    const double *grad_first_step;
    const double *grad_last_step;
} bp_epoch_info;

/* The trainer owns the optimizer state, the schedule position, the
 * gradients and the workspaces of one network (which it borrows: the net
 * must outlive the trainer). */
typedef struct bp_trainer bp_trainer;

/* Validate `cfg` against `net` and allocate everything a step needs for
 * batches of up to `max_batch` samples (>= 1). BP_EINVAL names the bad
 * field; BP_ESHAPE if the loss does not fit the output layer. */
bp_status bp_trainer_create(bp_trainer **out, bp_net *net,
                            const bp_train_config *cfg, int max_batch,
                            bp_error *err);
void bp_trainer_free(bp_trainer *tr);

/* The memory check of bp_trainer_create made from a spec alone, before the
 * network exists: everything bp_net_create(n_inputs, spec) and then
 * bp_trainer_create(cfg, max_batch) would hold (parameters, gradients,
 * optimizer state, activations and workspaces for max_batch, bp_fit's
 * copies). Nothing is allocated but the parsed spec. BP_OK; BP_ENOMEM with
 * bp_memory_check's message; BP_ESPEC / BP_EINVAL / BP_ESHAPE for a bad
 * spec, n_inputs or max_batch. Lets a caller refuse a network too large
 * for the machine before spending time creating it. */
bp_status bp_train_memory_check(const char *spec, int n_inputs, const bp_train_config *cfg,
                                int max_batch, bp_error *err);
/* The same for a network on inputs of shape `input` (conv nets). */
bp_status bp_train_memory_check_shaped(const char *spec, bp_shape input,
                                       const bp_train_config *cfg, int max_batch, bp_error *err);

/* One training step on a batch x [n, inputs], y [n, targets] (targets are
 * class indices [n] for cross-entropy): forward in training mode, loss,
 * backward, penalties, clipping, optimizer update, schedule advance.
 * Never allocates. *loss_out (may be NULL) receives the data loss of the
 * batch, before the update. BP_ENONFINITE if the loss or a gradient is not
 * finite (parameters are left unchanged; the message names the step and
 * the first layer where it appeared). BP_ESHAPE if n is out of range. */
bp_status bp_train_step(bp_trainer *tr, const bp_real *x, const bp_real *y,
                        int n, double *loss_out, bp_error *err);

/* Compute loss and gradients of a batch without updating (training mode,
 * so dropout is active). The gradients are readable with bp_trainer_grad. */
bp_status bp_trainer_backward(bp_trainer *tr, const bp_real *x, const bp_real *y,
                              int n, double *loss_out, bp_error *err);

/* Gradient of layer i's weight / bias from the last step (NULL if the layer
 * has no parameters). Same shapes as bp_net_weight / bp_net_bias. */
const bp_real *bp_trainer_weight_grad(const bp_trainer *tr, int i);
const bp_real *bp_trainer_bias_grad(const bp_trainer *tr, int i);

/* Optimizer steps taken and the learning rate the next step will use. */
long bp_trainer_steps(const bp_trainer *tr);
double bp_trainer_lr(const bp_trainer *tr);

/* Outcome of bp_fit. */
typedef struct bp_fit_result {
    int epochs_run;
    int best_epoch;           /* 1-based; the weights left in the net are this epoch's
                                 when early stopping is on, else the last epoch's */
    int stopped_early;        /* patience ran out or a callback asked to stop */
    double best_loss;         /* monitored loss at best_epoch */
    double final_train_loss;
    double final_val_loss;    /* NaN without validation data */
    long steps;
} bp_fit_result;

/* Train for cfg->epochs over `train` in mini-batches of cfg->batch_size
 * (0 = all samples), reshuffled every epoch with a seeded RNG, evaluating
 * `val` (may be NULL) after each epoch, with early stopping when
 * cfg->patience > 0. The data are checked first: BP_ESHAPE if widths do
 * not match the network, BP_EINVAL for an empty set, a NaN/Inf value or a
 * class index out of range (the message gives the row and column).
 * `res` may be NULL. */
bp_status bp_fit(bp_trainer *tr, const bp_data *train, const bp_data *val,
                 bp_fit_result *res, bp_error *err);

/* ------------------------------------------------------------------------ */
/* Data-parallel training                                                    */
/* ------------------------------------------------------------------------ */

/* A communicator: what the trainer needs from MPI (or any other engine),
 * so the library itself does not depend on one. `backprop_mpi.h` fills it
 * from MPI_COMM_WORLD. Every rank must make the same calls in the same
 * order (the trainer does). Return 0 on success, non-zero on failure. */
typedef enum bp_comm_type { BP_COMM_F32 = 0, BP_COMM_F64 = 1 } bp_comm_type;
#define BP_COMM_SLOTS 64 /* reductions in flight at once (slot 0..63) */
typedef struct bp_comm {
    int rank;             /* this process, 0..size-1 */
    int size;             /* processes */
    void *ctx;            /* passed to the functions */
    /* Start summing `count` values at buf over every rank, in place; the
     * request is held in `slot` until wait completes it. */
    int (*iallreduce)(void *ctx, int slot, void *buf, size_t count, bp_comm_type type);
    /* Progress a started reduction: 1 done (the slot is free again), 0 not
     * yet, < 0 failure. May be NULL (then only wait progresses). */
    int (*test)(void *ctx, int slot);
    /* Complete the reduction in `slot` (a free slot: returns 0 at once). */
    int (*wait)(void *ctx, int slot);
    /* Copy `bytes` at buf from rank `root` to every other rank. */
    int (*bcast)(void *ctx, void *buf, size_t bytes, int root);
} bp_comm;

/* Make tr train data-parallel with the ranks of `comm` (copied; its ctx
 * must outlive tr), as torch's DistributedDataParallel does. Collective:
 * every rank calls it after bp_trainer_create with the same network and
 * settings. It checks that the ranks agree (parameter and layer counts,
 * batch size, epochs, seed, shuffling, optimizer, learning rate, loss,
 * freeze, sync_batchnorm: BP_ECOMM naming the first rank that differs),
 * then copies rank 0's parameters and buffers to every rank.
 * From then on bp_fit on each rank reads the whole data set (the same on
 * every rank: bp_fit checks row counts, widths and a hash of the values),
 * draws the same seeded permutation, and takes its contiguous share of
 * each global batch of cfg.batch_size rows (row counts differ by at most
 * one between ranks; every rank needs at least one row of each batch).
 * The loss gradient is divided by the global batch, the gradients are
 * summed over the ranks in buckets of about 1 MiB started as each layer's
 * backward finishes, and every rank applies the same update. Validation is
 * split across the ranks and summed; the epoch's figures, early stopping
 * and the callbacks' stop requests are the same on every rank. Dropout
 * and augmentation draw per rank. Without sync_batchnorm, batchnorm uses
 * each rank's own slice and the running statistics are rank 0's (copied
 * at every epoch's end, as DDP's broadcast_buffers). bp_train_step and
 * bp_trainer_backward stay local (one rank's batch, no communication).
 * A stateful network (bp_net_set_stateful, truncated BPTT) trains data-
 * parallel too: each batch holds one window of every stream, so each rank
 * carries the streams of its share of the batch; set its stream count to
 * that share, B (rank + 1) / size - B rank / size with B bp_fit's batch
 * (cfg.batch_size, or every row for 0 or more than the rows; bp_fit
 * checks). A comm with size 1 is accepted and changes nothing.
 * On BP_ECOMM from any later call the other ranks' state is unknown: stop. */
bp_status bp_trainer_set_comm(bp_trainer *tr, const bp_comm *comm, bp_error *err);

/* Collective agreement on a failure: every rank passes the status of its
 * own last step (and its error, or NULL); if any rank failed, every rank
 * gets BP_ECOMM with "rank R: MESSAGE" of the first failing rank, else
 * BP_OK. With a NULL or one-rank comm it returns `local` (and copies
 * local_err into err). For callers that prepare data and networks on every rank before
 * training, so one rank's unreadable file stops all of them with its
 * message instead of leaving the others waiting. */
bp_status bp_comm_agree(const bp_comm *comm, bp_status local, const bp_error *local_err,
                        bp_error *err);

/* Mean loss (and accuracy for cross-entropy/bce, else NaN) of `net` on a
 * data set, in inference mode, in batches. Either output may be NULL. */
bp_status bp_evaluate(bp_net *net, bp_loss loss, const bp_data *data,
                      double *loss_out, double *accuracy_out, bp_error *err);

/* ------------------------------------------------------------------------ */
/* Gradient check                                                            */
/* ------------------------------------------------------------------------ */

typedef struct bp_gradcheck_result {
    double max_rel_error;     /* worst |analytic - numeric| / max(|a|, |n|, floor)
                                 over the judged entries (0 if none) */
    int worst_layer;          /* layer index of the worst judged parameter, -1 if none */
    size_t worst_index;       /* index in that layer's [weight..., bias...] */
    double analytic, numeric; /* the two gradients at the worst parameter */
    size_t checked;           /* parameters compared, judged or not */
    /* Added after 0.1.0, at the end so the fields above keep their offsets
     * (the struct grew: code built against an older header must be rebuilt). */
    size_t kinks;             /* parameters not judged: their stencil crosses a kink */
    double kink_max_rel_error; /* worst relative error among those (information only) */
} bp_gradcheck_result;

/* Compare backprop's gradient of `loss` on the batch x [n, inputs], y with
 * central finite differences for every parameter of the network:
 *   numeric = [8 (L(p+h) - L(p-h)) - (L(p+2h) - L(p-2h))] / (12 h), h = eps
 * (fourth-order accurate). Dropout masks are drawn once and reused for
 * every evaluation. eps <= 0 and floor <= 0 pick defaults for the build's
 * precision (double: 1e-3 and 1e-9; float: 1e-2 and 1e-3); an eps above 1,
 * NaN or Inf is BP_EINVAL. Parameters are restored afterwards.
 *
 * Kinks: relu and leaky_relu have no derivative where their input is 0.
 * A parameter whose perturbations (p +- h, p +- 2h) move the input of some
 * relu/leaky_relu unit, for some sample, to the other side of 0 than at p
 * is counted in `kinks` and left out of max_rel_error and worst_*: there
 * the difference quotient mixes two slopes and its disagreement with the
 * one-sided derivative backprop uses says nothing about the code. Every
 * parameter is still counted in `checked`; checked - kinks were judged.
 * The other layers and the losses are smooth. */
bp_status bp_gradcheck(bp_net *net, bp_loss loss, const bp_real *x,
                       const bp_real *y, int n, double eps, double floor,
                       bp_gradcheck_result *res, bp_error *err);

/* ------------------------------------------------------------------------ */
/* Export: ONNX and standalone C                                             */
/* ------------------------------------------------------------------------ */

/* Options of bp_export_onnx and bp_export_c. Zero-initialize, then set. */
typedef struct bp_export_options {
    /* C: the prefix of every generated identifier and the file names
     * (NAME.h, NAME.c): a C identifier [A-Za-z_][A-Za-z0-9_]* of at most
     * 63 characters that is not a C keyword. ONNX: the graph's name.
     * NULL: "model". */
    const char *name;
    /* C only: also generate NAME_predict_int8, post-training quantized
     * with the calibration inputs below (int8 weights per output channel,
     * int8 activations per tensor, int32 accumulation, fixed-point
     * requantization, batch norm folded). */
    int int8;
    /* Calibration inputs for int8: calib_n rows of bp_net_inputs(net)
     * values, raw (as NAME_predict takes them: before the model's stored
     * input normalization, which the export applies). Not owned. */
    const bp_real *calib;
    int calib_n;
} bp_export_options;

/* Write the network as an ONNX model (opset 13) to `path`, atomically.
 * Every layer kind has its ONNX form: dense -> Gemm (MatMul + Add on a
 * sequence), activations, dropout as Identity, conv -> Conv, pools ->
 * MaxPool / AveragePool / GlobalAveragePool, flatten -> Flatten, batch
 * norm -> BatchNormalization (inference form: running statistics), rnn /
 * lstm / gru -> RNN / LSTM / GRU, last -> Gather, embedding -> Gather on
 * int64 token ids. The model's stored input normalization (metadata
 * "normalize", "norm_shift", "norm_scale") becomes the graph's first nodes
 * (Sub, Mul), a regression model's target scaling its last ones; the
 * metadata become the model's metadata_props and doc string. The graph
 * input "input" is [N, per-sample shape] float32 (int64 [N, T] token ids
 * for a model that starts with an embedding), the output "output"
 * [N, outputs...] float32, N symbolic. The protobuf is encoded by the
 * library's own small writer (src/export_onnx.c).
 * BP_EINVAL (NULL arguments, a bad name), BP_EFORMAT (malformed
 * normalization metadata), BP_EUNSUPPORTED (the double build: ONNX holds
 * float32; a layer kind without an ONNX form, named in the message; a
 * model over protobuf's 2 GiB limit; normalized token ids), BP_EIO (cannot
 * write; nothing is left behind), BP_ENOMEM. */
bp_status bp_export_onnx(bp_net *net, const char *path, const bp_export_options *opt,
                         bp_error *err);

/* Write the network as standalone C99 to DIR/NAME.h and DIR/NAME.c (see
 * bp_export_options.name): the weights as const arrays, one function
 * `void NAME_predict(const float *in, float *out)` (in: one raw sample of
 * bp_net_inputs values, normalized by the generated code as the model
 * says; out: bp_net_outputs values, a regression model's in the targets'
 * units), and with opt->int8 `void NAME_predict_int8(const float *in,
 * float *out)`. No allocation, no mutable globals, no dependency beyond
 * <math.h> (none for the int8 code); activations live on the stack (the
 * header says how many bytes; indices need a 32-bit int, checked by an
 * #error). Both files are written only when both can be: on failure
 * neither is changed (an existing NAME.c is kept by a hard link until
 * NAME.h is in place; on a file system without hard links a failure of
 * that last rename leaves the new NAME.c beside the old NAME.h). A
 * symbolic link at NAME.c or NAME.h is replaced by a file.
 * BP_EINVAL (NULL arguments, a bad name, int8 without calibration rows or
 * with a NaN/Inf in them), BP_EUNSUPPORTED (int8 on a layer kind it does
 * not quantize: the message names it), BP_EFORMAT (malformed metadata),
 * BP_EIO (cannot write), BP_ENOMEM. */
bp_status bp_export_c(bp_net *net, const char *dir, const bp_export_options *opt,
                      bp_error *err);

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

/* Parse an architecture spec without building a network: fills up to
 * `max` descriptions and the count. Errors as bp_net_create. */
bp_status bp_spec_parse(const char *spec, bp_layer_desc *layers, int max,
                        int *n_layers, bp_error *err);

/* Names used by the CLI and in metadata ("adam", "cross-entropy", ...).
 * The parsers return BP_EINVAL for an unknown name. */
const char *bp_optimizer_name(bp_optimizer o);
const char *bp_loss_name(bp_loss l);
const char *bp_schedule_name(bp_schedule s);
bp_status bp_optimizer_parse(const char *name, bp_optimizer *out, bp_error *err);
bp_status bp_loss_parse(const char *name, bp_loss *out, bp_error *err);
bp_status bp_schedule_parse(const char *name, bp_schedule *out, bp_error *err);

#ifdef __cplusplus
}
#endif
#endif /* BACKPROP_H */
