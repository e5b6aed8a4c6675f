/*
 * text.c - character-level language models on the command line: reading a
 * text into token ids, laying it out as parallel streams for truncated
 * backpropagation through time, `backprop eval` of a text model (mean
 * cross-entropy and bits per character with carried state) and
 * `backprop generate` (sampling characters).
 *
 * Streams. A text of n ids gives n - 1 predictions (id i+1 from the ids up
 * to i). For training, the predictions are cut into B parallel streams of
 * L = (n - 1) / B consecutive ones (stream s starts at id s*L) and each
 * stream into K = L / T windows of T steps; row k*B + s holds window k of
 * stream s, so consecutive passes of B rows continue every stream where
 * the last one stopped, and a stateful network (bp_net_set_stateful(B))
 * carries each recurrent layer's state across them. The last L - K*T
 * predictions of each stream and the last (n - 1) mod B are not used.
 *
 * eval covers every prediction exactly once: S streams of ceil((n-1)/S)
 * predictions each (the last one shorter), windows padded with id 0 past
 * the end of a stream, the padded steps left out of the sums.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */
/* ------------------------------------------------------------------------ */

int cli_text_read(cli_text *t, const char *path, bp_text_encoding enc, const bp_vocab *fixed,
                  const char *hint, char *msg, size_t msz)
{
    memset(t, 0, sizeof *t);
    msg[0] = '\0';
    const unsigned char *data;
    size_t size;
    if (cli_input_read(path, &data, &size, msg, msz)) return CLI_FAIL;
    const char *name = cli_input_name(path);
    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        snprintf(msg, msz, "%s: gzip-compressed data, not a text (decompress it first: zcat %s | "
                 "backprop ... -)", name, name);
        return CLI_FAIL;
    }
    bp_error err = {0};
    if (!fixed) {
        if (bp_vocab_build(&t->vocab, data, size, enc, name, &err) != BP_OK) {
            snprintf(msg, msz, "%s%s", err.message,
                     strstr(err.message, "invalid UTF-8") && hint ? hint : "");
            return CLI_FAIL;
        }
    } else {
        /* A copy of the model's vocabulary, so every cli_text owns its own. */
        t->vocab.encoding = fixed->encoding;
        t->vocab.size = fixed->size;
        t->vocab.symbols = malloc((size_t)fixed->size * sizeof *fixed->symbols);
        if (!t->vocab.symbols) {
            snprintf(msg, msz, "out of memory");
            return CLI_FAIL;
        }
        memcpy(t->vocab.symbols, fixed->symbols, (size_t)fixed->size * sizeof *fixed->symbols);
    }
    t->ids = malloc((size ? size : 1) * sizeof *t->ids);
    if (!t->ids) {
        cli_text_free(t);
        snprintf(msg, msz, "%s: out of memory for %zu characters", name, size);
        return CLI_FAIL;
    }
    if (bp_text_ids(&t->vocab, data, size, name, t->ids, &t->n, &err) != BP_OK) {
        snprintf(msg, msz, "%s%s", err.message,
                 strstr(err.message, "invalid UTF-8") && hint ? hint : "");
        cli_text_free(t);
        return CLI_FAIL;
    }
    return CLI_OK;
}

void cli_text_free(cli_text *t)
{
    if (!t) return;
    bp_vocab_free(&t->vocab);
    free(t->ids);
    memset(t, 0, sizeof *t);
}

int cli_text_windows(const int32_t *ids, size_t n, int streams, int T, int vocab, bp_data *out)
{
    memset(out, 0, sizeof *out);
    if (n < 2 || streams < 1 || T < 1) return 0;
    size_t L = (n - 1) / (size_t)streams, K = L / (size_t)T;
    if (K < 1) return 0;
    if (K * (size_t)streams > 0x7fffffff) K = 0x7fffffff / (size_t)streams;
    int rows = (int)(K * (size_t)streams);
    out->x = malloc((size_t)rows * T * sizeof(bp_real));
    out->y = malloc((size_t)rows * T * sizeof(bp_real));
    if (!out->x || !out->y) {
        free(out->x);
        free(out->y);
        memset(out, 0, sizeof *out);
        return -1;
    }
    for (size_t k = 0; k < K; k++)
        for (int s = 0; s < streams; s++) {
            size_t row = k * (size_t)streams + (size_t)s, at = (size_t)s * L + k * (size_t)T;
            for (int t = 0; t < T; t++) {
                out->x[row * T + t] = (bp_real)ids[at + t];
                out->y[row * T + t] = (bp_real)ids[at + t + 1];
            }
        }
    out->n = rows;
    out->n_inputs = T;
    out->n_targets = T;
    out->n_classes = vocab;
    out->shape = bp_shape_flat(T);
    out->owned = 1;
    return rows;
}

