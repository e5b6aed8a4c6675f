/*
 * train.c - the trainer: backward pass, penalties, clipping, the optimizer
 * step, and bp_fit's epoch loop with shuffling, validation, early stopping
 * and diagnostics.
 *
 * A training step, in order (the order the PyTorch fixtures follow):
 *   1. forward in training mode (dropout masks drawn), loss on the logits;
 *   2. backward: dL/dparam for every trainable layer, each through its
 *      table (src/layers/), from the loss back to the first trainable one;
 *   3. per-layer gradient norms (diagnostics; a NaN/Inf stops here with the
 *      parameters untouched);
 *   4. penalties: + l1 sign(W) + l2 W on dense and conv weights;
 *   5. clip by value, then by global norm (torch's clip_grad_norm_ rule);
 *   6. the optimizer update with this step's scheduled learning rate.
 * Everything it touches is allocated by bp_trainer_create.
 */
#include "internal.h"
#include "kernels.h"
#include "layers/layer.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Trainable parameters per optimizer thread: from 65,536 on, two threads. */
#define PARALLEL_UPDATE_GRAIN 32768

struct bp_trainer {
    bp_net *net;
    bp_train_config cfg;
    int max_batch;
    int logits_layer;      /* layer whose output the loss sees */
    int first_trainable;   /* lowest trainable layer index (the freeze-th parametric one) */
    size_t train_off;      /* params[train_off..] are trainable */
    bp_real *grad;         /* [n_params], same layout as net->params */
    bp_real *s1, *s2;      /* optimizer state */
    bp_real *d0, *d1;      /* backward ping-pong [max_batch * max width] */
    long t;                /* optimizer steps done */
    bp_rng rng;            /* shuffling */

    /* Diagnostics over the current epoch. */
    double *norm2;         /* [n_layers] last step's squared gradient norm */
    double *norm2_acc;     /* [n_layers] sum over the epoch's steps */
    long norm_steps;
    bp_real *active;       /* per relu unit: its largest output this epoch (0: dead) */
    size_t *active_off;    /* [n_layers] */
    double *grad_norm_out, *dead_out;
    /* Recurrent layers: squared gradient norms at the first and the last
     * step of the last backward pass [2 * n_layers], their sums over the
     * epoch's steps, and the epoch's RMS handed to on_epoch. */
    double *time2, *time2_acc, *time_first_out, *time_last_out;
    long last_correct;     /* correct predictions of the last step */
    bp_rng aug_rng;        /* augmentation */

    /* Data-parallel training (bp_trainer_set_comm); dist = comm.size > 1. */
    bp_comm comm;
    int dist;
    size_t bucket_lo[BP_COMM_SLOTS], bucket_hi[BP_COMM_SLOTS]; /* grad ranges */
    int *bucket_at;        /* [n_layers] bucket started once layer i's backward is done, or -1 */
    /* grad[n_params ..]: flags reduced with the first bucket: [0] a rank's
     * callback asked to stop, [1 + r] rank r's loss was not finite. */
    size_t tail;
    int pending_stop;      /* this rank's callback asked to stop (reduced next) */
};

/* Gradient bytes per bucket (torch's DDP starts at 1 MiB too, then 25). */
#define BUCKET_BYTES ((size_t)1 << 20)

static int is_trainable(const bp_trainer *tr, int i)
{
    return tr->net->layers[i].n_params > 0 && i >= tr->first_trainable;
}

/* Layers whose weights (the first tensor) get the l1/l2 penalties. */
static int penalized(const bp_layer *L) { return L->kind == BP_DENSE || L->kind == BP_CONV; }


static bp_status check_config(const bp_train_config *c, const bp_net *net, bp_error *err)
{
#define BAD(...) return bp_fail(err, BP_EINVAL, __VA_ARGS__)
    if ((int)c->loss < BP_LOSS_MSE || c->loss > BP_LOSS_BCE) BAD("unknown loss %d", (int)c->loss);
    if ((int)c->optimizer < BP_SGD || c->optimizer > BP_ADAGRAD)
        BAD("unknown optimizer %d", (int)c->optimizer);
    if (!(c->lr > 0) || !isfinite(c->lr)) BAD("learning rate must be > 0, got %g", c->lr);
    if (!(c->momentum >= 0) || !isfinite(c->momentum)) BAD("momentum must be >= 0, got %g", c->momentum);
    if (!(c->dampening >= 0 && c->dampening <= 1)) BAD("dampening must be in [0, 1], got %g", c->dampening);
    if (c->optimizer == BP_NESTEROV && (!(c->momentum > 0) || c->dampening != 0))
        BAD("nesterov needs momentum > 0 and dampening 0");
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        BAD("betas must be in [0, 1), got %g, %g", c->beta1, c->beta2);
    if (!(c->eps >= 0) || !isfinite(c->eps)) BAD("eps must be >= 0, got %g", c->eps);
    if (!(c->alpha >= 0 && c->alpha <= 1)) BAD("rmsprop alpha must be in [0, 1], got %g", c->alpha);
    if (!(c->lr_decay >= 0) || !isfinite(c->lr_decay)) BAD("lr_decay must be >= 0, got %g", c->lr_decay);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        BAD("weight decay must be >= 0, got %g", c->weight_decay);
    if (!(c->l1 >= 0) || !isfinite(c->l1)) BAD("l1 must be >= 0, got %g", c->l1);
    if (!(c->l2 >= 0) || !isfinite(c->l2)) BAD("l2 must be >= 0, got %g", c->l2);
    if (!(c->clip_value >= 0) || !isfinite(c->clip_value)) BAD("clip value must be >= 0, got %g", c->clip_value);
    if (!(c->clip_norm >= 0) || !isfinite(c->clip_norm)) BAD("clip norm must be >= 0, got %g", c->clip_norm);
    if ((int)c->schedule < BP_SCHED_CONSTANT || c->schedule > BP_SCHED_COSINE)
        BAD("unknown schedule %d", (int)c->schedule);
    if (c->warmup < 0) BAD("warmup must be >= 0, got %d", c->warmup);
    if (c->schedule == BP_SCHED_STEP && c->step_size < 1) BAD("step schedule needs step_size >= 1, got %d", c->step_size);
    if ((c->schedule == BP_SCHED_STEP || c->schedule == BP_SCHED_EXP) && !(c->gamma > 0 && isfinite(c->gamma)))
        BAD("schedule gamma must be > 0, got %g", c->gamma);
    if (!(c->min_lr >= 0) || !isfinite(c->min_lr)) BAD("min_lr must be >= 0, got %g", c->min_lr);
    if (c->total_steps < 0) BAD("total_steps must be >= 0, got %ld", c->total_steps);
    if (c->batch_size < 0) BAD("batch size must be >= 0 (0 = full batch), got %d", c->batch_size);
    if (c->epochs < 1) BAD("epochs must be >= 1, got %d", c->epochs);
    if (c->patience < 0) BAD("patience must be >= 0, got %d", c->patience);
    int par = 0;
    for (int i = 0; i < net->n_layers; i++) par += net->layers[i].n_params > 0;
    if (par == 0) BAD("the network has no layer with parameters: nothing to train");
    if (c->freeze < 0 || c->freeze >= par)
        BAD("freeze must be in 0..%d (the network has %d layers with parameters: dense, conv, "
            "batchnorm, recurrent, embedding), got %d", par - 1, par, c->freeze);
    if (c->augment_shift < 0) BAD("augment shift must be >= 0, got %d", c->augment_shift);
    if ((c->augment_hflip || c->augment_shift) && net->input_shape.rank != 3)
        BAD("augmentation needs image inputs [C, H, W]");
#undef BAD
    int outs = net->layers[bp_loss_input_layer(net, c->loss)].out;
    if (c->loss == BP_LOSS_CROSS_ENTROPY && outs < 2)
        return bp_fail(err, BP_ESHAPE, "cross-entropy needs at least 2 outputs, the network has %d",
                       outs);
    return BP_OK;
}

