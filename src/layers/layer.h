/*
 * layer.h - the one interface every layer kind implements (not installed).
 *
 * A layer family lives in one file of src/layers/ (dense.c, activation.c,
 * dropout.c, flatten.c, conv.c, pool.c, batchnorm.c) and exports one
 * bp_layer_ops table per spec word; registry.c lists the tables. net.c and
 * train.c drive layers only through these tables, so adding a layer is one
 * new file, one registry line and its tests.
 *
 * Life of a layer:
 *   parse:    the spec word and its arguments (argument slots below, then
 *             ops->check for their ranges)
 *   shape:    ops->shape sets out_shape from in_shape (BP_ESPEC for an
 *             impossible shape) and whatever sizes the layer keeps
 *   tensors:  ops->tensors names its parameters (trainable, in net->params
 *             at L->offset, in the order listed) and buffers (F32 ones in
 *             net->buffers at L->buf_offset; one I64 counter in L->count)
 *   init:     ops->init fills its parameters and buffers
 *   reserve:  ops->ws_bytes: its per-batch workspace (masks, argmax, saved
 *             statistics), allocated by bp_net_reserve
 *   layout:   ops->layout says how the layer treats oneDNN's blocked layout
 *             (below); bp_net_prepare plans each slot's layouts from it
 *   prepare:  ops->prepare creates fast-path objects (oneDNN primitives) for
 *             one batch size, in slot `slot`, for the layouts planned there
 *             (L->blk_in[slot], L->blk_out[slot]); ops->release frees them
 *   forward:  y [n, out] from x [n, in]; `training` selects training-mode
 *             behaviour (dropout masks, batch statistics)
 *   backward: from dy [n, out]: dx [n, in] (NULL: not needed) and the
 *             gradient of its parameters into dparam (NULL: frozen), laid
 *             out like its parameters; x and y are the forward's input and
 *             output. Outputs are overwritten, never accumulated.
 * Activations are [n, per-sample shape] row-major, batch first, except
 * where a slot's plan keeps an image in the blocked layout nChw{B}c
 * ([n, C/B, H, W, B]; see bp_layer.blk_in): forward, backward and kinks
 * find their layouts with bp_blk_in / bp_blk_out. Both layouts hold the
 * same number of values (blocked only when B divides C).
 */
#ifndef BP_LAYER_H
#define BP_LAYER_H

#include "../internal.h"

#include <string.h>

/* What the integer arguments of a spec word fill, in order. */
enum { BP_ARG_UNITS = 1, BP_ARG_KERNEL, BP_ARG_STRIDE, BP_ARG_PAD, BP_ARG_VOCAB };

typedef struct bp_tensor_spec {
    const char *name; /* "weight", "bias", "running_mean", ... */
    int rank;
    int64_t shape[4];
    int trainable;    /* 1: parameter, 0: buffer */
    bp_dtype dtype;
} bp_tensor_spec;

#define BP_LAYER_MAX_TENSORS 5

/* How a layer meets the blocked layout (ops->layout):
 *   PLAIN: plain input, plain output (dense, softmax, the default);
 *   KEEP:  its output has its input's layout (elementwise layers, dropout,
 *          batchnorm, max and average pooling);
 *   MAKE:  any input layout; its output is blocked when the plan wants it
 *          and B divides its channels (conv);
 *   END:   any input layout, plain output (flatten, global_avgpool). */
typedef enum bp_blk_kind { BP_BLK_PLAIN = 0, BP_BLK_KEEP, BP_BLK_MAKE, BP_BLK_END } bp_blk_kind;

/* How a layer meets bfloat16 activations (ops->bf16) in a bf16 network's
 * slot, where they live only on blocked data (between a conv and the layer
 * that ends the chain):
 *   NONE: float input and output (the default);
 *   KEEP: a bfloat16 input gives a bfloat16 output, and its backward takes
 *         a bfloat16 dy and writes a bfloat16 dx (batchnorm, pooling,
 *         relu, leaky_relu, dropout);
 *   MAKE: either input type, either output type, as the plan says (conv);
 *   END:  either input type, float output (flatten, global_avgpool).
 * A slot's plan (bp_net_prepare) gives a layer a bfloat16 input only when
 * its table takes one; bp_bf_in / bp_bf_out say what a pass has. */