/* ------------------------------------------------------------------------ */
/* Loss over a whole text, with carried state                                */
/* ------------------------------------------------------------------------ */

int cli_text_loss(bp_net *net, int softmax_out, const int32_t *ids, size_t n, int streams,
                  cli_text_score *sc)
{
    memset(sc, 0, sizeof *sc);
    bp_error err = {0};
    int W = bp_net_inputs(net), V = bp_net_outputs(net) / W;
    size_t P = n - 1; /* predictions */
    if (n < 2) return cli_fail(CLI_FAIL, "internal: no predictions");
    /* Each stream at least one window long where the text allows. */
    size_t S = (size_t)streams;
    size_t by_window = (P + (size_t)W - 1) / (size_t)W;
    if (S > by_window) S = by_window;
    if (S < 1) S = 1;
    size_t L = (P + S - 1) / S;
    S = (P + L - 1) / L; /* no empty stream */
    size_t K = (L + (size_t)W - 1) / (size_t)W;
    bp_real *x = malloc(S * (size_t)W * sizeof *x);
    bp_real *out = malloc(S * (size_t)W * (size_t)V * sizeof *out);
    if (!x || !out) {
        free(x);
        free(out);
        return cli_fail(CLI_FAIL, "out of memory");
    }
    int st = CLI_OK;
    if (bp_net_set_stateful(net, (int)S, &err) != BP_OK) st = cli_fail(CLI_FAIL, "%s", err.message);
    bp_net_reset_state(net);
    double sum = 0;
    long hits = 0, count = 0;
    for (size_t k = 0; !st && k < K; k++) {
        for (size_t s = 0; s < S; s++)
            for (int t = 0; t < W; t++) {
                size_t in_stream = k * (size_t)W + (size_t)t, i = s * L + in_stream;
                x[s * (size_t)W + (size_t)t] = in_stream < L && i < P ? (bp_real)ids[i] : 0;
            }
        if (bp_forward(net, x, (int)S, out, &err) != BP_OK) {
            st = cli_fail(CLI_FAIL, "%s", err.message);
            break;
        }
        for (size_t s = 0; s < S; s++)
            for (int t = 0; t < W; t++) {
                size_t in_stream = k * (size_t)W + (size_t)t, i = s * L + in_stream;
                if (in_stream >= L || i >= P) continue;
                const bp_real *z = out + (s * (size_t)W + (size_t)t) * (size_t)V;
                int target = ids[i + 1], best = 0;
                double lp;
                for (int j = 1; j < V; j++)
                    if (z[j] > z[best]) best = j;
                if (softmax_out) {
                    lp = log(fmax((double)z[target], 1e-300));
                } else {
                    double m = z[best], e = 0;
                    for (int j = 0; j < V; j++) e += exp((double)z[j] - m);
                    lp = (double)z[target] - m - log(e);
                }
                sum -= lp;
                hits += best == target;
                count++;
            }
    }
    bp_net_reset_state(net);
    bp_net_set_stateful(net, 0, NULL);
    free(x);
    free(out);
    if (st) return st;
    sc->predictions = count;
    sc->loss = sum / (double)count;
    sc->bits_per_char = sc->loss / log(2.0);
    sc->accuracy = (double)hits / (double)count;
    sc->streams = (int)S;
    sc->window = W;
    return CLI_OK;
}

/* ------------------------------------------------------------------------ */
/* eval on a text model                                                      */
/* ------------------------------------------------------------------------ */

/* DATA as token ids of a text model's vocabulary (a character outside it
 * is an error naming line and column). CLI_OK, or CLI_FAIL printed. */
static int read_model_text(cli_text *t, const cli_model_info *mi, const char *data)
{
    char msg[768];
    if (cli_text_read(t, data, mi->vocab.encoding, &mi->vocab, "; the model reads UTF-8 text", msg,
                      sizeof msg))
        return cli_fail(CLI_FAIL, "%s", msg);
    cli_inputs_release();
    return CLI_OK;
}