void bp_trainer_free(bp_trainer *tr)
{
    if (!tr) return;
    if (tr->net->comm == &tr->comm) {
        tr->net->comm = NULL;
        tr->net->sync_bn = 0;
        tr->net->global_n = 0;
    }
    free(tr->bucket_at);
    free(tr->grad);
    free(tr->s1);
    free(tr->s2);
    free(tr->d0);
    free(tr->d1);
    free(tr->norm2);
    free(tr->norm2_acc);
    free(tr->active);
    free(tr->active_off);
    free(tr->grad_norm_out);
    free(tr->dead_out);
    free(tr->time2);
    free(tr->time2_acc);
    free(tr->time_first_out);
    free(tr->time_last_out);
    free(tr);
}

/* (Re)allocate the batch-sized buffers for up to max_batch samples. */
static bp_status trainer_reserve(bp_trainer *tr, int max_batch, bp_error *err)
{
    if (max_batch <= tr->max_batch) return BP_OK;
    bp_status s = bp_net_reserve_train(tr->net, max_batch, err);
    if (s) return s;
    bp_net_prepare(tr->net, max_batch, 1);
    size_t w = bp_net_widest(tr->net);
    bp_real *d0 = bp_alloc_aligned((size_t)max_batch * w, sizeof(bp_real));
    bp_real *d1 = bp_alloc_aligned((size_t)max_batch * w, sizeof(bp_real));
    if (!d0 || !d1) {
        free(d0);
        free(d1);
        return bp_fail(err, BP_ENOMEM, "out of memory for batch %d", max_batch);
    }
    free(tr->d0);
    free(tr->d1);
    tr->d0 = d0;
    tr->d1 = d1;
    tr->max_batch = max_batch;
    return BP_OK;
}

/* Everything training will hold, computed from the sizes before any of it
 * is allocated (saturating, so no size_t overflow): the parameters (held
 * already), gradients, optimizer state, relu diagnostics, the activations
 * and dropout masks of bp_net_reserve_train, the two backward buffers, and what
 * bp_fit adds (a batch copy of x and y, the best weights with patience). */
static bp_status check_memory(const bp_net *net, const bp_train_config *cfg, int max_batch,
                              bp_error *err)
{
    const uint64_t R = sizeof(bp_real);
    uint64_t np = (uint64_t)net->n_params, b = (uint64_t)max_batch;
    uint64_t params = bp_mul_sat(bp_add_sat(np, (uint64_t)net->n_buffers), R);
    uint64_t fresh = bp_mul_sat(bp_mul_sat(np, R), 1 + (uint64_t)bp_optim_state_count(cfg)); /* grad, state */
    if (cfg->patience > 0) fresh = bp_add_sat(fresh, params);                  /* best weights */
    uint64_t act = bp_net_workspace_bytes(net, max_batch), relu = 0;
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].kind == BP_RELU) relu = bp_add_sat(relu, (uint64_t)net->layers[i].out * R);
    int reserved = max_batch <= net->max_batch; /* activations held already */
    fresh = bp_add_sat(fresh, bp_add_sat(reserved ? 0 : act, relu));
    fresh = bp_add_sat(fresh, bp_mul_sat(2, bp_mul_sat(bp_mul_sat(b, (uint64_t)bp_net_widest(net)), R)));
    int tw = cfg->loss == BP_LOSS_CROSS_ENTROPY ? 1 : net->layers[net->n_layers - 1].out;
    fresh = bp_add_sat(fresh, bp_mul_sat(bp_mul_sat(b, (uint64_t)net->n_inputs + (uint64_t)tw), R));
    uint64_t held = bp_add_sat(params, reserved ? act : 0);
    char detail[128];
    snprintf(detail, sizeof detail, "parameters, gradients, optimizer state, activations for batch %d",
             max_batch);
    return bp_mem_check(bp_add_sat(held, fresh), fresh, "this network", detail, err);
}

bp_status bp_train_memory_check_shaped(const char *spec, bp_shape input,
                                       const bp_train_config *cfg, int max_batch, bp_error *err)
{
    if (!spec || !cfg) return bp_fail(err, BP_EINVAL, "bp_train_memory_check: NULL argument");
    if (max_batch < 1) return bp_fail(err, BP_ESHAPE, "max batch must be >= 1, got %d", max_batch);
    bp_net shape;
    bp_status s = bp_net_skeleton(&shape, input, spec, err);
    if (s) return s;
    s = check_memory(&shape, cfg, max_batch, err);
    free(shape.layers);
    return s;
}

bp_status bp_train_memory_check(const char *spec, int n_inputs, const bp_train_config *cfg,
                                int max_batch, bp_error *err)
{
    if (n_inputs < 1) return bp_fail(err, BP_EINVAL, "network needs at least 1 input, got %d", n_inputs);
    return bp_train_memory_check_shaped(spec, bp_shape_flat(n_inputs), cfg, max_batch, err);
}

bp_status bp_trainer_create(bp_trainer **out, bp_net *net, const bp_train_config *cfg,
                            int max_batch, bp_error *err)
{
    if (!out || !net || !cfg) return bp_fail(err, BP_EINVAL, "bp_trainer_create: NULL argument");
    *out = NULL;
    if (max_batch < 1) return bp_fail(err, BP_ESHAPE, "max batch must be >= 1, got %d", max_batch);
    bp_status s = check_config(cfg, net, err);
    if (s) return s;
    s = check_memory(net, cfg, max_batch, err);
    if (s) return s;
    /* The precision's own checks (a known one, bf16 where it can run). */
    bp_precision old_precision = net->precision;
    s = bp_net_set_precision(net, cfg->precision, err);
    if (s) return s;
    bp_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) {
        bp_net_set_precision(net, old_precision, NULL);
        return bp_fail(err, BP_ENOMEM, "out of memory creating a trainer");
    }
    tr->net = net;
    tr->cfg = *cfg;
    tr->logits_layer = bp_loss_input_layer(net, cfg->loss);
    int par = 0;
    tr->first_trainable = net->n_layers;
    for (int i = 0; i < net->n_layers; i++) {
        if (net->layers[i].n_params == 0) continue;
        if (par++ == cfg->freeze) {
            tr->first_trainable = i;
            tr->train_off = net->layers[i].offset;
        }
    }
    /* The frozen prefix: no gradients, and a frozen batchnorm normalizes
     * with its running statistics (layers read the flag in training mode). */
    for (int i = 0; i < net->n_layers; i++) net->layers[i].frozen = i < tr->first_trainable;
    size_t np = net->n_params;
    int L = net->n_layers;
    tr->grad = bp_alloc_aligned(np, sizeof(bp_real));
    int ns = bp_optim_state_count(cfg);
    if (ns >= 1) tr->s1 = bp_alloc_aligned(np, sizeof(bp_real));
    if (ns >= 2) tr->s2 = bp_alloc_aligned(np, sizeof(bp_real));
    tr->norm2 = bp_alloc_array((size_t)L, sizeof(double));
    tr->norm2_acc = bp_alloc_array((size_t)L, sizeof(double));
    tr->grad_norm_out = bp_alloc_array((size_t)L, sizeof(double));
    tr->dead_out = bp_alloc_array((size_t)L, sizeof(double));
    tr->time2 = bp_alloc_array(2 * (size_t)L, sizeof(double));
    tr->time2_acc = bp_alloc_array(2 * (size_t)L, sizeof(double));
    tr->time_first_out = bp_alloc_array((size_t)L, sizeof(double));
    tr->time_last_out = bp_alloc_array((size_t)L, sizeof(double));
    tr->active_off = bp_alloc_array((size_t)L, sizeof(size_t));
    size_t relu_units = 0;
    for (int i = 0; i < L; i++)
        if (net->layers[i].kind == BP_RELU) {
            tr->active_off[i] = relu_units;
            relu_units += (size_t)net->layers[i].out;
        }
    tr->active = bp_alloc_array(relu_units, sizeof(bp_real));
    if (!tr->grad || (ns >= 1 && !tr->s1) || (ns >= 2 && !tr->s2) || !tr->norm2 ||
        !tr->norm2_acc || !tr->grad_norm_out || !tr->dead_out || !tr->time2 || !tr->time2_acc ||
        !tr->time_first_out || !tr->time_last_out || !tr->active_off || !tr->active) {
        bp_trainer_free(tr);
        bp_net_set_precision(net, old_precision, NULL);
        return bp_fail(err, BP_ENOMEM, "out of memory creating a trainer");
    }
    bp_rng_seed(&tr->rng, cfg->seed);
    bp_rng_seed(&net->rng, cfg->seed ^ 0xd1b54a32d192ed03ULL);
    bp_rng_seed(&tr->aug_rng, cfg->seed ^ 0x9e3779b97f4a7c15ULL);
    s = trainer_reserve(tr, max_batch, err);
    if (s) {
        bp_trainer_free(tr);
        bp_net_set_precision(net, old_precision, NULL); /* the net as it was */
        return s;
    }
    *out = tr;
    return BP_OK;
}