typedef enum bp_bf16_kind {
    BP_BF16_NONE = 0,
    BP_BF16_KEEP,
    BP_BF16_MAKE,
    BP_BF16_END
} bp_bf16_kind;

struct bp_layer_ops {
    const char *word;      /* spec word */
    bp_layer_kind kind;
    const char *usage;     /* "conv(C,K[,stride[,pad]])", for messages */
    int n_int_min, n_int_max; /* integer arguments: how many */
    int int_slot[4];       /* what each one fills (BP_ARG_*) */
    int real_arg;          /* 1: one optional real argument (param) */
    double real_def;       /* its default */
    int parametric;        /* counted by freeze */
    int first_only;        /* must be the network's first layer (embedding: it reads ids) */
    int infer_ws;          /* needs its workspace in inference too (net->iws) */
    /* Argument ranges (after defaults are filled); col: the word's column. */
    bp_status (*check)(const bp_layer_desc *d, int col, bp_error *err);
    /* out_shape (and layer sizes) from in_shape. */
    bp_status (*shape)(bp_layer *L, int col, bp_error *err);
    /* Fill t[] (at most BP_LAYER_MAX_TENSORS); returns how many. NULL: none. */
    int (*tensors)(const bp_layer *L, bp_tensor_spec *t);
    /* Initialize parameters and buffers. relu_next: a relu or leaky_relu
     * follows (through batchnorm, pooling and dropout). NULL: nothing. */
    void (*init)(bp_layer *L, bp_init scheme, int relu_next, bp_rng *rng);
    /* Bytes of per-batch workspace for `batch` samples. NULL: none. */
    uint64_t (*ws_bytes)(const bp_layer *L, int batch);
    bp_blk_kind layout;
    bp_bf16_kind bf16;
    /* Fast-path objects for batches of n samples in `slot`, for the layouts
     * planned there. Returns 1, or 0 when it could not make them (the slot
     * then falls back to plain layouts). NULL: none. */
    int (*prepare)(bp_net *net, bp_layer *L, int slot, int n, int training, int need_dx);
    /* Free the objects of `slot` (-1: of every slot). */
    void (*release)(bp_layer *L, int slot);
    /* 1 when the objects prepared in `slot` compute the next layer too (a
     * batchnorm and the relu after it): net.c then skips that layer in the
     * slot's passes (its output is this layer's, its backward passes dy
     * on), so this layer's forward writes the next one's output and its
     * backward takes the next one's dy (and its y is that output). NULL:
     * never. */
    int (*fused_next)(const bp_layer *L, int slot);
    void (*forward)(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n, int training);
    void (*backward)(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam, const bp_real *dy,
                     const bp_real *x, const bp_real *y, int n);
    /* Gradient check: the signature of the layer's non-smooth choices for
     * input x (relu: the sign of each input; maxpool: the argmax) into sig,
     * returning its size in bytes (sig NULL: the size only, and x may be
     * NULL). NULL: smooth. */
    size_t (*kinks)(const bp_net *net, const bp_layer *L, const bp_real *x, int n,
                    unsigned char *sig);
    /* Diagnostics after a backward pass over n samples (recurrent layers):
     * sq[0], sq[1] = the squared norm of the gradient at the first and at
     * the last time step. NULL: none. */
    void (*time_grads)(const bp_layer *L, int n, double sq[2]);
};

/* Registry (registry.c). */
const bp_layer_ops *bp_layer_ops_find(const char *word, size_t len);
const bp_layer_ops *bp_layer_ops_of(bp_layer_kind kind);
/* "dense(N), identity, ..." (every word's usage) into buf, for messages. */
void bp_layer_words(char *buf, size_t size);

