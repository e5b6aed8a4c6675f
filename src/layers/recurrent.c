/*
 * recurrent.c - torch.nn.RNN (tanh), torch.nn.LSTM and torch.nn.GRU with
 * batch_first=True, one layer each: a sequence [T, F] becomes the hidden
 * state of every step [T, H]. Initial state zero, or the state carried
 * from the previous pass (bp_net_set_stateful: truncated BPTT).
 *
 * Parameters, in torch's state_dict order (G = 1, 4, 3 gates):
 *   weight_ih [G*H, F], weight_hh [G*H, H], bias_ih [G*H], bias_hh [G*H]
 * Equations (x_t the input of step t, h_{t-1} the previous state):
 *   rnn:  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
 *   lstm: [i, f, g, o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, then
 *         i, f, o = sigmoid, g = tanh; c_t = f c_{t-1} + i g; h_t = o tanh(c_t)
 *   gru:  [r, z] = sigmoid(W_i[rz] x_t + b_i[rz] + W_h[rz] h_{t-1} + b_h[rz]),
 *         n = tanh(W_in x_t + b_in + r (W_hn h_{t-1} + b_hn)),
 *         h_t = (1 - z) n + z h_{t-1}
 *
 * The fast path: the input projection of every step is one matrix product
 * (x [n*T, F] W_ih^T), each step one recurrent product (h [n, H] W_hh^T)
 * and one fused gate kernel per sample (kernels.c). The backward pass
 * (backpropagation through time) walks the steps backwards with one
 * product per step (dA_t W_hh, the gradient reaching h_{t-1}); the weight
 * gradients are then matrix products over every step at once:
 *   dW_ih = dA^T x,  dW_hh = dA_hh^T Hprev,  dx = dA W_ih
 * where dA [n*T, G*H] holds the gates' pre-activation gradients and Hprev
 * [n*T, H] the state each step started from. rnn and lstm, where dA_hh =
 * dA, make the first two one product: [dW_ih | dW_hh] = dA^T [x | Hprev],
 * with x and Hprev side by side in XH [n*T, F + H] (a wider product runs
 * closer to the GEMM library's peak than one with F = 48 columns).
 * Everything is batch-major (row b*T + t), as x and y are, so no
 * transposes.
 */
#include "layer.h"
#include "../kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define BP_MAX_HIDDEN 1000000

static int gates_of(const bp_layer *L) { return L->kind == BP_LSTM ? 4 : L->kind == BP_GRU ? 3 : 1; }

static bp_status rec_check(const bp_layer_desc *d, int col, bp_error *err)
{
    const char *w = d->kind == BP_LSTM ? "lstm" : d->kind == BP_GRU ? "gru" : "rnn";
    if (d->units < 1 || d->units > BP_MAX_HIDDEN)
        return bp_fail(err, BP_ESPEC, "spec:1:%d: %s needs 1..%d hidden units, got %d", col, w,
                       BP_MAX_HIDDEN, d->units);
    return BP_OK;
}

/* [T, F] -> [T, H]. */
static bp_status rec_shape(bp_layer *L, int col, bp_error *err)
{
    if (L->in_shape.rank != 2) return bp_need_sequence(L, col, err);
    L->out_shape = L->in_shape;
    L->out_shape.dim[1] = L->desc.units;
    L->state_w = (L->kind == BP_LSTM ? 2 : 1) * L->desc.units;
    return BP_OK;
}

static int rec_tensors(const bp_layer *L, bp_tensor_spec *t)
{
    int64_t GH = (int64_t)gates_of(L) * L->desc.units;
    t[0] = (bp_tensor_spec){"weight_ih_l0", 2, {GH, L->in_shape.dim[1]}, 1, BP_DTYPE_F32};
    t[1] = (bp_tensor_spec){"weight_hh_l0", 2, {GH, L->desc.units}, 1, BP_DTYPE_F32};
    t[2] = (bp_tensor_spec){"bias_ih_l0", 1, {GH}, 1, BP_DTYPE_F32};
    t[3] = (bp_tensor_spec){"bias_hh_l0", 1, {GH}, 1, BP_DTYPE_F32};
    return 4;
}

/* torch's reset_parameters: every tensor U(-1/sqrt(H), 1/sqrt(H)), in
 * state_dict order (whatever the scheme: torch has no other default). */
static void rec_init(bp_layer *L, bp_init scheme, int relu_next, bp_rng *rng)
{
    (void)scheme, (void)relu_next;
    double k = 1 / sqrt((double)L->desc.units);
    for (size_t q = 0; q < L->n_params; q++)
        L->w[q] = (bp_real)(k * (2.0 * bp_rng_uniform(rng) - 1.0));
}