long bp_trainer_steps(const bp_trainer *tr) { return tr ? tr->t : 0; }
double bp_trainer_lr(const bp_trainer *tr) { return tr ? bp_schedule_lr(&tr->cfg, tr->t) : 0; }

const bp_real *bp_trainer_weight_grad(const bp_trainer *tr, int i)
{
    if (!tr || i < 0 || i >= tr->net->n_layers || !tr->net->layers[i].n_params) return NULL;
    return tr->grad + tr->net->layers[i].offset;
}

const bp_real *bp_trainer_bias_grad(const bp_trainer *tr, int i)
{
    const bp_real *w = bp_trainer_weight_grad(tr, i);
    const bp_layer *L = w ? &tr->net->layers[i] : NULL;
    return L && L->b ? w + (L->b - L->w) : NULL;
}

/* ------------------------------------------------------------------------ */
/* Data-parallel set-up                                                      */
/* ------------------------------------------------------------------------ */

/* Buckets of about `cap` gradient bytes, from the last trainable layer
 * down (the order the backward pass finishes them), whole layers each; the
 * first one also carries the tail of flags. Returns the bucket count. */
static int plan_buckets(bp_trainer *tr, size_t cap)
{
    bp_net *net = tr->net;
    int nb = 0, top = -1;
    size_t acc = 0;
    for (int i = net->n_layers - 1; i >= 0; i--) {
        tr->bucket_at[i] = -1;
        const bp_layer *L = &net->layers[i];
        if (i < tr->first_trainable || !L->n_params) continue;
        if (top < 0) {
            top = i;
            acc = 0;
        }
        acc += L->n_params * sizeof(bp_real);
        if (acc >= cap || i == tr->first_trainable) {
            if (nb < BP_COMM_SLOTS - 2) {
                tr->bucket_lo[nb] = L->offset;
                tr->bucket_hi[nb] = nb == 0 ? net->n_params + tr->tail
                                            : net->layers[top].offset + net->layers[top].n_params;
            }
            tr->bucket_at[i] = nb++;
            top = -1;
        }
    }
    return nb;
}