int cli_eval_text(bp_net *net, const cli_model_info *mi, const char *model, const char *data,
                  int streams, int json)
{
    cli_text t;
    int st = read_model_text(&t, mi, data);
    if (st) return st;
    if (t.n < 2) {
        st = cli_fail(CLI_FAIL, "%s: %s: nothing to predict (a text of at least 2 characters is "
                      "needed)", cli_input_name(data), t.n ? "1 character" : "empty text");
        cli_text_free(&t);
        return st;
    }
    cli_text_score sc;
    st = cli_text_loss(net, mi->out_kind == BP_SOFTMAX, t.ids, t.n, streams > 0 ? streams : mi->streams,
                       &sc);
    size_t chars = t.n;
    cli_text_free(&t);
    if (st) return st;
    if (json) {
        printf("{\"samples\":%ld,\"loss\":%.9g,\"bits_per_char\":%.9g,\"accuracy\":%.9g,"
               "\"task\":\"text\",\"characters\":%zu,\"streams\":%d,\"seq_len\":%d}\n",
               sc.predictions, sc.loss, sc.bits_per_char, sc.accuracy, chars, sc.streams, sc.window);
    } else {
        printf("model          %s (%s)\n", model, bp_net_spec(net));
        printf("data           %s (%zu characters)\n", cli_input_name(data), chars);
        printf("samples        %ld characters predicted (%d streams, windows of %d, carried state)\n",
               sc.predictions, sc.streams, sc.window);
        printf("loss           %.6f (cross-entropy, nats per character)\n", sc.loss);
        printf("bits per char  %.4f\n", sc.bits_per_char);
        printf("accuracy       %.4f (the most likely next character)\n", sc.accuracy);
    }
    if (fflush(stdout) != 0) return cli_fail(CLI_FAIL, "cannot write to stdout");
    return CLI_OK;
}

/* ------------------------------------------------------------------------ */
/* predict on a text model                                                   */
/* ------------------------------------------------------------------------ */

int cli_predict_text(bp_net *net, const cli_model_info *mi, const char *data, int proba, FILE *f)
{
    cli_text t;
    int st = read_model_text(&t, mi, data);
    if (st) return st;
    int T = bp_net_inputs(net), V = bp_net_outputs(net) / T;
    if (t.n < (size_t)T) {
        st = cli_fail(CLI_FAIL, "%s: %zu character%s; the model reads windows of %d (its "
                      "--seq-len), so there is nothing to predict", cli_input_name(data), t.n,
                      t.n == 1 ? "" : "s", T);
        cli_text_free(&t);
        return st;
    }
    size_t windows = t.n / (size_t)T;
    enum { B = 64 }; /* windows per forward pass */
    bp_error err = {0};
    bp_real *x = malloc((size_t)B * (size_t)T * sizeof *x);
    bp_real *out = malloc((size_t)B * (size_t)T * (size_t)V * sizeof *out);
    double *p = malloc((size_t)V * sizeof *p);
    if (!x || !out || !p) st = cli_fail(CLI_FAIL, "out of memory");
    if (!st && bp_net_reserve(net, windows < B ? (int)windows : B, &err) != BP_OK)
        st = cli_fail(CLI_FAIL, "%s", err.message);
    if (!st) {
        fputs("window,step,id,next", f);
        if (proba)
            for (int j = 0; j < V; j++) fprintf(f, ",p%d", j);
        fputc('\n', f);
    }
    for (size_t w0 = 0; !st && w0 < windows; w0 += B) {
        int k = windows - w0 < B ? (int)(windows - w0) : B;
        for (size_t i = 0; i < (size_t)k * (size_t)T; i++) x[i] = (bp_real)t.ids[w0 * (size_t)T + i];
        if (bp_forward(net, x, k, out, &err) != BP_OK) {
            st = cli_fail(CLI_FAIL, "%s", err.message);
            break;
        }
        for (int w = 0; w < k; w++)
            for (int s = 0; s < T; s++) {
                size_t at = (size_t)w * (size_t)T + (size_t)s;
                const bp_real *z = out + at * (size_t)V;
                int best = 0;
                for (int j = 1; j < V; j++)
                    if (z[j] > z[best]) best = j;
                char tok[5] = {0};
                int len = bp_vocab_token_bytes(&mi->vocab, best, tok);
                tok[len > 0 && len <= 4 ? len : 0] = '\0';
                fprintf(f, "%zu,%d,%d,", w0 + (size_t)w, s, (int)x[at]);
                cli_csv_field(f, tok);
                if (proba) {
                    if (mi->out_kind == BP_SOFTMAX) {
                        for (int j = 0; j < V; j++) p[j] = z[j];
                    } else {
                        double m = z[best], sum = 0;
                        for (int j = 0; j < V; j++) sum += p[j] = exp((double)z[j] - m);
                        for (int j = 0; j < V; j++) p[j] /= sum;
                    }
                    for (int j = 0; j < V; j++) {
                        char b[64];
                        cli_fmt_num(b, sizeof b, p[j]);
                        fputc(',', f);
                        fputs(b, f);
                    }
                }
                fputc('\n', f);
            }
    }
    free(x);
    free(out);
    free(p);
    cli_text_free(&t);
    return st;
}