/* The workspace of a pass over n samples, carved from one block. */
typedef struct rec_ws {
    bp_real *gates; /* [n*T, GH]: input projection, then activated gates */
    bp_real *dA;    /* [n*T, GH]: pre-activation gradients (input side) */
    bp_real *dAh;   /* [n*T, GH]: recurrent side (GRU; else dA) */
    bp_real *XH;    /* rnn, lstm: [n*T, F + H]: x, then Hp in each row */
    bp_real *Hp;    /* [n*T, H] (gru) or inside XH (row stride hs): the state
                     * h_{t-1} step t started from (training only) */
    size_t hs;      /* row stride of Hp */
    bp_real *dWc;   /* rnn, lstm: [G*H, F + H]: [dW_ih | dW_hh] */
    bp_real *C;     /* [n*T, H]: LSTM cell c_t */
    bp_real *Rn;    /* [n*T, H]: GRU W_hn h_{t-1} + b_hn */
    bp_real *c0;    /* [n, H]: LSTM initial cell */
    bp_real *R;     /* [n, GH]: this step's recurrent product */
    bp_real *dAc;   /* [n, GH]: this step's recurrent-side gradient, contiguous */
    bp_real *hc;    /* [n, H]: the current state h */
    bp_real *cc;    /* [n, H]: the current cell (LSTM) */
    bp_real *dhr;   /* [n, H]: gradient reaching h through W_hh */
    bp_real *dhd;   /* [n, H]: GRU: direct part z dh */
    bp_real *dc;    /* [n, H]: LSTM cell gradient */
    bp_real *db;    /* [2 GH]: bias gradients (input side, recurrent side) */
} rec_ws;

/* Lays out the workspace at base (NULL: sizes only); returns its bytes. */
static uint64_t rec_layout(const bp_layer *L, int n, void *base, rec_ws *w)
{
    uint64_t T = (uint64_t)L->in_shape.dim[0], H = (uint64_t)L->desc.units;
    uint64_t F = (uint64_t)L->in_shape.dim[1];
    uint64_t GH = (uint64_t)gates_of(L) * H, NT = bp_mul_sat((uint64_t)n, T);
    int lstm = L->kind == BP_LSTM, gru = L->kind == BP_GRU;
    struct { bp_real **p; uint64_t count; } parts[] = {
        {&w->gates, bp_mul_sat(NT, GH)}, {&w->dA, bp_mul_sat(NT, GH)},
        {&w->dAh, gru ? bp_mul_sat(NT, GH) : 0}, {&w->Hp, gru ? bp_mul_sat(NT, H) : 0},
        {&w->XH, gru ? 0 : bp_mul_sat(NT, F + H)}, {&w->dWc, gru ? 0 : bp_mul_sat(GH, F + H)},
        {&w->C, lstm ? bp_mul_sat(NT, H) : 0}, {&w->Rn, gru ? bp_mul_sat(NT, H) : 0},
        {&w->c0, lstm ? (uint64_t)n * H : 0}, {&w->R, (uint64_t)n * GH},
        {&w->dAc, (uint64_t)n * GH}, {&w->hc, (uint64_t)n * H},
        {&w->cc, lstm ? (uint64_t)n * H : 0}, {&w->dhr, (uint64_t)n * H},
        {&w->dhd, gru ? (uint64_t)n * H : 0}, {&w->dc, lstm ? (uint64_t)n * H : 0},
        {&w->db, 2 * GH},
    };
    uint64_t off = 0;
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        if (base) *parts[k].p = parts[k].count ? (bp_real *)base + off : NULL;
        /* 64-byte aligned parts */
        off = bp_add_sat(off, (parts[k].count + 15) & ~(uint64_t)15);
    }
    if (base && !gru) {
        w->dAh = w->dA;
        w->Hp = w->XH + F;
    }
    w->hs = gru ? H : F + H;
    return bp_mul_sat(off, sizeof(bp_real));
}

static uint64_t rec_ws_bytes(const bp_layer *L, int batch)
{
    rec_ws w;
    return rec_layout(L, batch, NULL, &w);
}