bp_status bp_trainer_set_comm(bp_trainer *tr, const bp_comm *comm, bp_error *err)
{
    if (!tr || !comm) return bp_fail(err, BP_EINVAL, "bp_trainer_set_comm: NULL argument");
    if (!bp_comm_valid(comm))
        return bp_fail(err, BP_EINVAL, "bp_trainer_set_comm: invalid communicator (rank %d of %d, "
                       "or a missing function)", comm->rank, comm->size);
    if (tr->dist) return bp_fail(err, BP_EINVAL, "bp_trainer_set_comm: the trainer has a communicator already");
    bp_net *net = tr->net;
    if (comm->size == 1) {
        tr->comm = *comm;
        return BP_OK;
    }
    /* The ranks must hold the same network and settings. */
    bp_error lerr = {0};
    bp_status local = BP_OK;
    const bp_train_config *c = &tr->cfg;
    double spec_hi, spec_lo;
    const char *spec = bp_net_spec(net);
    bp_comm_hash(spec, strlen(spec), &spec_hi, &spec_lo);
    static const char *const names[] = {
        "layer count", "input count", "output count (classes)", "parameter count", "buffer count",
        "architecture (hash of the spec, high half)", "architecture (hash of the spec, low half)",
        "batch size", "epochs", "seed (high half)", "seed (low half)", "shuffle", "loss",
        "optimizer", "learning rate", "freeze", "sync_batchnorm", "patience", "min_delta",
        "augment_hflip", "augment_shift", "stateful", "precision (0 f32, 1 bf16)"};
    double vals[] = {net->n_layers, net->n_inputs, net->layers[net->n_layers - 1].out,
                     (double)net->n_params, (double)net->n_buffers, spec_hi, spec_lo,
                     c->batch_size, c->epochs, (double)(c->seed >> 32), (double)(c->seed & 0xffffffffu),
                     c->shuffle, (double)c->loss, (double)c->optimizer, c->lr, c->freeze,
                     c->sync_batchnorm != 0, c->patience, c->min_delta, c->augment_hflip != 0,
                     c->augment_shift, net->streams > 0, (double)net->precision};
    bp_status s = bp_comm_check(comm, local, &lerr, vals, names, (int)(sizeof vals / sizeof vals[0]),
                                "the ranks' networks and settings differ", err);
    if (s) return s;

    /* The flags after the gradients, then the buckets. */
    size_t tail = 1 + (size_t)comm->size;
    bp_real *g = bp_alloc_aligned(net->n_params + tail, sizeof(bp_real));
    int *at = bp_alloc_array((size_t)net->n_layers, sizeof(int));
    if (!g || !at) {
        free(g);
        free(at);
        return bp_fail(err, BP_ENOMEM, "out of memory for the data-parallel buffers");
    }
    memset(g, 0, (net->n_params + tail) * sizeof(bp_real));
    free(tr->grad);
    tr->grad = g;
    free(tr->bucket_at); /* a second call after a failed broadcast */
    tr->bucket_at = at;
    tr->tail = tail;
    size_t cap = BUCKET_BYTES;
    while (plan_buckets(tr, cap) > BP_COMM_SLOTS - 2) cap *= 2; /* the last call's plan fits */

    /* Rank 0's weights and buffers everywhere (its initialization, or the
     * model it fine-tunes). */
    if (comm->bcast(comm->ctx, net->params, net->n_params * sizeof(bp_real), 0) ||
        (net->n_buffers && comm->bcast(comm->ctx, net->buffers, net->n_buffers * sizeof(bp_real), 0)))
        return bp_fail(err, BP_ECOMM, "copying rank 0's weights to the other ranks failed");
    tr->comm = *comm;
    tr->dist = 1;
    /* Dropout and augmentation differ between ranks (the same seed would
     * give sample q of every rank the same mask); the shuffle stays shared. */
    uint64_t mix = 0x9e3779b97f4a7c15ULL * (uint64_t)(comm->rank + 1);
    bp_rng_seed(&net->rng, (c->seed ^ 0xd1b54a32d192ed03ULL) + mix);
    bp_rng_seed(&tr->aug_rng, (c->seed ^ 0x9e3779b97f4a7c15ULL) + mix);
    net->comm = &tr->comm;
    /* Synchronized batchnorm runs its own loops, which fuse no relu: the
     * slots prepared before are made again. */
    int remake = c->sync_batchnorm && !net->sync_bn;
    net->sync_bn = c->sync_batchnorm != 0;
    if (remake) bp_net_remake_slots(net);
    return BP_OK;
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                  */
/* ------------------------------------------------------------------------ */

/* Index of the first layer (forward order) with a non-finite output of a
 * training pass, or -1 (a bf16 network's slot may hold it in bfloat16). */
static int first_nonfinite_layer(const bp_net *net, int n)
{
    for (int i = 0; i < net->n_layers; i++) {
        size_t m = (size_t)n * net->layers[i].out;
        int bf = bp_bf_out(net, &net->layers[i], n, 1);
        for (size_t k = 0; k < m; k++)
            if (!isfinite(bp_act_get(net->act[i], bf, k))) return i;
    }
    return -1;
}

static void record_time_grads(bp_trainer *tr, int n);
static bp_status grad_norms(bp_trainer *tr, long step, bp_error *err);

/* Data-parallel: start bucket b's sum over the ranks once layer i's
 * backward is done (i is the bucket's lowest layer), else let the started
 * ones progress. Returns non-zero if a call failed. */
static int reduce_after_layer(bp_trainer *tr, int i, int *started)
{
    int b = tr->bucket_at[i], failed = 0;
    if (b >= 0) {
        bp_comm_type type = sizeof(bp_real) == 8 ? BP_COMM_F64 : BP_COMM_F32;
        failed = tr->comm.iallreduce(tr->comm.ctx, b, tr->grad + tr->bucket_lo[b],
                                     tr->bucket_hi[b] - tr->bucket_lo[b], type) != 0;
        *started = b + 1;
    } else if (tr->comm.test) {
        for (int q = 0; q < *started; q++) failed |= tr->comm.test(tr->comm.ctx, q) < 0;
    }
    return failed;
}

/* Data-parallel: complete the started buckets, then read the flags of the
 * tail: a rank's non-finite loss (every rank fails alike), a rank's
 * request to stop (BP_ESTOPPED: no rank updates). */
static bp_status finish_reduction(bp_trainer *tr, int n, int started, int failed, long step,
                                  bp_error *err)
{
    bp_net *net = tr->net;
    for (int b = 0; b < started; b++) failed |= tr->comm.wait(tr->comm.ctx, b) != 0;
    if (failed)
        return bp_fail(err, BP_ECOMM, "step %ld: summing the gradients over the ranks failed", step);
    const bp_real *tail = tr->grad + net->n_params;
    for (int r = 0; r < tr->comm.size; r++)
        if (tail[1 + r] != 0) {
            int bad = r == tr->comm.rank ? first_nonfinite_layer(net, n) : -1;
            if (bad >= 0)
                return bp_fail(err, BP_ENONFINITE, "step %ld: non-finite loss on rank %d; first "
                               "non-finite values in the output of layer %d (%s)", step, r, bad,
                               bp_layer_name(net->layers[bad].kind));
            return bp_fail(err, BP_ENONFINITE, "step %ld: non-finite loss on rank %d", step, r);
        }
    return tail[0] != 0 ? BP_ESTOPPED : BP_OK;
}

/* Forward, loss and backward on one batch; fills tr->grad for trainable
 * layers and tr->norm2. Returns BP_ENONFINITE (parameters untouched) if the
 * loss or a gradient is not finite. In a data-parallel step of bp_fit
 * (net->global_n set), the gradients are summed over the ranks in buckets
 * started as the backward pass finishes each one (the sums progress while
 * the layers below run), and a non-finite loss on any rank is found after
 * the sums, the same on every rank. */
static bp_status forward_backward(bp_trainer *tr, const bp_real *x, const bp_real *y, int n,
                                  double *loss_out, bp_error *err)
{
    bp_net *net = tr->net;
    long step = tr->t + 1;
    bp_net_forward_ws(net, x, n, 1);
    int k = tr->logits_layer;
    int d = bp_net_loss_width(net, tr->cfg.loss), steps = bp_net_loss_steps(net, tr->cfg.loss);
    if (tr->cfg.loss == BP_LOSS_CROSS_ENTROPY) {
        for (int r = 0; r < n * steps; r++) {
            bp_real v = y[r];
            if (!(v >= 0 && v < d) || v != (bp_real)(int)v)
                return bp_fail(err, BP_EINVAL, "step %ld: target of sample %d is %g, not a class index in 0..%d",
                               step, r / steps + 1, (double)v, d - 1);
        }
    }
    bp_real *delta = tr->d0, *other = tr->d1;
    double loss = bp_net_loss_of(net, tr->cfg.loss, y, n, delta, &tr->last_correct);
    if (loss_out) *loss_out = loss;
    int dist = tr->dist && net->global_n > 0;
    if (dist) {
        bp_real *tail = tr->grad + net->n_params;
        memset(tail, 0, tr->tail * sizeof(bp_real));
        tail[0] = (bp_real)(tr->pending_stop != 0);
        tail[1 + tr->comm.rank] = (bp_real)!isfinite(loss);
        tr->pending_stop = 0;
    } else if (!isfinite(loss)) {
        int bad = first_nonfinite_layer(net, n);
        if (bad >= 0)
            return bp_fail(err, BP_ENONFINITE, "step %ld: non-finite loss; first non-finite values in the output of layer %d (%s)",
                           step, bad, bp_layer_name(net->layers[bad].kind));
        return bp_fail(err, BP_ENONFINITE, "step %ld: non-finite loss %g with finite outputs (check the targets)",
                       step, loss);
    }
    /* Relu diagnostics: which units fired in this batch. */
    for (int i = 0; i < net->n_layers; i++) {
        if (net->layers[i].kind != BP_RELU) continue;
        int u = net->layers[i].out;
#ifndef BP_DOUBLE
        if (bp_bf_out(net, &net->layers[i], n, 1)) {
            bp_k_colmax_bf16(tr->active + tr->active_off[i],
                             (const uint16_t *)(const void *)net->act[i], n, u);
            continue;
        }
#endif
        bp_k_colmax(tr->active + tr->active_off[i], net->act[i], n, u);
    }
    /* Backward through each layer's table, from the logits down to the
     * first trainable layer; delta holds dL/d(output of layer i). */
    int started = 0, failed = 0, q = bp_net_slot(net, n, 1);
    for (int i = k; i >= tr->first_trainable; i--) {
        bp_layer *L = &net->layers[i];
        if (q >= 0 && L->skip[q]) { /* computed by the layer before: it takes this dy */
            if (dist) failed |= reduce_after_layer(tr, i, &started);
            continue;
        }
        const bp_real *in = i ? net->act[i - 1] : x;
        int need_dx = i > tr->first_trainable;
        bp_real *dparam = L->n_params ? tr->grad + L->offset : NULL;
        L->ops->backward(net, L, need_dx ? other : NULL, dparam, delta, in, net->act[i], n);
        if (need_dx) {
            bp_real *t = delta;
            delta = other;
            other = t;
        }
        if (dist) failed |= reduce_after_layer(tr, i, &started);
    }
    if (dist) {
        bp_status s = finish_reduction(tr, n, started, failed, step, err);
        if (s) return s;
    }
    record_time_grads(tr, n);
    return grad_norms(tr, step, err);
}

/* Through time: the gradient at a recurrent layer's first and last step. */
static void record_time_grads(bp_trainer *tr, int n)
{
    bp_net *net = tr->net;
    for (int i = tr->first_trainable; i <= tr->logits_layer; i++) {
        bp_layer *L = &net->layers[i];
        tr->time2[2 * i] = tr->time2[2 * i + 1] = 0;
        if (L->ops->time_grads) L->ops->time_grads(L, n, &tr->time2[2 * i]);
    }
}

/* Per-layer squared norms; a non-finite one stops the step. The first
 * layer where it appears is the first the backward pass reached. */
static bp_status grad_norms(bp_trainer *tr, long step, bp_error *err)
{
    bp_net *net = tr->net;
    for (int i = net->n_layers - 1; i >= 0; i--) {
        tr->norm2[i] = 0;
        if (!is_trainable(tr, i)) continue;
        const bp_real *g = tr->grad + net->layers[i].offset;
        double s2 = bp_k_sumsq(g, net->layers[i].n_params);
        if (!isfinite(s2))
            return bp_fail(err, BP_ENONFINITE, "step %ld: non-finite gradient in layer %d (%s)", step,
                           i, bp_layer_name(net->layers[i].kind));
        tr->norm2[i] = s2;
    }
    return BP_OK;
}

bp_status bp_trainer_backward(bp_trainer *tr, const bp_real *x, const bp_real *y, int n,
                              double *loss_out, bp_error *err)
{
    if (!tr || !x || !y) return bp_fail(err, BP_EINVAL, "bp_trainer_backward: NULL argument");
    if (n < 1 || n > tr->max_batch)
        return bp_fail(err, BP_ESHAPE, "batch of %d samples outside 1..%d (the trainer's max batch)", n,
                       tr->max_batch);
    return forward_backward(tr, x, y, n, loss_out, err);
}

/* Penalties and clipping on the trainable gradients (steps 4-5 above). */
static void regularize_and_clip(bp_trainer *tr)
{
    const bp_train_config *c = &tr->cfg;
    bp_net *net = tr->net;
    int touched = c->l1 > 0 || c->l2 > 0 || c->clip_value > 0;
    double total2 = 0;
    for (int i = tr->first_trainable; i < net->n_layers; i++) {
        const bp_layer *L = &net->layers[i];
        if (!L->n_params) continue;
        bp_real *g = tr->grad + L->offset;
        if (!touched) {
            total2 += tr->norm2[i];
            continue;
        }
        /* the weight tensor: everything before the bias */
        size_t nw = penalized(L) ? (size_t)(L->b - L->w) : 0;
        bp_real l1 = (bp_real)c->l1, l2 = (bp_real)c->l2;
        if (c->l1 > 0)
            for (size_t q = 0; q < nw; q++) g[q] += l1 * (bp_real)((L->w[q] > 0) - (L->w[q] < 0));
        if (c->l2 > 0)
            for (size_t q = 0; q < nw; q++) g[q] += l2 * L->w[q];
        if (c->clip_value > 0) {
            bp_real v = (bp_real)c->clip_value;
            for (size_t q = 0; q < L->n_params; q++) g[q] = g[q] > v ? v : (g[q] < -v ? -v : g[q]);
        }
        if (c->clip_norm > 0) total2 += bp_k_sumsq(g, L->n_params);
    }
    if (c->clip_norm > 0) {
        double coef = c->clip_norm / (sqrt(total2) + 1e-6);
        if (coef < 1) {
            bp_real f = (bp_real)coef;
            bp_real *g = tr->grad + tr->train_off;
            size_t m = net->n_params - tr->train_off;
            for (size_t q = 0; q < m; q++) g[q] *= f;
        }
    }
}

static bp_status train_step(bp_trainer *tr, const bp_real *x, const bp_real *y, int n,
                            double *loss_out, bp_error *err)
{
    bp_status s = forward_backward(tr, x, y, n, loss_out, err);
    if (s) return s;
    for (int i = 0; i < tr->net->n_layers; i++) tr->norm2_acc[i] += tr->norm2[i];
    for (int i = 0; i < 2 * tr->net->n_layers; i++) tr->time2_acc[i] += tr->time2[i];
    tr->norm_steps++;
    regularize_and_clip(tr);
    double lr = bp_schedule_lr(&tr->cfg, tr->t);
    size_t off = tr->train_off, m = tr->net->n_params - off;
    /* The update is elementwise: large parameter sets are split across the
     * OpenMP threads in 64-byte aligned slices (same results as serial). */
    int threads = bp_threads_for((double)m, PARALLEL_UPDATE_GRAIN);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        size_t chunk = ((m + (size_t)nt - 1) / (size_t)nt + 15) & ~(size_t)15;
        size_t lo = (size_t)id * chunk < m ? (size_t)id * chunk : m;
        size_t hi = lo + chunk < m ? lo + chunk : m;
        size_t o = off + lo;
        if (hi > lo)
            bp_optim_update(&tr->cfg, tr->net->params + o, tr->grad + o, tr->s1 ? tr->s1 + o : NULL,
                            tr->s2 ? tr->s2 + o : NULL, hi - lo, tr->t + 1, lr);
    }
    tr->t++;
    return BP_OK;
}

