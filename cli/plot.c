/*
 * plot.c - learning curves as a self-contained SVG file (train --plot).
 *
 * One panel for the loss per epoch (training and validation) and, when
 * classifying, a second panel for the accuracy. Each panel has a frame,
 * grid lines at "nice" tick values (1, 2, 5 x 10^k), tick labels, axis
 * titles and a legend; the figure has a title.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int cli_history_add(cli_history *h, double tl, double vl, double ta, double va)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 64;
        double **arrs[4] = {&h->train_loss, &h->val_loss, &h->train_acc, &h->val_acc};
        for (int k = 0; k < 4; k++) {
            double *t = realloc(*arrs[k], (size_t)cap * sizeof(double));
            if (!t) return -1;
            *arrs[k] = t;
        }
        h->cap = cap;
    }
    h->train_loss[h->n] = tl;
    h->val_loss[h->n] = vl;
    h->train_acc[h->n] = ta;
    h->val_acc[h->n] = va;
    h->n++;
    return 0;
}

void cli_history_free(cli_history *h)
{
    free(h->train_loss);
    free(h->val_loss);
    free(h->train_acc);
    free(h->val_acc);
    memset(h, 0, sizeof *h);
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
        }
    }
}

/* A step of 1, 2 or 5 x 10^k giving about `want` intervals over `range`. */
static double nice_step(double range, int want)
{
    double raw = range / want;
    double p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
}

static int decimals(double step)
{
    int d = (int)ceil(-log10(step) - 1e-9);
    return d < 0 ? 0 : d > 8 ? 8 : d;
}

typedef struct axis {
    double lo, hi, step;
} axis;

/* Range of the finite values of up to two series, made "nice". */
static axis value_axis(const double *a, const double *b, int n, int from_zero, double cap)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (isfinite(a[i])) lo = fmin(lo, a[i]), hi = fmax(hi, a[i]);
        if (b && isfinite(b[i])) lo = fmin(lo, b[i]), hi = fmax(hi, b[i]);
    }
    axis ax;
    if (!isfinite(lo)) lo = 0, hi = 1;
    if (from_zero && lo >= 0 && lo < 0.5 * hi) lo = 0;
    if (hi - lo < 1e-12 * fmax(1, fabs(hi))) {
        double d = fabs(hi) > 0 ? 0.05 * fabs(hi) : 0.5;
        lo -= d;
        hi += d;
    } else {
        double pad = 0.04 * (hi - lo);
        if (lo != 0) lo -= pad;
        hi += pad;
    }
    if (cap > 0 && hi > cap) hi = cap;
    ax.step = nice_step(hi - lo, 5);
    ax.lo = floor(lo / ax.step + 1e-9) * ax.step;
    ax.hi = ceil(hi / ax.step - 1e-9) * ax.step;
    if (ax.hi <= ax.lo) ax.hi = ax.lo + ax.step;
    return ax;
}

typedef struct panel {
    double x0, y0, w, h; /* plot area in SVG units */
    axis xa, ya;
} panel;

/* x maps into the plot area less a 10-unit inset, so the first and last
 * epochs' points are not cut by the frame. */
static double px(const panel *p, double x)
{
    return p->x0 + 10 + (x - p->xa.lo) / (p->xa.hi - p->xa.lo) * (p->w - 20);
}
static double py(const panel *p, double y) { return p->y0 + p->h - (y - p->ya.lo) / (p->ya.hi - p->ya.lo) * p->h; }

static void series(FILE *f, const panel *p, const double *v, int n, const char *color, int dashed)
{
    /* Polyline through the finite points; circles on each when few. */
    int started = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        if (!started) {
            fprintf(f, "  <polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", color,
                    dashed ? " stroke-dasharray=\"6 3\"" : "");
            started = 1;
        }
        fprintf(f, "%.1f,%.1f ", px(p, i + 1), py(p, v[i]));
    }
    if (started) fputs("\"/>\n", f);
    if (n <= 60)
        for (int i = 0; i < n; i++)
            if (isfinite(v[i]))
                fprintf(f, "  <circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\" fill=\"%s\"/>\n", px(p, i + 1),
                        py(p, v[i]), color);
}

static int has_finite(const double *v, int n)
{
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) return 1;
    return 0;
}