/* Prepared products for one batch size. */
typedef struct rec_fast {
    bp_mm *xp;    /* gates [n*T, GH] = x W_ih^T + b_ih */
    bp_mm *rec;   /* R [n, GH] = h W_hh^T + b_hh */
    bp_mm *dh;    /* dhr [n, H] = dAc W_hh */
    bp_mm *dw_ih; /* gru: [GH, F] = dA^T x */
    bp_mm *dw_hh; /* gru: [GH, H] = dAh^T Hp */
    bp_mm *dw_c;  /* rnn, lstm: [GH, F + H] = dA^T XH */
    bp_mm *dx;    /* [n*T, F] = dA W_ih */
} rec_fast;

static int rec_prepare(bp_net *net, bp_layer *L, int slot, int n, int training, int need_dx)
{
    rec_fast *f = L->fast[slot];
    if (!f) f = L->fast[slot] = calloc(1, sizeof *f);
    if (!f) return 1; /* bp_gemm then */
    int T = L->in_shape.dim[0], F = L->in_shape.dim[1], H = L->desc.units, GH = gates_of(L) * H;
    int NT = n * T;
    if (!f->xp) f->xp = bp_mm_create(net->gemm, 0, 1, NT, GH, F, 1);
    if (!f->rec) f->rec = bp_mm_create(net->gemm, 0, 1, n, GH, H, 1);
    if (!training) return 1;
    if (!f->dh) f->dh = bp_mm_create(net->gemm, 0, 0, n, H, GH, 0);
    if (L->kind == BP_GRU) {
        if (!f->dw_ih) f->dw_ih = bp_mm_create(net->gemm, 1, 0, GH, F, NT, 0);
        if (!f->dw_hh) f->dw_hh = bp_mm_create(net->gemm, 1, 0, GH, H, NT, 0);
    } else if (!f->dw_c) {
        f->dw_c = bp_mm_create(net->gemm, 1, 0, GH, F + H, NT, 0);
    }
    if (!f->dx && need_dx) f->dx = bp_mm_create(net->gemm, 0, 0, NT, F, GH, 0);
    return 1;
}

static void rec_release(bp_layer *L, int slot)
{
    for (int q = 0; q < BP_MM_SLOTS; q++) {
        if (!bp_slot_selected(q, slot) || !L->fast[q]) continue;
        rec_fast *f = L->fast[q];
        bp_mm_free(f->xp), bp_mm_free(f->rec), bp_mm_free(f->dh);
        bp_mm_free(f->dw_ih), bp_mm_free(f->dw_hh), bp_mm_free(f->dw_c), bp_mm_free(f->dx);
        free(f);
        L->fast[q] = NULL;
    }
}

static rec_fast *rec_fast_of(const bp_net *net, const bp_layer *L, int n, int training)
{
    int q = bp_net_slot(net, n, training);
    return q < 0 ? NULL : L->fast[q];
}

/* Threads for a per-step loop over n samples of `per` values each. */
static int step_threads(int n, int per) { return bp_threads_for((double)n * per, 32768.0); }

/* Thread k of K takes units [unit_span(H, k, K), unit_span(H, k + 1, K)) of
 * every sample: spans of whole 64-byte lines where H allows. */
static int unit_span(int H, int k, int K)
{
    if (k >= K) return H;
    int j = (int)((int64_t)H * k / K);
    return H >= 16 * K ? j & ~15 : j;
}