bp_status bp_train_step(bp_trainer *tr, const bp_real *x, const bp_real *y, int n,
                        double *loss_out, bp_error *err)
{
    if (!tr || !x || !y) return bp_fail(err, BP_EINVAL, "bp_train_step: NULL argument");
    if (n < 1 || n > tr->max_batch)
        return bp_fail(err, BP_ESHAPE, "batch of %d samples outside 1..%d (the trainer's max batch)", n,
                       tr->max_batch);
    if (tr->cfg.schedule == BP_SCHED_COSINE && tr->cfg.total_steps == 0)
        return bp_fail(err, BP_EINVAL, "the cosine schedule needs total_steps > 0 outside bp_fit");
    return train_step(tr, x, y, n, loss_out, err);
}

/* ------------------------------------------------------------------------ */
/* Data checks, evaluation                                                   */
/* ------------------------------------------------------------------------ */

static int targets_width(const bp_net *net, bp_loss loss)
{
    return loss == BP_LOSS_CROSS_ENTROPY ? bp_net_loss_steps(net, loss)
                                         : net->layers[bp_loss_input_layer(net, loss)].out;
}

static bp_status check_data(const bp_net *net, bp_loss loss, const bp_data *d, const char *what,
                            bp_error *err)
{
    if (!d->x || (!d->y && d->n > 0))
        return bp_fail(err, BP_EINVAL, "%s data: missing inputs or targets", what);
    if (d->n < 1) return bp_fail(err, BP_EINVAL, "%s data is empty", what);
    if (d->n_inputs != net->n_inputs)
        return bp_fail(err, BP_ESHAPE, "%s data has %d features, the network takes %d inputs", what,
                       d->n_inputs, net->n_inputs);
    int tw = targets_width(net, loss);
    if (d->n_targets != tw)
        return bp_fail(err, BP_ESHAPE, "%s data has %d target columns, the %s loss needs %d", what,
                       d->n_targets, bp_loss_name(loss), tw);
    int outs = bp_net_loss_width(net, loss);
    long bad = bp_net_bad_id(net, d->x, d->n);
    if (bad >= 0)
        return bp_fail(err, BP_EINVAL, "%s data: row %ld, step %ld holds %g, not a token id in 0..%d",
                       what, bad / d->n_inputs + 1, bad % d->n_inputs + 1, (double)d->x[bad],
                       net->layers[0].desc.vocab - 1);
    /* The inputs are most of the data (W1: 47 million values, read again
     * by every bp_fit call): one vectorized pass split across the threads
     * first; the rows are walked below for the targets, and for the
     * inputs only when that pass found a value to report (so the message
     * names the same row and column as a walk of every row would). */
    int x_ok = bp_k_all_finite(d->x, (size_t)d->n * d->n_inputs);
    for (int r = 0; r < d->n; r++) {
        const bp_real *xr = d->x + (size_t)r * d->n_inputs;
        for (int j = 0; j < d->n_inputs && !x_ok; j++)
            if (!isfinite(xr[j]))
                return bp_fail(err, BP_EINVAL, "%s data: row %d, feature %d is %g", what, r + 1, j + 1,
                               (double)xr[j]);
        const bp_real *yr = d->y + (size_t)r * tw;
        for (int j = 0; j < tw; j++) {
            if (!isfinite(yr[j]))
                return bp_fail(err, BP_EINVAL, "%s data: row %d, target %d is %g", what, r + 1, j + 1,
                               (double)yr[j]);
            if (loss == BP_LOSS_CROSS_ENTROPY && (yr[j] < 0 || yr[j] >= outs || yr[j] != (int)yr[j]))
                return bp_fail(err, BP_EINVAL,
                               "%s data: row %d has label %g, the network has classes 0..%d", what,
                               r + 1, (double)yr[j], outs - 1);
            if (loss == BP_LOSS_BCE && (yr[j] < 0 || yr[j] > 1))
                return bp_fail(err, BP_EINVAL, "%s data: row %d, target %d is %g, bce needs [0, 1]",
                               what, r + 1, j + 1, (double)yr[j]);
        }
    }
    return BP_OK;
}