static void draw_panel(FILE *f, panel *p, const double *train, const double *val, int n,
                       const char *title, const char *ylabel, int from_zero, double cap,
                       int legend_low)
{
    static const char *c_train = "#1f77b4", *c_val = "#ff7f0e";
    int with_val = val && has_finite(val, n);
    p->ya = value_axis(train, with_val ? val : NULL, n, from_zero, cap);
    /* x: epochs 1..n with integer ticks. */
    p->xa.lo = 1;
    p->xa.hi = n > 1 ? n : 2;
    p->xa.step = n > 1 ? nice_step(p->xa.hi - p->xa.lo, 8) : 1;
    if (p->xa.step < 1) p->xa.step = 1;

    fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"15\" "
            "font-weight=\"bold\">", p->x0 + p->w / 2, p->y0 - 12);
    xml_text(f, title);
    fputs("</text>\n", f);
    fprintf(f, "  <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fbfbfb\" "
            "stroke=\"none\"/>\n", p->x0, p->y0, p->w, p->h);
    /* grid and y tick labels */
    int yd = decimals(p->ya.step);
    for (double y = p->ya.lo; y <= p->ya.hi + 1e-9 * p->ya.step; y += p->ya.step) {
        double yy = py(p, y);
        fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n",
                p->x0, yy, p->x0 + p->w, yy);
        fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
                p->x0 - 5, yy, p->x0, yy);
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\">%.*f</text>\n",
                p->x0 - 8, yy + 4, yd, fabs(y) < 1e-12 * p->ya.step ? 0.0 : y);
    }
    double first = ceil(p->xa.lo / p->xa.step) * p->xa.step;
    if (first < p->xa.lo) first = p->xa.lo;
    for (double x = first; x <= p->xa.hi + 1e-9; x += p->xa.step) {
        if (x < 1 && p->xa.step > 1) continue;
        double xx = px(p, x);
        fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eeeeee\"/>\n",
                xx, p->y0, xx, p->y0 + p->h);
        fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", xx,
                p->y0 + p->h, xx, p->y0 + p->h + 5);
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%.0f</text>\n",
                xx, p->y0 + p->h + 19, x);
    }
    /* frame */
    fprintf(f, "  <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#333\"/>\n", p->x0, p->y0, p->w, p->h);
    /* axis titles */
    fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">epoch</text>\n",
            p->x0 + p->w / 2, p->y0 + p->h + 40);
    fprintf(f, "  <text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\" "
            "font-size=\"13\">", p->x0 - 52, p->y0 + p->h / 2);
    xml_text(f, ylabel);
    fputs("</text>\n", f);
    /* curves, clipped to the plot area */
    series(f, p, train, n, c_train, 0);
    if (with_val) series(f, p, val, n, c_val, 1);
    /* legend */
    double lw = 118, lh = with_val ? 46 : 26;
    double lx = p->x0 + p->w - lw - 8;
    double ly = legend_low ? p->y0 + p->h - lh - 8 : p->y0 + 8;
    fprintf(f, "  <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" "
            "fill-opacity=\"0.9\" stroke=\"#999\" rx=\"3\"/>\n", lx, ly, lw, lh);
    const char *names[2] = {"training", "validation"};
    const char *colors[2] = {c_train, c_val};
    for (int k = 0; k < (with_val ? 2 : 1); k++) {
        double yy = ly + 16 + 20 * k;
        fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"2\"%s/>\n", lx + 8, yy - 4, lx + 34, yy - 4, colors[k],
                k ? " stroke-dasharray=\"6 3\"" : "");
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n", lx + 42, yy,
                names[k]);
    }
}

void cli_plot_svg(FILE *f, const cli_history *h, int classify, const char *title,
                  const char *loss_name)
{
    int panels = classify ? 2 : 1;
    double pw = 420, ph = 300, ml = 78, mr = 24, mt = 78, mb = 62;
    double W = panels * (ml + pw + mr), H = mt + ph + mb;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
            W, H, W, H);
    fprintf(f, "  <rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "  <text x=\"%.1f\" y=\"26\" text-anchor=\"middle\" font-size=\"16\">", W / 2);
    xml_text(f, title);
    fputs("</text>\n", f);
    char ylabel[96];
    snprintf(ylabel, sizeof ylabel, "loss (%s)", loss_name);
    panel p = {ml, mt, pw, ph, {0, 0, 0}, {0, 0, 0}};
    draw_panel(f, &p, h->train_loss, h->val_loss, h->n, "Loss per epoch", ylabel, 1, 0, 0);
    if (classify) {
        panel q = {ml + pw + mr + ml, mt, pw, ph, {0, 0, 0}, {0, 0, 0}};
        draw_panel(f, &q, h->train_acc, h->val_acc, h->n, "Accuracy per epoch", "accuracy", 0, 1, 1);
    }
    fputs("</svg>\n", f);
}
