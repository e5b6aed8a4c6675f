/*
 * internal.h - definitions shared by the library's source files (not
 * installed). The public contract is include/backprop.h.
 */
#ifndef BP_INTERNAL_H
#define BP_INTERNAL_H

#include "backprop.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* bfloat16 <-> float, the one definition (bp_k_to_bf16, the bf16 kernels,
 * a bf16 chain's element loops): widening is exact; rounding is to nearest
 * even, and a NaN stays a (quiet) NaN. */
static inline float bp_bf16_wide(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline uint16_t bp_bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t q = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? q : r);
}

/* Fill *err (if non-NULL) with a printf-style message and return `code`.
 * The one way every library function reports a failure. */
bp_status bp_fail(bp_error *err, bp_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Allocation helpers: NULL on failure or on size overflow. The 64-byte
 * aligned variant is freed with free(). */
void *bp_alloc_array(size_t count, size_t size);    /* zeroed */
void *bp_alloc_aligned(size_t count, size_t size);  /* zeroed, 64-byte aligned */
char *bp_strdup(const char *s);

/* Write `size` bytes to `path` atomically (src/safetensors.c): a temporary
 * file in the same directory, fsync, rename; a symbolic link's target is
 * replaced, a FIFO or device written in place. On failure the destination
 * is untouched and no temporary file is left. BP_EIO "PATH: what: why",
 * BP_EINVAL for an empty path, BP_ENOMEM. Does not own `buf`. */
bp_status bp_write_file_atomic(const char *path, const void *buf, size_t size, bp_error *err);
/* Tensor "LAYER.NAME" of the network (a state_dict key, e.g. 3 and
 * "running_mean") into *out, as bp_net_tensor gives it; 0 when the layer
 * has no such tensor (src/net.c). */
int bp_net_find_tensor(bp_net *net, int layer, const char *name, bp_tensor *out);

/* The first half of that: `size` bytes into a new temporary file next to
 * `path` ("PATH.tmp.XXXXXX"), given `mode`, fsync'd and closed; its
 * malloc'd name in *tmp for the caller to rename (or unlink). On failure
 * no file is left; messages name `shown`. BP_EIO, BP_ENOMEM. */
bp_status bp_write_temp(const char *path, const char *shown, const void *buf, size_t size,
                        unsigned mode, char **tmp, bp_error *err);

/* ---- memory checks (src/mem.c) ----
 * Saturating arithmetic for size computations: UINT64_MAX means "does not
 * fit", never a wrapped small number. */
uint64_t bp_mul_sat(uint64_t a, uint64_t b);
uint64_t bp_add_sat(uint64_t a, uint64_t b);
/* Before allocating: `total` bytes is everything the object will hold,
 * `fresh` the part still to be allocated. BP_ENOMEM with "SUBJECT needs
 * 745.1 GiB (DETAIL); this machine has 23.4 GiB" (or the ulimit -v / cgroup
 * limit that does not fit) when it exceeds the physical memory (total) or
 * what a limit leaves (fresh); BP_OK otherwise. */
bp_status bp_mem_check(uint64_t total, uint64_t fresh, const char *subject, const char *detail,
                       bp_error *err);

/* ---- random numbers: xoshiro256**, seeded with splitmix64 ---- */
typedef struct bp_rng {
    uint64_t s[4];
} bp_rng;
void bp_rng_seed(bp_rng *r, uint64_t seed);
uint64_t bp_rng_next(bp_rng *r);
double bp_rng_uniform(bp_rng *r);            /* [0, 1) */
double bp_rng_normal(bp_rng *r);             /* N(0, 1), Box-Muller */
uint64_t bp_rng_below(bp_rng *r, uint64_t n); /* uniform in [0, n), n > 0 */

/* ---- GEMM: C = alpha op(A) op(B) + beta C, row-major ----
 * op(A) is [M, K], op(B) is [K, N], C is [M, N]; lda/ldb/ldc are row
 * strides of the stored matrices. bp_gemm uses the GEMM library (oneDNN in
 * the float build); bp_gemm_ref is the plain triple loop kept for tests. */
void bp_gemm(int trans_a, int trans_b, int M, int N, int K, bp_real alpha,
             const bp_real *A, int lda, const bp_real *B, int ldb,
             bp_real beta, bp_real *C, int ldc);
void bp_gemm_ref(int trans_a, int trans_b, int M, int N, int K, bp_real alpha,
                 const bp_real *A, int lda, const bp_real *B, int ldb,
                 bp_real beta, bp_real *C, int ldc);

/* ---- thread counts (src/gemm.c) ----
 * Threads follow the work: each parallel region (a GEMM, the optimizer
 * update, a CSV parse) asks bp_threads_for how many threads its size is
 * worth, so a small layer runs on the calling thread alone and never pays
 * a fork, a barrier and the waiting of the other threads (which, on a busy
 * machine, wait for cores that other processes hold).
 * bp_cores: cores available to the process (affinity mask, cgroup quota).
 * bp_threads_max: the most threads a region may use: bp_set_threads' value
 * (else OpenMP's max threads), at most bp_cores.
 * bp_threads_for: threads for a region of `work` units where each thread
 * should get at least `grain` units: floor(work / grain) clamped to
 * [1, bp_threads_max()]. */
#define BP_GEMM_GRAIN 1e6 /* FLOPs per thread: ~10 us at ~100 GFLOP/s, well above a fork + join */
int bp_cores(void);
int bp_threads_max(void);
int bp_threads_for(double work, double grain);

/* ---- prepared GEMMs (oneDNN matmul primitives, float build) ----
 * dnnl_sgemm's row-major C = A B^T (the dense forward) scales poorly to two
 * threads; oneDNN's matmul primitive (brgemm kernels) does not. A bp_mm is
 * one primitive for fixed sizes: C [M, N] = op(A) op(B) (+ bias [N] on every
 * row), beta = 0. Creating one JIT-compiles a kernel (allocation, ~ms), so
 * it is done when workspaces are reserved, never inside a training step.
 * bp_mm_create returns NULL when primitives are unavailable (double build,
 * BP_GEMM=sgemm in the environment, shape below BP_MM_MIN_WORK, or any
 * oneDNN failure): callers then use bp_gemm. */
#define BP_MM_MIN_WORK 65536 /* M * N * K below this: sgemm's lower call overhead wins */
typedef struct bp_gemm_ctx bp_gemm_ctx;
typedef struct bp_mm bp_mm;
bp_gemm_ctx *bp_gemm_ctx_create(void);   /* NULL: no primitives */
void bp_gemm_ctx_free(bp_gemm_ctx *ctx);
bp_mm *bp_mm_create(bp_gemm_ctx *ctx, int trans_a, int trans_b, int M, int N, int K, int with_bias);
/* Run it on the thread count bp_threads_for chose at creation; returns 0
 * (did nothing) if that choice is different now (bp_set_threads changed),
 * so the caller falls back to bp_gemm. */
int bp_mm_run(bp_mm *mm, const bp_real *A, const bp_real *B, const bp_real *bias, bp_real *C);
/* The same with A and B in bfloat16 (uint16_t: the high half of a float's
 * bits), accumulated and written in float (BP_PRECISION_BF16). NULL where
 * bp_bf16_supported() is 0, besides bp_mm_create's cases. A bp_mm runs
 * with the function of its making only. */
bp_mm *bp_mm_create_bf16(bp_gemm_ctx *ctx, int trans_a, int trans_b, int M, int N, int K,
                         int with_bias);
int bp_mm_run_bf16(bp_mm *mm, const uint16_t *A, const uint16_t *B, const bp_real *bias,
                   bp_real *C);
void bp_mm_free(bp_mm *mm);

/* ---- the network ---- */
enum { BP_MM_FWD, BP_MM_DW, BP_MM_DX, BP_MM_KINDS };
#define BP_MM_SLOTS 3 /* batch sizes with prepared fast paths per layer */
typedef struct bp_layer_ops bp_layer_ops; /* src/layers/layer.h */
typedef struct bp_layer {
    const bp_layer_ops *ops; /* the table of its kind (src/layers/) */
    bp_layer_kind kind;
    bp_layer_desc desc;  /* as parsed, defaults filled in */
    double param;        /* leaky_relu slope, dropout probability */
    bp_shape in_shape, out_shape; /* per sample */
    int in, out;         /* flat per-sample sizes of input and output */
    int rows;            /* dense on [T, F]: T rows per sample; else 1 */
    int frozen;          /* set by the trainer: no gradient, frozen semantics */
    bp_real *w;          /* first parameter tensor (weight), inside net->params */
    bp_real *b;          /* second one (bias), inside net->params; NULL if none */
    size_t offset;       /* index of w in net->params */
    size_t n_params;     /* trainable values (all its parameter tensors) */
    bp_real *buf;        /* F32 buffers (running statistics), inside net->buffers */
    size_t buf_offset, n_buf;
    int64_t count;       /* I64 buffer (batchnorm's num_batches_tracked) */
    void *ws;            /* per-batch workspace (ops->ws_bytes), inside net->ws */
    /* dense: prepared GEMMs by kind, for the batch sizes mm_batch[slot] */
    bp_mm *mm[BP_MM_KINDS][BP_MM_SLOTS];
    void *fast[BP_MM_SLOTS]; /* other kinds' fast-path objects, per slot */
    /* Layouts of its input and output in each prepared slot (bp_net_prepare
     * plans them): 1 = plain [n, C, H, W]; B (8 or 16) = oneDNN's nChw{B}c,
     * [n, C/B, H, W, B], channel c at block c / B, lane c % B. Without a
     * slot (batch size not prepared) everything is plain. */
    int blk_in[BP_MM_SLOTS], blk_out[BP_MM_SLOTS];
    /* Element type of its input and output in each prepared slot: 0 =
     * float (bp_real), 1 = bfloat16 (uint16_t: the high half of a float's
     * bits; the float-sized buffer half used). A bf16 network's slots keep
     * blocked activations in bfloat16 from a conv to the layer that ends
     * the chain (bp_net_prepare's plan; layer.h, bp_bf16_kind). Without a
     * slot everything is float. */
    unsigned char bf_in[BP_MM_SLOTS], bf_out[BP_MM_SLOTS];
    /* 1: the layer before computes this one in the slot (ops->fused_next):
     * its passes are skipped, its output is its input (bp_net_forward_ws) */
    unsigned char skip[BP_MM_SLOTS];
    /* Recurrent layers: values of carried state per sample (H, or 2H for
     * an LSTM: h then c), and the state of net->streams samples
     * [streams, state_w] (bp_net_set_stateful; NULL when not stateful). */
    int state_w;
    bp_real *state;
} bp_layer;

struct bp_net {
    int n_inputs;
    bp_shape input_shape;
    int n_layers;
    bp_layer *layers;      /* [n_layers] */
    size_t n_params;
    bp_real *params;       /* every parameter, in layer order: w then b */
    size_t n_buffers;
    bp_real *buffers;      /* every F32 buffer, in layer order */
    char *spec;            /* canonical spec string */
    int n_meta, cap_meta;
    char **meta_key, **meta_val;

    /* Workspaces. Training (bp_net_reserve_train, by the trainer): every
     * layer's output, which the backward pass reads, and every layer's
     * workspace, for max_batch samples. Inference (bp_net_reserve): two
     * buffers of the widest output for infer_batch samples, which the
     * layers' outputs take in turn (each layer writes the one its input is
     * not in), so a pass holds two activations, not all of them. */
    int max_batch;
    bp_real **act_full;    /* act_full[i]: output of layer i [max_batch, out_i] */
    unsigned char *ws;     /* every layer's workspace (training) */
    int infer_batch;
    bp_real *pp[2];        /* [infer_batch * widest output] each */
    /* The outputs of the last pass (bp_net_forward_ws): act_view, filled by
     * the pass from act_full (a training pass or an inference one within
     * max_batch) or from pp (the buffer its input is not in); a layer the
     * slot skips (bp_layer.skip) gets its input's buffer. NULL before the
     * first pass. */
    bp_real **act;
    bp_real **act_view;    /* [n_layers] */
    bp_rng rng;            /* dropout randomness */
    /* Scratch of the layers that need one in inference too (recurrent
     * ones: ops->infer_ws), shared by them (one runs at a time), for
     * infer_batch samples; a pass within max_batch uses the layer's own
     * training workspace instead (bp_layer_scratch). */
    unsigned char *iws;
    /* Carried recurrent state (bp_net_set_stateful): passes of exactly
     * `streams` samples start from each layer's state and store the state
     * they end with, unless state_hold (the gradient check holds it fixed
     * over its many passes). */
    int streams;
    int state_hold;
    /* Data-parallel training (bp_trainer_set_comm): with sync_bn, a
     * batchnorm layer in training sums its statistics over comm's ranks,
     * whose slices make up a global batch of global_n samples. */
    const struct bp_comm *comm;
    int sync_bn;
    int global_n;

    /* Prepared fast paths (bp_net_prepare): batch size of each slot, 0 = free. */
    bp_gemm_ctx *gemm;
    int mm_batch[BP_MM_SLOTS];
    int mm_training[BP_MM_SLOTS]; /* slot prepared for training */
    int mm_threads[BP_MM_SLOTS];  /* bp_threads_max() it was prepared for */
    int cblk;  /* channel block of the engine's convolutions: 16, 8, or 1 (plain
                  layouts only); 0 until bp_net_prepare asks (bp_conv_block) */
    /* bp_net_set_precision: with BP_PRECISION_BF16, slots are prepared with
     * bfloat16 products, and params_bf16 [n_params] holds the bfloat16
     * copy of the parameters a dense layer's products read (each layer
     * rounds its own weights at the start of its forward pass). */
    bp_precision precision;
    uint16_t *params_bf16;
};

/* Prepare every layer's fast path (GEMMs, oneDNN primitives: forward, and
 * the backward when training) for batches of exactly n samples, in a free
 * slot; does nothing if n already has one (prepared for training when asked
 * to, for today's bp_threads_max()), if the slots are full or primitives
 * are unavailable. A slot made for another thread count is rebuilt.
 * It plans the slot's layouts first (bp_layer.blk_in / blk_out): from a
 * conv to the layer that needs plain data (a flatten, a dense, the output),
 * activations stay in the convolutions' blocked layout, so no layer between
 * reorders; with BP_PRECISION_BF16 those blocked activations are bfloat16
 * (bp_layer.bf_in / bf_out) where every layer that reads them takes it.
 * When a layer cannot make its objects for bfloat16, the slot is planned
 * again with float activations; when not for a blocked layout, plain.
 * Allocates; never called inside a training step. */
void bp_net_prepare(bp_net *net, int n, int training);
/* Make every prepared slot again, for the same batch sizes (after a change
 * of what the slots depend on: precision, synchronized batchnorm).
 * Allocates; never called inside a training step. */
void bp_net_remake_slots(bp_net *net);
/* Bytes of the activations and layer workspaces bp_net_reserve_train(batch)
 * allocates (saturating). */
uint64_t bp_net_workspace_bytes(const bp_net *net, int batch);
/* What training passes of up to max_batch samples need: every layer's
 * output and workspace (bp_net_reserve is the inference reservation).
 * BP_ENOMEM (nothing changed) when it does not fit. */
bp_status bp_net_reserve_train(bp_net *net, int max_batch, bp_error *err);
/* Largest output width of any layer (or the input width). */
size_t bp_net_widest(const bp_net *net);
/* The sizes of the network `spec` on `input` would have, without its
 * parameters or workspaces: fills *shape (layers malloc'd, free them with
 * free(shape->layers); params NULL). Errors as bp_net_create_shaped. */
bp_status bp_net_skeleton(bp_net *shape, bp_shape input, const char *spec, bp_error *err);

/* Forward pass over a batch; training != 0 enables dropout (drawing new
 * masks from net->rng) and batch statistics. Outputs land in net->act[i]
 * (every layer's after a training pass; after an inference pass beyond
 * max_batch, only the last two layers' are still there); returns the last
 * one. A training pass needs n <= max_batch (bp_net_reserve_train), an
 * inference pass n <= max_batch or n <= infer_batch (bp_net_reserve). */
const bp_real *bp_net_forward_ws(bp_net *net, const bp_real *x, int n,
                                 int training);

/* The workspace of layer L for a pass over n samples: its training one
 * (L->ws) when the training reservation covers n, else the shared
 * inference scratch (net->iws, for layers with ops->infer_ws). */
void *bp_layer_scratch(const bp_net *net, const bp_layer *L, int n, int training);

/* The loss of the last pass against targets y ([n, steps] class indices
 * for cross-entropy, else [n, outputs]) on the rows the loss sees
 * (n * bp_net_loss_steps rows of the logits' last dimension); dz and
 * correct as bp_loss_eval; with net->global_n > n, dz is the gradient
 * of the mean over a global batch of global_n samples (bp_loss_eval_part). */
double bp_net_loss_of(const bp_net *net, bp_loss loss, const bp_real *y, int n, bp_real *dz,
                      long *correct);
/* Index (row * T + step) of the first value of x [n, T] that is not a
 * token id of the network's first-layer embedding; -1 when every value is
 * one, or the network has no embedding (src/layers/sequence.c). */
long bp_net_bad_id(const bp_net *net, const bp_real *x, int n);

/* Width of one row of the logits the loss sees: outputs / steps. */
int bp_net_loss_width(const bp_net *net, bp_loss loss);

/* Index of the last layer whose output is the "logits" the loss sees:
 * n_layers-1, or n_layers-2 when a final softmax (cross-entropy) or sigmoid
 * (bce) is fused into the loss. */
int bp_loss_input_layer(const bp_net *net, bp_loss loss);

/* Add a metadata pair whose key the network does not have yet, without
 * the search bp_net_set_meta makes (so loading M distinct keys is linear,
 * not quadratic, in M). The caller guarantees the key is new. */
bp_status bp_net_meta_append(bp_net *net, const char *key, const char *value, bp_error *err);

/* Spec word of a layer kind ("dense", "relu", ...). */
const char *bp_layer_name(bp_layer_kind k);

/* ---- data-parallel helpers (src/comm.c) ----
 * bp_comm_sum: blocking in-place sum over the ranks (0, or -1 on failure;
 * a no-op for a NULL or one-rank comm). bp_comm_valid: the comm's fields
 * make sense. bp_comm_check: collective; every rank passes its status (and
 * error) and k values named by `names`; returns BP_ECOMM "rank R: MESSAGE"
 * for the first failing rank, else BP_ECOMM "WHAT: rank R's NAME is A,
 * rank 0's B" for the first value that differs from rank 0's, else BP_OK.
 * bp_comm_hash: a 64-bit hash of bytes as two exact doubles. */
int bp_comm_sum(const bp_comm *c, void *buf, size_t count, bp_comm_type type);
int bp_comm_valid(const bp_comm *c);
bp_status bp_comm_check(const bp_comm *c, bp_status local, const bp_error *local_err,
                        const double *vals, const char *const *names, int k, const char *what,
                        bp_error *err);
void bp_comm_hash(const void *p, size_t bytes, double *hi, double *lo);

/* ---- losses (src/loss.c) ----
 * Loss of logits z [n, d] against targets t ([n] class indices for
 * cross-entropy, else [n, d]), reduced like PyTorch (mean). If dz is not
 * NULL it receives dL/dz [n, d]. If correct is not NULL it receives the
 * number of correctly classified samples (cross-entropy: argmax == label;
 * bce: (z > 0) == (t > 0.5) per element; mse: 0). The sum is in double. */
double bp_loss_eval(bp_loss loss, const bp_real *z, const bp_real *t, int n, int d,
                    bp_real *dz, long *correct);
/* The same with the gradient of a mean over grad_n >= n rows: dz is what
 * one process computes for these n rows of a batch of grad_n (the rest on
 * other ranks); the returned loss is still the mean over the n rows. */
double bp_loss_eval_part(bp_loss loss, const bp_real *z, const bp_real *t, int n, int d,
                         long grad_n, bp_real *dz, long *correct);

/* ---- optimizers (src/optim.c) ----
 * One update of `n` parameters p with gradients g (already including
 * penalties and clipping). s1, s2 are state arrays of n values (zero at
 * start; which ones are used depends on the optimizer), `t` is the 1-based
 * step count and `lr` this step's learning rate. Exactly torch.optim's rule. */
void bp_optim_update(const bp_train_config *cfg, bp_real *p, const bp_real *g,
                     bp_real *s1, bp_real *s2, size_t n, long t, double lr);
/* Number of state arrays (0, 1 or 2) `cfg->optimizer` needs. */
int bp_optim_state_count(const bp_train_config *cfg);
/* Learning rate of step t (0-based) under cfg's schedule. */
double bp_schedule_lr(const bp_train_config *cfg, long t);

/* ---- gradient check (src/gradcheck.c) ----
 * bp_gradcheck, comparing the finite differences with `analytic`
 * [n_params, in net->params order] instead of backprop's gradient when it
 * is not NULL: lets tests check that a wrong gradient is caught. */
bp_status bp_gradcheck_against(bp_net *net, bp_loss loss, const bp_real *x, const bp_real *y,
                               int n, double eps, double floor, const bp_real *analytic,
                               bp_gradcheck_result *res, bp_error *err);

/* ---- model files (src/safetensors.c) ----
 * In-memory twins of bp_net_load / bp_net_load_weights / bp_net_save, for
 * the fuzzer and tests. `data` [size] is a whole safetensors image; `name`
 * (may be NULL) prefixes error messages in place of a path. The buffer
 * loaders validate exactly like the file ones. bp_net_save_buffer returns a
 * malloc'ed image in *out (free with free()) of *out_size bytes; it fails
 * with BP_EINVAL when a parameter is not finite in float32. */
bp_status bp_net_load_buffer(bp_net **out, const uint8_t *data, size_t size,
                             const char *name, bp_error *err);
bp_status bp_net_load_weights_buffer(bp_net *net, const uint8_t *data, size_t size,
                                     const char *name, bp_error *err);
bp_status bp_net_save_buffer(const bp_net *net, uint8_t **out, size_t *out_size,
                             bp_error *err);

#endif /* BP_INTERNAL_H */