/* Loss and accuracy in inference mode, in chunks of the reserved batch
 * (the training one, or an inference one of up to 256). Data-parallel
 * (comm): this rank's contiguous share of the rows, or for a stateful
 * network of this rank's streams, its share of each window of `window`
 * rows (one per stream of all ranks); the sums are added over the ranks. */
static bp_status evaluate(bp_net *net, bp_loss loss, const bp_data *d, const bp_comm *comm,
                          int window, double *loss_out, double *acc_out, bp_error *err)
{
    int lo = 0, hi = d->n, dist = comm && comm->size > 1;
    if (dist && !(net->streams && window > 0)) {
        lo = (int)((int64_t)d->n * comm->rank / comm->size);
        hi = (int)((int64_t)d->n * (comm->rank + 1) / comm->size);
    }
    int chunk = net->max_batch > net->infer_batch ? net->max_batch : net->infer_batch;
    if (net->streams) {
        /* Stateful: windows of `streams` streams, in order, from a zero state. */
        bp_status s = bp_net_reserve(net, net->streams, err);
        if (s) return s;
        bp_net_prepare(net, net->streams, 0);
        bp_net_reset_state(net);
        chunk = net->streams;
    } else if (chunk < 1) {
        bp_status s = bp_net_reserve(net, d->n < 256 ? d->n : 256, err);
        if (s) return s;
        chunk = net->infer_batch;
    }
    int steps = bp_net_loss_steps(net, loss);
    int dz = bp_net_loss_width(net, loss), tw = targets_width(net, loss);
    double sum = 0;
    long hits = 0;
    int stride = chunk, first = lo;
    if (dist && net->streams && window > 0) { /* rows [w + s0, w + s0 + streams) of each window w */
        stride = window;
        first = (int)((int64_t)window * comm->rank / comm->size);
    }
    for (int start = first; start < hi; start += stride) {
        int m = hi - start < chunk ? hi - start : chunk;
        bp_net_forward_ws(net, d->x + (size_t)start * d->n_inputs, m, 0);
        long c = 0;
        sum += m * bp_net_loss_of(net, loss, d->y + (size_t)start * tw, m, NULL, &c);
        hits += c;
    }
    if (net->streams) bp_net_reset_state(net);
    if (dist) {
        double v[2] = {sum, (double)hits};
        if (bp_comm_sum(comm, v, 2, BP_COMM_F64))
            return bp_fail(err, BP_ECOMM, "evaluation: summing over the ranks failed");
        sum = v[0];
        hits = (long)v[1];
    }
    double rows = (double)d->n * steps;
    if (loss_out) *loss_out = sum / d->n;
    if (acc_out)
        *acc_out = loss == BP_LOSS_CROSS_ENTROPY ? (double)hits / rows
                 : loss == BP_LOSS_BCE            ? (double)hits / (rows * dz)
                                                  : NAN;
    return BP_OK;
}

bp_status bp_evaluate(bp_net *net, bp_loss loss, const bp_data *data, double *loss_out,
                      double *accuracy_out, bp_error *err)
{
    if (!net || !data) return bp_fail(err, BP_EINVAL, "bp_evaluate: NULL argument");
    if ((int)loss < BP_LOSS_MSE || loss > BP_LOSS_BCE) return bp_fail(err, BP_EINVAL, "unknown loss %d", (int)loss);
    bp_status s = check_data(net, loss, data, "evaluation", err);
    if (s) return s;
    return evaluate(net, loss, data, NULL, 0, loss_out, accuracy_out, err);
}

/* ------------------------------------------------------------------------ */
/* fit                                                                       */
/* ------------------------------------------------------------------------ */

/* Augment the m samples of xb [m, C, H, W] in place (tmp: [C*H*W]): each
 * is flipped horizontally with probability 1/2 (augment_hflip), then
 * translated by (dy, dx) uniform in [-s, s]^2 (augment_shift = s), the
 * uncovered pixels 0:  out[c, h, w] = flip(x)[c, h - dy, w - dx]. */
static void augment_batch(bp_trainer *tr, bp_real *xb, int m, bp_real *tmp)
{
    const bp_shape sh = tr->net->input_shape;
    int C = sh.dim[0], H = sh.dim[1], W = sh.dim[2], s = tr->cfg.augment_shift;
    size_t per = (size_t)C * H * W;
    for (int q = 0; q < m; q++) {
        bp_real *x = xb + (size_t)q * per;
        int flip = tr->cfg.augment_hflip ? (int)bp_rng_below(&tr->aug_rng, 2) : 0;
        int dy = s ? (int)bp_rng_below(&tr->aug_rng, 2 * (uint64_t)s + 1) - s : 0;
        int dx = s ? (int)bp_rng_below(&tr->aug_rng, 2 * (uint64_t)s + 1) - s : 0;
        if (!flip && !dy && !dx) continue;
        memcpy(tmp, x, per * sizeof(bp_real));
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++) {
                int hs = h - dy;
                for (int w = 0; w < W; w++) {
                    int ws = w - dx;
                    if (flip) ws = W - 1 - ws;
                    x[((size_t)c * H + h) * W + w] =
                        hs >= 0 && hs < H && ws >= 0 && ws < W ? tmp[((size_t)c * H + hs) * W + ws] : 0;
                }
            }
    }
}

/* Gathering a shuffled batch: rows of this many values per thread at
 * least (W1's 128 rows of 784 take two threads, W2's 32 of 10 one), and
 * the row this many ahead of the one being copied is requested first. */
#define GATHER_GRAIN 16384
#define GATHER_AHEAD 2
#define GATHER_PREFETCH_BYTES 1024