/* The fast-path slot of batch size n for a training pass (training != 0:
 * a forward in training mode, any backward) or an inference one, or -1
 * (net.c): none, one made for inference only when training, or one made
 * for another thread count (bp_set_threads changed since). Every layer of
 * a pass sees the same answer, so they agree on the layouts. */
int bp_net_slot(const bp_net *net, int n, int training);

/* The layouts of a layer's input and output in a pass over n samples
 * (1: plain; B: nChw{B}c). */
static inline int bp_blk_in(const bp_net *net, const bp_layer *L, int n, int training)
{
    int q = bp_net_slot(net, n, training);
    return q < 0 ? 1 : L->blk_in[q];
}
static inline int bp_blk_out(const bp_net *net, const bp_layer *L, int n, int training)
{
    int q = bp_net_slot(net, n, training);
    return q < 0 ? 1 : L->blk_out[q];
}
/* Whether a layer's input and output in a pass over n samples are
 * bfloat16 (1) or float (0). */
static inline int bp_bf_in(const bp_net *net, const bp_layer *L, int n, int training)
{
    int q = bp_net_slot(net, n, training);
    return q < 0 ? 0 : L->bf_in[q];
}
static inline int bp_bf_out(const bp_net *net, const bp_layer *L, int n, int training)
{
    int q = bp_net_slot(net, n, training);
    return q < 0 ? 0 : L->bf_out[q];
}
/* Value k of an activation of either type (bf: bfloat16), and storing v
 * there (rounded to nearest even in bfloat16, as bp_k_to_bf16): for the
 * loops that walk an activation element by element. */
static inline bp_real bp_act_get(const void *a, int bf, size_t k)
{
    return bf ? (bp_real)bp_bf16_wide(((const uint16_t *)a)[k]) : ((const bp_real *)a)[k];
}
static inline void bp_act_set(void *a, int bf, size_t k, bp_real v)
{
    if (!bf) {
        ((bp_real *)a)[k] = v;
        return;
    }
    ((uint16_t *)a)[k] = bp_bf16_round((float)v);
}
/* Whether ops->release(L, slot) frees slot q (slot -1: every slot). */
static inline int bp_slot_selected(int q, int slot) { return slot < 0 || q == slot; }

/* A slot's primitives are made for its layouts and thread count and
 * allocate nothing when they run, so they do not fail; if one did on a
 * blocked tensor (where no reference loop can take over), the layer fills
 * its outputs with NaN (NULL ones skipped; all bits set, so a bf16 chain's
 * buffer reads NaN too) and the trainer stops on the non-finite values,
 * naming the layer. */
void bp_layer_fail(bp_real *a, size_t m);
/* Index of value (c, s) of sample b in an activation [n, C, S] stored with
 * channel block blk (1: plain, S = H*W). */
static inline size_t bp_blk_at(int blk, int C, int S, int b, int c, int s)
{
    return (size_t)b * C * S + ((size_t)(c / blk) * S + s) * blk + c % blk;
}

/* The families' tables. */
extern const bp_layer_ops bp_dense_ops, bp_identity_ops, bp_sigmoid_ops, bp_tanh_ops,
    bp_relu_ops, bp_leaky_relu_ops, bp_softmax_ops, bp_dropout_ops, bp_flatten_ops,
    bp_conv_ops, bp_maxpool_ops, bp_avgpool_ops, bp_global_avgpool_ops, bp_batchnorm_ops,
    bp_rnn_ops, bp_lstm_ops, bp_gru_ops, bp_last_ops, bp_embedding_ops;

/* Shapes. */
static inline bp_shape bp_shape3(int c, int h, int w)
{
    bp_shape s = {3, {c, h, w}};
    return s;
}
/* "spec:1:COL: WORD needs an image input [C, H, W], got [784]" */
bp_status bp_need_image(const bp_layer *L, int col, bp_error *err);
/* "spec:1:COL: WORD needs a sequence input [T, F], got [1, 28, 28]" */
bp_status bp_need_sequence(const bp_layer *L, int col, bp_error *err);

#endif /* BP_LAYER_H */