/* ------------------------------------------------------------------------ */
/* generate                                                                  */
/* ------------------------------------------------------------------------ */

/* splitmix64: the seeded generator of the samples. */
static double gen_uniform(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

#define MAX_LENGTH 100000000

int cmd_generate(int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"--help", "-h", 0},       {"--prime", NULL, 1}, {"--length", NULL, 1},
        {"--temperature", NULL, 1}, {"--seed", NULL, 1},  {"--threads", NULL, 1},
        {NULL, NULL, 0},
    };
    cli_parser p = {"generate", argc, argv, 1, 0};
    const char *v, *model = NULL, *prime = NULL;
    int k, r = 0, length = 200, threads = -1;
    double temp = 1.0;
    uint64_t seed = 42;
    while ((k = cli_next(&p, opts, &v)) != CLI_ARG_END) {
        switch (k) {
        case CLI_ARG_ERROR: return CLI_USAGE;
        case CLI_ARG_POSITIONAL:
            if (model) return cli_fail(CLI_USAGE, "generate: unexpected argument '%s' (one MODEL)", v);
            model = v;
            break;
        case 0: fputs(usage_generate, stdout); return CLI_OK;
        case 1: prime = v; break;
        case 2: r = cli_int("--length", v, 0, MAX_LENGTH, &length); break;
        case 3:
            r = cli_double("--temperature", v, -1e300, 1e300, &temp);
            if (!r && !(temp > 0))
                r = cli_fail(CLI_USAGE, "--temperature: %s is not above 0 (1 samples the model's "
                             "distribution, lower is more conservative, higher more random)", v);
            break;
        case 4: r = cli_u64("--seed", v, &seed); break;
        case 5: r = cli_int("--threads", v, 0, 4096, &threads); break;
        default: break;
        }
        if (r) return r;
    }
    if (!model) return cli_fail(CLI_USAGE, "generate: missing MODEL (see 'backprop generate --help')");
    if (prime && !*prime)
        return cli_fail(CLI_USAGE, "--prime: empty (give at least one character, or leave --prime "
                        "out to start from a new line)");
    cli_set_threads(threads);

    bp_error err = {0};
    bp_net *net = NULL, *gen = NULL;
    cli_model_info mi;
    memset(&mi, 0, sizeof mi);
    int32_t *pids = NULL;
    bp_real *z = NULL;
    double *pr = NULL;
    int st = CLI_OK;
    if (bp_net_load(&net, model, &err) != BP_OK) return cli_fail(CLI_FAIL, "%s", err.message);
    if ((st = cli_model_info_get(&mi, net, model))) goto done;
    if (!mi.text) {
        st = cli_fail(CLI_FAIL, "%s is not a text model (task %s); generate samples from models "
                      "trained with 'backprop train TEXT --task text'", model,
                      mi.classify ? "classify" : "regress");
        goto done;
    }
    /* The prime: the given text, else a line break (or the vocabulary's
     * first character when the text had none). */
    size_t np = 0;
    const char *pt = prime ? prime : "\n";
    size_t plen = strlen(pt);
    pids = malloc((plen ? plen : 1) * sizeof *pids);
    if (!pids) {
        st = cli_fail(CLI_FAIL, "out of memory");
        goto done;
    }
    if (!prime && bp_vocab_id(&mi.vocab, '\n') < 0) {
        pids[0] = 0;
        np = 1;
    } else if (bp_text_ids(&mi.vocab, pt, plen, "--prime", pids, &np, &err) != BP_OK) {
        st = cli_fail(CLI_USAGE, "%s (%s knows %d characters)", err.message, model, mi.vocab.size);
        goto done;
    }
    /* The model's network on one step at a time: same spec, input [1]. */
    if (bp_net_create_shaped(&gen, bp_shape_flat(1), bp_net_spec(net), 1, &err) != BP_OK) {
        st = cli_fail(CLI_FAIL, "%s: %s", model, err.message);
        goto done;
    }
    if (bp_net_tensor_count(gen) != bp_net_tensor_count(net)) {
        st = cli_fail(CLI_FAIL, "%s: the one-step network has %d tensors, the model %d", model,
                      bp_net_tensor_count(gen), bp_net_tensor_count(net));
        goto done;
    }
    for (int j = 0; j < bp_net_tensor_count(gen); j++) {
        bp_tensor a, b;
        bp_net_tensor(gen, j, &a);
        bp_net_tensor(net, j, &b);
        if (strcmp(a.name, b.name) || a.count != b.count || a.dtype != b.dtype) {
            st = cli_fail(CLI_FAIL, "%s: tensor %s does not match the one-step network's %s", model,
                          b.name, a.name);
            goto done;
        }
        if (a.dtype == BP_DTYPE_I64) memcpy(a.i64, b.i64, a.count * sizeof *a.i64);
        else memcpy(a.data, b.data, a.count * sizeof *a.data);
    }
    int V = bp_net_outputs(gen);
    if (V != mi.vocab.size) {
        st = cli_fail(CLI_FAIL, "%s: the network gives %d outputs per step, the vocabulary has %d",
                      model, V, mi.vocab.size);
        goto done;
    }
    if (bp_net_set_stateful(gen, 1, &err) != BP_OK || bp_net_reserve(gen, 1, &err) != BP_OK) {
        st = cli_fail(CLI_FAIL, "%s", err.message);
        goto done;
    }
    z = malloc((size_t)V * sizeof *z);
    pr = malloc((size_t)V * sizeof *pr);
    if (!z || !pr) {
        st = cli_fail(CLI_FAIL, "out of memory");
        goto done;
    }
    bp_real x;
    for (size_t i = 0; i < np; i++) {
        x = (bp_real)pids[i];
        if (bp_forward(gen, &x, 1, z, &err) != BP_OK) {
            st = cli_fail(CLI_FAIL, "%s", err.message);
            goto done;
        }
    }
    int softmax_out = mi.out_kind == BP_SOFTMAX;
    for (int c = 0; c < length; c++) {
        /* p_j proportional to exp(log p_j / temperature), in double. */
        double m = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++) {
            double l = softmax_out ? log(fmax((double)z[j], 1e-300)) : (double)z[j];
            pr[j] = l;
            if (l > m) m = l;
        }
        for (int j = 0; j < V; j++) sum += pr[j] = exp((pr[j] - m) / temp);
        double u = gen_uniform(&seed) * sum, acc = 0;
        int pick = V - 1;
        for (int j = 0; j < V; j++) {
            acc += pr[j];
            if (u < acc) {
                pick = j;
                break;
            }
        }
        while (pr[pick] == 0 && pick > 0) pick--; /* rounding at the very end of the sum */
        char b[4];
        int nb = bp_vocab_token_bytes(&mi.vocab, pick, b);
        if (fwrite(b, 1, (size_t)nb, stdout) != (size_t)nb) break;
        if (c + 1 == length) break;
        x = (bp_real)pick;
        if (bp_forward(gen, &x, 1, z, &err) != BP_OK) {
            st = cli_fail(CLI_FAIL, "%s", err.message);
            goto done;
        }
    }
    /* On a terminal the prompt goes on its own line. */
    if (length > 0 && isatty(STDOUT_FILENO)) fputc('\n', stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) st = cli_fail(CLI_FAIL, "cannot write to stdout");
done:
    free(pids);
    free(z);
    free(pr);
    bp_net_free(gen);
    bp_net_free(net);
    cli_model_info_free(&mi);
    return st;
}