/* Copy rows idx[0..m) of d into xb [m, n_inputs] and yb [m, n_targets].
 * The rows lie anywhere in the data (W1: 3 KB each out of 188 MB), so
 * each copy would start with a TLB and a cache miss: the first KB of the
 * row GATHER_AHEAD ahead is requested while this one is copied (the
 * hardware prefetcher streams the rest), and a large batch splits its
 * rows across the threads. The copies are the same whatever the split. */
static void gather_batch(bp_real *xb, bp_real *yb, const bp_data *d, const int *idx, int m)
{
    int in = d->n_inputs, tw = d->n_targets;
    size_t xbytes = (size_t)in * sizeof(bp_real), ybytes = (size_t)tw * sizeof(bp_real);
    size_t pf = xbytes < GATHER_PREFETCH_BYTES ? xbytes : GATHER_PREFETCH_BYTES;
    int threads = bp_threads_for((double)m * in, GATHER_GRAIN);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int lo = (int)((int64_t)m * id / nt), hi = (int)((int64_t)m * (id + 1) / nt);
        for (int q = lo; q < hi; q++) {
#if defined(__GNUC__)
            for (int a = q == lo ? q : q + GATHER_AHEAD; a <= q + GATHER_AHEAD && a < hi; a++) {
                const char *p = (const char *)(d->x + (size_t)idx[a] * in);
                for (size_t o = 0; o < pf; o += 64) __builtin_prefetch(p + o, 0, 3);
            }
#endif
            memcpy(xb + (size_t)q * in, d->x + (size_t)idx[q] * in, xbytes);
            memcpy(yb + (size_t)q * tw, d->y + (size_t)idx[q] * tw, ybytes);
        }
    }
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Rows rank r of `ranks` takes of a batch of m: [m r / N, m (r + 1) / N). */
static int share(int m, int r, int ranks)
{
    return (int)((int64_t)m * (r + 1) / ranks - (int64_t)m * r / ranks);
}

/* Data-parallel: every rank's data checks passed and its data equal rank
 * 0's (row counts, widths, a hash of the values); collective. */
static bp_status agree_data(bp_trainer *tr, const bp_data *train, const bp_data *val,
                            bp_status local, bp_error *err)
{
    static const char *const names[] = {
        "training row count", "training feature count", "training target columns",
        "training inputs' hash (high half)", "training inputs' hash (low half)",
        "training targets' hash (high half)", "training targets' hash (low half)",
        "validation row count", "validation inputs' hash (high half)",
        "validation inputs' hash (low half)", "validation targets' hash (high half)",
        "validation targets' hash (low half)"};
    double v[12] = {0};
    bp_error lerr = {0};
    if (local && err) lerr = *err;
    if (!local) {
        const bp_data *d[2] = {train, val};
        v[0] = train->n;
        v[1] = train->n_inputs;
        v[2] = train->n_targets;
        v[7] = val ? val->n : -1;
        for (int k = 0; k < 2; k++) {
            if (!d[k]) continue;
            double *h = k ? v + 8 : v + 3;
            bp_comm_hash(d[k]->x, (size_t)d[k]->n * d[k]->n_inputs * sizeof(bp_real), &h[0], &h[1]);
            bp_comm_hash(d[k]->y, (size_t)d[k]->n * d[k]->n_targets * sizeof(bp_real), &h[2], &h[3]);
        }
    }
    return bp_comm_check(&tr->comm, local, &lerr, v, names, 12, "the ranks' data differ", err);
}