static void rec_forward(bp_net *net, bp_layer *L, bp_real *y, const bp_real *x, int n,
                        int training)
{
    const int T = L->in_shape.dim[0], F = L->in_shape.dim[1], H = L->desc.units;
    const int G = gates_of(L), GH = G * H, NT = n * T;
    const bp_real *Wih = L->w, *Whh = Wih + (size_t)GH * F, *bih = Whh + (size_t)GH * H,
                  *bhh = bih + GH;
    rec_ws w;
    rec_layout(L, n, bp_layer_scratch(net, L, n, training), &w);
    rec_fast *f = rec_fast_of(net, L, n, training);
    int lstm = L->kind == BP_LSTM, gru = L->kind == BP_GRU;

    /* Input projection of every step: gates = x W_ih^T + b_ih. */
    if (!bp_mm_run(f ? f->xp : NULL, x, Wih, bih, w.gates)) {
        bp_k_bias_rows(w.gates, bih, NT, GH);
        bp_gemm(0, 1, NT, GH, F, 1, x, F, Wih, F, 1, w.gates, GH);
    }
    /* Initial state: carried, or zero. */
    int carry = net->streams == n && L->state;
    size_t nh = (size_t)n * H;
    if (carry) {
        memcpy(w.hc, L->state, nh * sizeof(bp_real));
        if (lstm) memcpy(w.cc, L->state + nh, nh * sizeof(bp_real));
    } else {
        memset(w.hc, 0, nh * sizeof(bp_real));
        if (lstm) memset(w.cc, 0, nh * sizeof(bp_real));
    }
    if (lstm) memcpy(w.c0, w.cc, nh * sizeof(bp_real));
    /* rnn, lstm: x beside the states in XH, for the weight gradients */
    if (training && !gru)
        for (size_t row = 0; row < (size_t)NT; row++)
            memcpy(w.XH + row * w.hs, x + row * F, (size_t)F * sizeof(bp_real));

    int nt = step_threads(n, GH);
    for (int t = 0; t < T; t++) {
        /* R = h_{t-1} W_hh^T + b_hh */
        if (!bp_mm_run(f ? f->rec : NULL, w.hc, Whh, bhh, w.R)) {
            bp_k_bias_rows(w.R, bhh, n, GH);
            bp_gemm(0, 1, n, GH, H, 1, w.hc, H, Whh, H, 1, w.R, GH);
        }
        /* The cells, each thread on its own units of every sample. */
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            int k = omp_get_thread_num(), K = omp_get_num_threads();
            int j0 = unit_span(H, k, K), m = unit_span(H, k + 1, K) - j0;
            for (int b = 0; b < n && m > 0; b++) {
                size_t row = (size_t)b * T + t, o = (size_t)b * H + j0;
                bp_real *a = w.gates + row * GH + j0, *yo = y + row * H + j0;
                const bp_real *r = w.R + (size_t)b * GH + j0;
                if (training) memcpy(w.Hp + row * w.hs + j0, w.hc + o, (size_t)m * sizeof(bp_real));
                if (lstm)
                    bp_k_lstm_fwd(a, r, w.cc + o, w.C + row * H + j0, w.hc + o, yo, H, m);
                else if (gru) bp_k_gru_fwd(a, r, w.Rn + row * H + j0, w.hc + o, yo, H, m);
                else bp_k_rnn_fwd(a, r, w.hc + o, yo, m);
            }
        }
    }
    if (carry && !net->state_hold) {
        memcpy(L->state, w.hc, nh * sizeof(bp_real));
        if (lstm) memcpy(L->state + nh, w.cc, nh * sizeof(bp_real));
    }
}

/* Backpropagation through the T steps of the last forward pass (the
 * workspace holds its gates, states and cells). The gradient stops at the
 * initial state (zero, or carried: a constant). */