bp_status bp_fit(bp_trainer *tr, const bp_data *train, const bp_data *val, bp_fit_result *res,
                 bp_error *err)
{
    if (!tr || !train) return bp_fail(err, BP_EINVAL, "bp_fit: NULL argument");
    bp_net *net = tr->net;
    bp_train_config *c = &tr->cfg;
    bp_status s = check_data(net, c->loss, train, "training", err);
    if (!s && val) s = check_data(net, c->loss, val, "validation", err);

    /* Every check and allocation of this call comes before the ranks'
     * agreement, which carries its status: a rank that fails here stops
     * every rank with its message, none waits for it. */
    int n = s ? 1 : train->n, in = train->n_inputs, tw = train->n_targets;
    int batch = c->batch_size == 0 || c->batch_size > n ? n : c->batch_size;
    /* Data-parallel: rank r takes rows [m r / N, m (r + 1) / N) of each
     * global batch of m rows; each needs one at least. A rank's share of
     * the last batch may exceed its share of a full one: buffers hold the
     * largest share, ceil(batch / N). */
    int ranks = tr->dist ? tr->comm.size : 1, rank = tr->dist ? tr->comm.rank : 0;
    int local_max = (batch + ranks - 1) / ranks;
    if (!s && tr->dist && (batch < ranks || (n % batch && n % batch < ranks)))
        s = bp_fail(err, BP_EINVAL, "%d ranks need at least %d rows in every batch: batch %d of "
                    "%d rows leaves %d in the last one (choose another batch size)", ranks, ranks,
                    batch, n, n % batch ? n % batch : batch);
    /* Stateful: each batch holds one window of every stream; with several
     * ranks, each carries the streams of its share of the batch. */
    if (!s && net->streams &&
        (c->shuffle || share(batch, rank, ranks) != net->streams || n % batch ||
         (val && val->n % batch) || c->augment_hflip || c->augment_shift))
        s = bp_fail(err, BP_EINVAL, "a stateful network (%d streams) trains in order: shuffle "
                    "off, batch size %d, as many rows as a multiple of it in the training and "
                    "validation data (got shuffle %d, batch %d, %d and %d rows), no augmentation",
                    net->streams, tr->dist ? batch : net->streams, c->shuffle, batch, n,
                    val ? val->n : 0);
    if (!s) s = trainer_reserve(tr, local_max, err);
    long user_total = c->total_steps;
    int *perm = NULL;
    bp_real *xb = NULL, *yb = NULL, *best = NULL, *aug_tmp = NULL;
    int augment = c->augment_hflip || c->augment_shift;
    if (!s) {
        perm = bp_alloc_array((size_t)n, sizeof *perm);
        xb = bp_alloc_aligned((size_t)local_max * in, sizeof(bp_real));
        yb = bp_alloc_aligned((size_t)local_max * tw, sizeof(bp_real));
        /* best weights: parameters, then buffers (running statistics) */
        if (c->patience > 0) best = bp_alloc_aligned(net->n_params + net->n_buffers, sizeof(bp_real));
        if (augment) aug_tmp = bp_alloc_aligned((size_t)in, sizeof(bp_real));
        if (!perm || !xb || !yb || (c->patience > 0 && !best) || (augment && !aug_tmp))
            s = bp_fail(err, BP_ENOMEM, "out of memory preparing training");
    }
    if (tr->dist) s = agree_data(tr, train, val, s, err);
    if (s) goto done;

    int batches = (n + batch - 1) / batch;
    /* GEMM kernels for the full and the last partial batch, made now so no
     * step compiles one. */
    bp_net_prepare(net, share(batch, rank, ranks), 1);
    if (n % batch) bp_net_prepare(net, share(n % batch, rank, ranks), 1);
    /* Cosine with total_steps 0: this call's steps end the curve. Set for
     * the duration of the call only; the caller's 0 is restored below. */
    if (c->schedule == BP_SCHED_COSINE && c->total_steps == 0)
        c->total_steps = tr->t + (long)c->epochs * batches;
    for (int i = 0; i < n; i++) perm[i] = i;

    bp_fit_result r = {0};
    r.best_loss = INFINITY;
    r.final_val_loss = NAN;
    int wait = 0;
    int relu_units = 0;
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].kind == BP_RELU) relu_units += net->layers[i].out;

    for (int epoch = 1; epoch <= c->epochs; epoch++) {
        double t0 = now_seconds();
        if (c->shuffle)
            for (int i = n - 1; i > 0; i--) {
                int j = (int)bp_rng_below(&tr->rng, (uint64_t)i + 1);
                int t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
            }
        memset(tr->norm2_acc, 0, (size_t)net->n_layers * sizeof(double));
        memset(tr->time2_acc, 0, 2 * (size_t)net->n_layers * sizeof(double));
        tr->norm_steps = 0;
        bp_net_reset_state(net); /* stateful: every epoch reads the streams from their start */
        memset(tr->active, 0, (size_t)relu_units * sizeof(bp_real));
        double loss_sum = 0;
        long hits = 0, seen = 0;
        for (int b = 0; b < batches; b++) {
            int gstart = b * batch, gm = n - gstart < batch ? n - gstart : batch;
            /* this rank's rows of the global batch (all of them with one) */
            int start = gstart + (int)((int64_t)gm * rank / ranks), m = share(gm, rank, ranks);
            const bp_real *xs, *ys;
            if (c->shuffle || augment) {
                gather_batch(xb, yb, train, perm + start, m);
                if (augment) augment_batch(tr, xb, m, aug_tmp);
                xs = xb;
                ys = yb;
            } else { /* file order: the batch is a contiguous slice, no copy */
                xs = train->x + (size_t)start * in;
                ys = train->y + (size_t)start * tw;
            }
            double loss;
            net->global_n = tr->dist ? gm : 0;
            s = train_step(tr, xs, ys, m, &loss, err);
            net->global_n = 0;
            if (s == BP_ESTOPPED) { /* a rank's callback asked: no rank took this step */
                s = BP_OK;
                r.stopped_early = 1;
                break;
            }
            if (s) {
                /* Prefix the epoch to the step's message. */
                if (err) {
                    char msg[sizeof err->message];
                    snprintf(msg, sizeof msg, "epoch %d, %.480s", epoch, err->message);
                    memcpy(err->message, msg, sizeof msg);
                }
                goto done;
            }
            loss_sum += loss * m;
            hits += tr->last_correct;
            seen += m;
            if (c->on_step) {
                /* samples: the global count; loss: this rank's running mean */
                bp_step_info si = {epoch, c->epochs, b + 1, batches, tr->t, gstart + gm,
                                   loss_sum / seen, bp_schedule_lr(c, tr->t - 1), now_seconds() - t0};
                if (c->on_step(&si, c->user)) {
                    if (tr->dist) {
                        tr->pending_stop = 1; /* every rank stops before the next step */
                    } else {
                        r.stopped_early = 1;
                        break;
                    }
                }
            }
        }
        if (tr->dist) {
            /* The epoch's sums over the ranks, a stop asked at its last step,
             * and rank 0's running statistics (DDP's broadcast_buffers). */
            double v[4] = {loss_sum, (double)hits, (double)seen, tr->pending_stop};
            tr->pending_stop = 0;
            if (bp_comm_sum(&tr->comm, v, 4, BP_COMM_F64) ||
                (net->n_buffers && !net->sync_bn &&
                 tr->comm.bcast(tr->comm.ctx, net->buffers, net->n_buffers * sizeof(bp_real), 0))) {
                s = bp_fail(err, BP_ECOMM, "epoch %d: summing over the ranks failed", epoch);
                goto done;
            }
            loss_sum = v[0];
            hits = (long)v[1];
            seen = (long)v[2];
            if (v[3] != 0) r.stopped_early = 1;
        }
        if (seen == 0) break;
        bp_epoch_info ei;
        memset(&ei, 0, sizeof ei);
        ei.epoch = epoch;
        ei.epochs = c->epochs;
        ei.step = tr->t;
        ei.train_loss = loss_sum / seen;
        int dz = bp_net_loss_width(net, c->loss);
        double rows = (double)seen * bp_net_loss_steps(net, c->loss);
        ei.train_accuracy = c->loss == BP_LOSS_CROSS_ENTROPY ? (double)hits / rows
                          : c->loss == BP_LOSS_BCE           ? (double)hits / (rows * dz)
                                                             : NAN;
        ei.val_loss = ei.val_accuracy = NAN;
        if (val) {
            s = evaluate(net, c->loss, val, tr->dist ? &tr->comm : NULL, batch, &ei.val_loss,
                         &ei.val_accuracy, err);
            if (s) goto done;
        }
        ei.lr = bp_schedule_lr(c, tr->t - 1);
        ei.n_layers = net->n_layers;
        for (int i = 0; i < net->n_layers; i++) {
            tr->grad_norm_out[i] = tr->norm_steps ? sqrt(tr->norm2_acc[i] / tr->norm_steps) : 0;
            tr->dead_out[i] = -1;
            tr->time_first_out[i] = tr->norm_steps ? sqrt(tr->time2_acc[2 * i] / tr->norm_steps) : 0;
            tr->time_last_out[i] = tr->norm_steps ? sqrt(tr->time2_acc[2 * i + 1] / tr->norm_steps) : 0;
            if (net->layers[i].kind == BP_RELU) {
                int u = net->layers[i].out, dead = 0;
                const bp_real *a = tr->active + tr->active_off[i];
                for (int j = 0; j < u; j++) dead += !(a[j] > 0);
                tr->dead_out[i] = (double)dead / u;
            }
        }
        ei.grad_norm = tr->grad_norm_out;
        ei.dead_fraction = tr->dead_out;
        ei.grad_first_step = tr->time_first_out;
        ei.grad_last_step = tr->time_last_out;
        double monitored = val ? ei.val_loss : ei.train_loss;
        r.epochs_run = epoch;
        r.steps = tr->t;
        r.final_train_loss = ei.train_loss;
        r.final_val_loss = ei.val_loss;
        if (monitored < r.best_loss - c->min_delta || r.best_epoch == 0) {
            if (monitored < r.best_loss) r.best_loss = monitored;
            r.best_epoch = epoch;
            wait = 0;
            if (best) {
                memcpy(best, net->params, net->n_params * sizeof(bp_real));
                memcpy(best + net->n_params, net->buffers, net->n_buffers * sizeof(bp_real));
            }
        } else {
            wait++;
        }
        ei.best_epoch = r.best_epoch;
        ei.seconds = now_seconds() - t0;
        int stop = r.stopped_early;
        if (c->on_epoch && c->on_epoch(&ei, c->user)) stop = 1;
        if (c->patience > 0 && wait >= c->patience) stop = 1;
        if (tr->dist) { /* a stop asked on any rank stops them all */
            double v = stop;
            if (bp_comm_sum(&tr->comm, &v, 1, BP_COMM_F64)) {
                s = bp_fail(err, BP_ECOMM, "epoch %d: agreeing on stopping failed", epoch);
                goto done;
            }
            stop = v != 0;
        }
        if (stop) {
            r.stopped_early = 1;
            break;
        }
    }
    if (!r.best_epoch) r.best_epoch = r.epochs_run;
    if (best && r.best_epoch > 0) {
        memcpy(net->params, best, net->n_params * sizeof(bp_real));
        memcpy(net->buffers, best + net->n_params, net->n_buffers * sizeof(bp_real));
    }
    if (res) *res = r;
done:
    c->total_steps = user_total;
    free(perm);
    free(xb);
    free(yb);
    free(best);
    free(aug_tmp);
    return s;
}