static void rec_backward(bp_net *net, bp_layer *L, bp_real *dx, bp_real *dparam,
                         const bp_real *dy, const bp_real *x, const bp_real *y, int n)
{
    const int T = L->in_shape.dim[0], F = L->in_shape.dim[1], H = L->desc.units;
    const int G = gates_of(L), GH = G * H, NT = n * T;
    const bp_real *Wih = L->w, *Whh = Wih + (size_t)GH * F;
    rec_ws w;
    rec_layout(L, n, L->ws, &w);
    rec_fast *f = rec_fast_of(net, L, n, 1);
    int lstm = L->kind == BP_LSTM, gru = L->kind == BP_GRU;
    size_t nh = (size_t)n * H;
    memset(w.dhr, 0, nh * sizeof(bp_real));
    memset(w.db, 0, 2 * (size_t)GH * sizeof(bp_real));
    if (lstm) memset(w.dc, 0, nh * sizeof(bp_real));
    if (gru) memset(w.dhd, 0, nh * sizeof(bp_real));

    int nt = step_threads(n, GH);
    for (int t = T - 1; t >= 0; t--) {
        /* The cells, each thread on its own units of every sample (and so
         * its own columns of the bias gradients: summed in the same order
         * on any thread count). */
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            int k = omp_get_thread_num(), K = omp_get_num_threads();
            int j0 = unit_span(H, k, K), m = unit_span(H, k + 1, K) - j0;
            for (int b = 0; b < n && m > 0; b++) {
                size_t row = (size_t)b * T + t, o = (size_t)b * H + j0;
                const bp_real *dyr = dy + row * H + j0, *dh = w.dhr + o;
                bp_real *da = w.dA + row * GH + j0, *dac = w.dAc + (size_t)b * GH + j0;
                const bp_real *g = w.gates + row * GH + j0;
                if (lstm) {
                    const bp_real *cprev = t ? w.C + (row - 1) * H + j0 : w.c0 + o;
                    bp_k_lstm_bwd(da, dac, w.db + j0, w.dc + o, dyr, dh, g, w.C + row * H + j0,
                                  cprev, H, m);
                } else if (gru) {
                    bp_k_gru_bwd(da, w.dAh + row * GH + j0, dac, w.db + j0, w.db + GH + j0,
                                 w.dhd + o, dyr, dh, g, w.Rn + row * H + j0, w.Hp + row * w.hs + j0,
                                 H, m);
                } else {
                    bp_k_rnn_bwd(da, dac, w.db + j0, dyr, dh, y + row * H + j0, m);
                }
            }
        }
        /* The gradient reaching h_{t-1} through W_hh: dAc W_hh. */
        if (t > 0 && !bp_mm_run(f ? f->dh : NULL, w.dAc, Whh, NULL, w.dhr))
            bp_gemm(0, 0, n, H, GH, 1, w.dAc, GH, Whh, H, 0, w.dhr, H);
    }
    if (dparam) {
        bp_real *dWih = dparam, *dWhh = dWih + (size_t)GH * F, *dbih = dWhh + (size_t)GH * H,
                *dbhh = dbih + GH;
        if (gru) {
            if (!bp_mm_run(f ? f->dw_ih : NULL, w.dA, x, NULL, dWih))
                bp_gemm(1, 0, GH, F, NT, 1, w.dA, GH, x, F, 0, dWih, F);
            if (!bp_mm_run(f ? f->dw_hh : NULL, w.dAh, w.Hp, NULL, dWhh))
                bp_gemm(1, 0, GH, H, NT, 1, w.dAh, GH, w.Hp, H, 0, dWhh, H);
        } else if (bp_mm_run(f ? f->dw_c : NULL, w.dA, w.XH, NULL, w.dWc)) {
            for (size_t g = 0; g < (size_t)GH; g++) {
                memcpy(dWih + g * F, w.dWc + g * w.hs, (size_t)F * sizeof(bp_real));
                memcpy(dWhh + g * H, w.dWc + g * w.hs + F, (size_t)H * sizeof(bp_real));
            }
        } else {
            bp_gemm(1, 0, GH, F, NT, 1, w.dA, GH, w.XH, (int)w.hs, 0, dWih, F);
            bp_gemm(1, 0, GH, H, NT, 1, w.dA, GH, w.Hp, (int)w.hs, 0, dWhh, H);
        }
        /* rnn, lstm: both biases enter the same sum, so share a gradient */
        memcpy(dbih, w.db, (size_t)GH * sizeof(bp_real));
        memcpy(dbhh, gru ? w.db + GH : w.db, (size_t)GH * sizeof(bp_real));
    }
    if (dx && !bp_mm_run(f ? f->dx : NULL, w.dA, Wih, NULL, dx))
        bp_gemm(0, 0, NT, F, GH, 1, w.dA, GH, Wih, F, 0, dx, F);
}

/* The squared norms of the pre-activation gradient of the gates at the
 * first and at the last step of the last backward pass, over the batch:
 * how much gradient reached step 0 through T-1 steps of W_hh, against
 * the last step's. */
static void rec_time_grads(const bp_layer *L, int n, double sq[2])
{
    const int T = L->in_shape.dim[0], GH = gates_of(L) * L->desc.units;
    rec_ws w;
    rec_layout(L, n, L->ws, &w);
    double a = 0, b = 0;
    for (int s = 0; s < n; s++) {
        const bp_real *d0 = w.dA + (size_t)s * T * GH, *d1 = d0 + (size_t)(T - 1) * GH;
        for (int j = 0; j < GH; j++) a += (double)d0[j] * d0[j], b += (double)d1[j] * d1[j];
    }
    sq[0] = a, sq[1] = b;
}

#define REC_OPS(NAME, WORD, KIND)                                                      \
    const bp_layer_ops NAME = {                                                        \
        .word = WORD, .kind = KIND, .usage = WORD "(H)",                               \
        .n_int_min = 1, .n_int_max = 1, .int_slot = {BP_ARG_UNITS},                    \
        .parametric = 1, .infer_ws = 1,                                                \
        .check = rec_check, .shape = rec_shape, .tensors = rec_tensors,                \
        .init = rec_init, .ws_bytes = rec_ws_bytes,                                    \
        .prepare = rec_prepare, .release = rec_release,                                \
        .forward = rec_forward, .backward = rec_backward, .time_grads = rec_time_grads,                              \
    }

REC_OPS(bp_rnn_ops, "rnn", BP_RNN);
REC_OPS(bp_lstm_ops, "lstm", BP_LSTM);
REC_OPS(bp_gru_ops, "gru", BP_GRU);
