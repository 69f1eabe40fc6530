/* A band of rows around a reference surface, gathered, smoothed, summed and its axial edges
   (sdk.retina.layers._Band), compiled.

   The same float arithmetic as the numpy reference (_Band._numpy_fill), so that both give identical
   arrays (tests/test_retina_kernels.py):
   - gathered[a][b][j] = float32(data[b][clip(start[a][b] + j, 0, depth - 1)][a]);
   - a Gaussian along A-scans, then B-scans, then rows, each pass as scipy.ndimage.correlate1d with
     symmetric weights and mode "reflect": accumulated in double as
     w[c] * x[i] + sum over m = c .. 1 of (x[i - m] + x[i + m]) * w[c - m], rounded to float32;
   - cumulative sums along rows in float32, zero before the band and clamped after it;
   - edge[j] = mean of rows j .. j+k-1 minus mean of rows j-k .. j-1 (clipped to the band), in double,
     rounded to float32.

   One call: fill(data, start, weights_a, weights_b, weights_r, k, pad, lo, hi, cumulative, edge) for the
   A-scans [lo, hi): data C-contiguous float32 (n_b, depth, n_a), start int64 (n_a, n_b), weights float64
   of odd length (a kernel of length 1 is a pass that changes nothing), cumulative float32
   (n_a, n_b, rows + 2 pad + 1), edge float32 (n_a, n_b, rows). It runs without the GIL, so that
   blocks of A-scans run in parallel threads. Only the buffer protocol is used (no numpy headers). */

#include "buffers.h" /* Python.h and the checked array arguments */
#include <stdint.h>
#include <stdlib.h>

/* scipy.ndimage's "reflect" extension (d c b a | a b c d | d c b a), periodic beyond one length */
static Py_ssize_t reflect(Py_ssize_t i, Py_ssize_t n) {
    const Py_ssize_t period = 2 * n;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - 1 - i;
}

typedef struct {
    const float *data;
    const int64_t *start;
    const double *w[3]; /* centre of each kernel: w[axis][-c .. c] */
    Py_ssize_t c[3];
    Py_ssize_t n_b, depth, n_a, rows, k, pad;
    float *cumulative, *edge;
} Band;

/* gathered[a][b][j] for the A-scans [a0, a1) (reflected into the volume) into out[a - a0][j] */
static void gather(const Band *band, Py_ssize_t b, Py_ssize_t a0, Py_ssize_t a1, float *out) {
    for (Py_ssize_t t = a0; t < a1; t++) {
        const Py_ssize_t a = reflect(t, band->n_a);
        int64_t first = band->start[a * band->n_b + b]; /* kept near the volume: first + j cannot overflow */
        first = first < -band->rows ? -band->rows : (first > band->depth ? band->depth : first);
        const float *column = band->data + b * band->depth * band->n_a + a;
        float *line = out + (t - a0) * band->rows;
        for (Py_ssize_t j = 0; j < band->rows; j++) {
            int64_t z = first + j;
            z = z < 0 ? 0 : (z >= band->depth ? band->depth - 1 : z);
            line[j] = column[z * band->n_a];
        }
    }
}

/* scipy.ndimage.correlate1d of one line with symmetric weights w[-c .. c] (w points at the centre):
   sums[j] for j in [0, n), from x[-c .. n + c) (the line already extended by its reflections) */
static inline void correlate_line(const float *x, Py_ssize_t n, const double *w, Py_ssize_t c, double *sums) {
    for (Py_ssize_t j = 0; j < n; j++) sums[j] = (double)x[j] * w[0];
    for (Py_ssize_t m = c; m >= 1; m--)
        for (Py_ssize_t j = 0; j < n; j++) sums[j] += ((double)x[j - m] + (double)x[j + m]) * w[-m];
}

/* On x86-64 Linux the band is built twice, for AVX2 and for any x86-64, and the loader picks the one
   the CPU runs (gcc's and clang's function multiversioning, resolved once at load): the same
   operations in the same order (no fused multiply-add: -ffp-contract=off), so the same arrays, 1.3-1.6x
   faster with 4-wide double vectors. Elsewhere (a Jetson's ARM cores) one build. */
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* the A-scans [lo, hi): smooth (hi - lo, n_b, rows) and the band's arrays; lines is room for
   (hi - lo + 2 c_a) rows of gathered values, sums for rows doubles, line for rows + 2 c_r floats */
VECTOR_CLONES static void fill(const Band *band, Py_ssize_t lo, Py_ssize_t hi, float *smooth, float *lines, double *sums,
                 float *line) {
    const Py_ssize_t n_b = band->n_b, rows = band->rows, k = band->k, pad = band->pad;
    const Py_ssize_t ca = band->c[0], cb = band->c[1], cr = band->c[2];
    const double *wa = band->w[0], *wb = band->w[1], *wr = band->w[2];
    const Py_ssize_t n = hi - lo, length = rows + 2 * pad + 1;
    /* along A-scans, B-scan by B-scan: the gathered lines of [lo - c_a, hi + c_a) */
    for (Py_ssize_t b = 0; b < n_b; b++) {
        gather(band, b, lo - ca, hi + ca, lines);
        for (Py_ssize_t i = 0; i < n; i++) {
            const float *x = lines + (i + ca) * rows; /* x[m * rows]: the line m A-scans on */
            float *out = smooth + (i * n_b + b) * rows;
            for (Py_ssize_t j = 0; j < rows; j++) sums[j] = (double)x[j] * wa[0];
            for (Py_ssize_t m = ca; m >= 1; m--) {
                const float *before = x - m * rows, *after = x + m * rows;
                for (Py_ssize_t j = 0; j < rows; j++) sums[j] += ((double)before[j] + (double)after[j]) * wa[-m];
            }
            for (Py_ssize_t j = 0; j < rows; j++) out[j] = (float)sums[j];
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        float *slab = smooth + i * n_b * rows;
        float *cumulative = band->cumulative + (lo + i) * n_b * length;
        float *edge = band->edge + (lo + i) * n_b * rows;
        /* along B-scans (in place: each B-scan's new line is kept in the cumulative array first) */
        for (Py_ssize_t b = 0; b < n_b; b++) {
            const float *x = slab + b * rows;
            for (Py_ssize_t j = 0; j < rows; j++) sums[j] = (double)x[j] * wb[0];
            for (Py_ssize_t m = cb; m >= 1; m--) {
                const float *before = slab + reflect(b - m, n_b) * rows, *after = slab + reflect(b + m, n_b) * rows;
                for (Py_ssize_t j = 0; j < rows; j++) sums[j] += ((double)before[j] + (double)after[j]) * wb[-m];
            }
            float *kept = cumulative + b * length;
            for (Py_ssize_t j = 0; j < rows; j++) kept[j] = (float)sums[j];
        }
        for (Py_ssize_t b = 0; b < n_b; b++) {
            float *c = cumulative + b * length;
            /* along rows, on the line extended by its reflections: x[-c_r .. rows + c_r) */
            float *x = line + cr;
            for (Py_ssize_t j = 0; j < rows; j++) x[j] = c[j];
            for (Py_ssize_t j = 1; j <= cr; j++) {
                x[-j] = c[reflect(-j, rows)];
                x[rows - 1 + j] = c[reflect(rows - 1 + j, rows)];
            }
            correlate_line(x, rows, wr, cr, sums);
            /* c[pad + t] = sum of the first t smoothed rows, t = 0 .. rows, clamped at both ends */
            for (Py_ssize_t t = 0; t <= pad; t++) c[t] = 0.0f;
            float running = 0.0f;
            for (Py_ssize_t j = 0; j < rows; j++) {
                running += (float)sums[j];
                c[pad + 1 + j] = running;
            }
            for (Py_ssize_t t = pad + 1 + rows; t < length; t++) c[t] = running;
            float *e = edge + b * rows;
            const float *s = c + pad; /* s[t]: the sum of the first t smoothed rows */
            for (Py_ssize_t j = 0; j < rows; j++) {
                if (j == k && rows - k > k) { /* whole windows both sides: one divisor, vector units */
                    const double n = (double)k;
                    for (; j < rows - k; j++)
                        e[j] = (float)((double)(s[j + k] - s[j]) / n - (double)(s[j] - s[j - k]) / n);
                }
                const Py_ssize_t n_below = (j + k < rows ? j + k : rows) - j;
                const Py_ssize_t n_above = j - (j - k > 0 ? j - k : 0);
                e[j] = (float)((double)(s[j + k] - s[j]) / (double)(n_below > 1 ? n_below : 1) -
                               (double)(s[j] - s[j - k]) / (double)(n_above > 1 ? n_above : 1));
            }
        }
    }
}

static PyObject *band_fill(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objects[7];
    Py_ssize_t k, pad, lo, hi;
    if (!PyArg_ParseTuple(args, "OOOOOnnnnOO", &objects[0], &objects[1], &objects[2], &objects[3], &objects[4], &k,
                          &pad, &lo, &hi, &objects[5], &objects[6]))
        return NULL;
    static const BufferSpec specs[7] = {{"data", "f", 3, 0, 0},      {"start", "q", 2, 0, 0},
                                        {"weights_a", "d", 1, 0, 0}, {"weights_b", "d", 1, 0, 0},
                                        {"weights_r", "d", 1, 0, 0}, {"cumulative", "f", 3, 1, 0},
                                        {"edge", "f", 3, 1, 0}};
    Py_buffer views[7];
    if (take_buffers(objects, specs, 7, views) < 0) return NULL;
    PyObject *result = NULL;
    float *smooth = NULL, *lines = NULL, *line = NULL;
    double *sums = NULL;
    Band band = {.data = views[0].buf, .start = views[1].buf, .cumulative = views[5].buf, .edge = views[6].buf};
    band.n_b = views[0].shape[0];
    band.depth = views[0].shape[1];
    band.n_a = views[0].shape[2];
    band.rows = views[6].shape[2];
    band.k = k;
    band.pad = pad;
    for (int axis = 0; axis < 3; axis++) {
        const Py_ssize_t size = views[2 + axis].shape[0];
        if (size % 2 == 0) {
            PyErr_Format(PyExc_ValueError, "%s must have an odd length, not %zd", specs[2 + axis].name, size);
            goto done;
        }
        band.c[axis] = size / 2;
        band.w[axis] = (const double *)views[2 + axis].buf + size / 2;
    }
    const Py_ssize_t n_a = band.n_a, n_b = band.n_b, rows = band.rows;
    if (n_a == 0 || n_b == 0 || band.depth == 0 || rows == 0 || views[1].shape[0] != n_a ||
        views[1].shape[1] != n_b || views[6].shape[0] != n_a || views[6].shape[1] != n_b ||
        views[5].shape[0] != n_a || views[5].shape[1] != n_b || views[5].shape[2] != rows + 2 * pad + 1) {
        PyErr_SetString(PyExc_ValueError, "start, cumulative and edge must match data's A-scans and B-scans");
        goto done;
    }
    if (k < 1 || pad < k || lo < 0 || hi > n_a || lo >= hi) {
        PyErr_Format(PyExc_ValueError, "need 1 <= k <= pad and 0 <= lo < hi <= n_ascans (k %zd, pad %zd, %zd..%zd)", k,
                     pad, lo, hi);
        goto done;
    }
    smooth = malloc(sizeof(float) * (size_t)((hi - lo) * n_b * rows));
    lines = malloc(sizeof(float) * (size_t)((hi - lo + 2 * band.c[0]) * rows));
    line = malloc(sizeof(float) * (size_t)(rows + 2 * band.c[2]));
    sums = malloc(sizeof(double) * (size_t)rows);
    if (smooth == NULL || lines == NULL || line == NULL || sums == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    fill(&band, lo, hi, smooth, lines, sums, line);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    free(smooth);
    free(lines);
    free(line);
    free(sums);
    release_buffers(views, 7);
    return result;
}

/* The coarse ILM's scores of layers._coarse_surfaces, for the coarse A-scans [lo, hi): data float32
   (n_b, dz, dx); below, above, step and cost float32 (dx, n_b, dz). Per A-scan, c is data's column
   smoothed along depth (correlate_line, reflected ends, rounded to float32); with tissue[z] = c[z] >
   threshold (in float32) and count(z0, z1) the tissue samples in [z0, z1): below[z] =
   count(z, min(z + n_below, dz)) / n_below, above[z] = (count(max(z - n_above, 0), z) + max(n_above - z, 0))
   / n_above, step[z] = (c[z] - c[z - 1]) / scale (0 at z = 0), cost[z] = -(below - above + 0.5 *
   clip(step, -1, 1)), and outside_cost at z = 0 (no edge without a sample above it); all in float32, as numpy does them. */
static void coarse_scores(const float *data, Py_ssize_t n_b, Py_ssize_t dz, Py_ssize_t dx, const double *w,
                          Py_ssize_t c, float threshold, float scale, Py_ssize_t n_below, Py_ssize_t n_above,
                          float outside_cost, Py_ssize_t lo, Py_ssize_t hi, float *below, float *above, float *step,
                          float *cost, float *line, double *sums, float *smooth, float *count) {
    for (Py_ssize_t b = 0; b < n_b; b++) /* B-scan by B-scan: its slab of data stays in cache */
        for (Py_ssize_t a = lo; a < hi; a++) {
            const float *column = data + b * dz * dx + a;
            for (Py_ssize_t j = 0; j < dz; j++) line[c + j] = column[j * dx];
            for (Py_ssize_t j = 1; j <= c; j++) {
                line[c - j] = column[reflect(-j, dz) * dx];
                line[c + dz - 1 + j] = column[reflect(dz - 1 + j, dz) * dx];
            }
            correlate_line(line + c, dz, w, c, sums);
            for (Py_ssize_t z = 0; z < dz; z++) smooth[z] = (float)sums[z];
            float tissue = 0.0f; /* count[z]: the tissue samples among the first z */
            count[0] = 0.0f;
            for (Py_ssize_t z = 0; z < dz; z++) {
                tissue += smooth[z] > threshold ? 1.0f : 0.0f;
                count[z + 1] = tissue;
            }
            const Py_ssize_t at = (a * n_b + b) * dz;
            float *lower = below + at, *upper = above + at, *edge = step + at, *score = cost + at;
            /* split where the windows reach the ends: no bounds to test inside the loops */
            const Py_ssize_t full_below = dz - n_below > 0 ? dz - n_below : 0, full_above = n_above < dz ? n_above : dz;
            for (Py_ssize_t z = 0; z < full_below; z++) lower[z] = (count[z + n_below] - count[z]) / (float)n_below;
            for (Py_ssize_t z = full_below; z < dz; z++) lower[z] = (count[dz] - count[z]) / (float)n_below;
            for (Py_ssize_t z = 0; z < full_above; z++)
                upper[z] = (count[z] - count[0] + (float)(n_above - z)) / (float)n_above;
            for (Py_ssize_t z = full_above; z < dz; z++) upper[z] = (count[z] - count[z - n_above] + 0.0f) / (float)n_above;
            edge[0] = 0.0f;
            for (Py_ssize_t z = 1; z < dz; z++) edge[z] = (smooth[z] - smooth[z - 1]) / scale;
            for (Py_ssize_t z = 0; z < dz; z++) { /* np.clip of a finite step */
                const float at_most_one = edge[z] < 1.0f ? edge[z] : 1.0f;
                const float clipped = at_most_one > -1.0f ? at_most_one : -1.0f;
                score[z] = -((lower[z] - upper[z]) + 0.5f * clipped);
            }
            score[0] = outside_cost; /* no edge without a sample above it */
        }
}

static PyObject *band_coarse_scores(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objects[6];
    double threshold, scale, outside_cost;
    Py_ssize_t n_below, n_above, lo, hi;
    if (!PyArg_ParseTuple(args, "OOddnndnnOOOO", &objects[0], &objects[1], &threshold, &scale, &n_below, &n_above,
                          &outside_cost, &lo, &hi, &objects[2], &objects[3], &objects[4], &objects[5]))
        return NULL;
    static const BufferSpec specs[6] = {{"data", "f", 3, 0, 0},  {"weights", "d", 1, 0, 0}, {"below", "f", 3, 1, 0},
                                        {"above", "f", 3, 1, 0}, {"step", "f", 3, 1, 0},    {"cost", "f", 3, 1, 0}};
    Py_buffer views[6];
    if (take_buffers(objects, specs, 6, views) < 0) return NULL;
    PyObject *result = NULL;
    float *line = NULL, *smooth = NULL, *count = NULL;
    double *sums = NULL;
    const Py_ssize_t n_b = views[0].shape[0], dz = views[0].shape[1], dx = views[0].shape[2];
    const Py_ssize_t size = views[1].shape[0];
    for (int i = 2; i < 6; i++)
        if (views[i].shape[0] != dx || views[i].shape[1] != n_b || views[i].shape[2] != dz) {
            PyErr_Format(PyExc_ValueError, "%s must have shape (n_ascans, n_bscans, depth) of data", specs[i].name);
            goto done;
        }
    if (size % 2 == 0 || n_below < 1 || n_above < 1 || lo < 0 || hi > dx || lo > hi || dz == 0 ||
        !(scale > 0.0)) {
        PyErr_Format(PyExc_ValueError, "need odd weights, n_below, n_above >= 1, scale > 0 and 0 <= lo <= hi <= "
                     "n_ascans (weights %zd, %zd, %zd, %zd..%zd)", size, n_below, n_above, lo, hi);
        goto done;
    }
    const Py_ssize_t c = size / 2;
    line = malloc(sizeof(float) * (size_t)(dz + 2 * c));
    smooth = malloc(sizeof(float) * (size_t)dz);
    count = malloc(sizeof(float) * (size_t)(dz + 1));
    sums = malloc(sizeof(double) * (size_t)dz);
    if (line == NULL || smooth == NULL || count == NULL || sums == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    coarse_scores(views[0].buf, n_b, dz, dx, (const double *)views[1].buf + c, c, (float)threshold, (float)scale,
                  n_below, n_above, (float)outside_cost, lo, hi, views[2].buf, views[3].buf, views[4].buf,
                  views[5].buf, line, sums, smooth, count);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    free(line);
    free(smooth);
    free(count);
    free(sums);
    release_buffers(views, 6);
    return result;
}

/* layers._Band.fall_onto_dark for the A-scans [lo, hi) of the B-scans traced[0 .. n_t): out[a][t][j - r0]
   = -(rise + (mean - background)) at rows j in [r0, r1), where rise is edge[a][b][j] and mean the sum of
   the length rows from j down (cumulative[a][b][pad + j + length] - cumulative[a][b][pad + j]) over
   their count, min(j + length, rows) - j; every step in float32, in numpy's order. */
static PyObject *band_fall_onto_dark(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objects[4];
    Py_ssize_t pad, r0, r1, length, lo, hi;
    double background;
    if (!PyArg_ParseTuple(args, "OOOnnnndnnO", &objects[0], &objects[1], &objects[2], &pad, &r0, &r1, &length,
                          &background, &lo, &hi, &objects[3]))
        return NULL;
    static const BufferSpec specs[4] = {
        {"cumulative", "f", 3, 0, 0}, {"edge", "f", 3, 0, 0}, {"traced", "q", 1, 0, 0}, {"out", "f", 3, 1, 0}};
    Py_buffer views[4];
    if (take_buffers(objects, specs, 4, views) < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n_a = views[1].shape[0], n_b = views[1].shape[1], rows = views[1].shape[2];
    const Py_ssize_t n_t = views[2].shape[0], width = views[0].shape[2];
    const int64_t *traced = views[2].buf;
    if (views[0].shape[0] != n_a || views[0].shape[1] != n_b || width != rows + 2 * pad + 1 ||
        views[3].shape[0] != n_a || views[3].shape[1] != n_t || views[3].shape[2] != r1 - r0) {
        PyErr_SetString(PyExc_ValueError, "cumulative, edge and out must be the band's (n_ascans, n_bscans, ...) "
                                          "arrays and out (n_ascans, n_traced, r1 - r0)");
        goto done;
    }
    if (length < 1 || length > pad || r0 < 0 || r1 > rows || r0 > r1 || lo < 0 || hi > n_a || lo > hi) {
        PyErr_Format(PyExc_ValueError, "need 1 <= length <= pad, 0 <= r0 <= r1 <= rows and 0 <= lo <= hi <= "
                     "n_ascans (length %zd, rows %zd..%zd, A-scans %zd..%zd)", length, r0, r1, lo, hi);
        goto done;
    }
    for (Py_ssize_t t = 0; t < n_t; t++)
        if (traced[t] < 0 || traced[t] >= n_b) {
            PyErr_Format(PyExc_ValueError, "traced B-scan %lld is outside 0..%zd", (long long)traced[t], n_b - 1);
            goto done;
        }
    const float *cumulative = views[0].buf, *edge = views[1].buf;
    float *out = views[3].buf;
    const float level = (float)background;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t a = lo; a < hi; a++)
        for (Py_ssize_t t = 0; t < n_t; t++) {
            const Py_ssize_t b = traced[t];
            const float *c = cumulative + (a * n_b + b) * width + pad, *e = edge + (a * n_b + b) * rows;
            float *o = out + (a * n_t + t) * (r1 - r0) - r0;
            for (Py_ssize_t j = r0; j < r1; j++) {
                const Py_ssize_t end = j + length < rows ? j + length : rows; /* the rows summed end here */
                float value = (c[j + length] - c[j]) / (float)(end - j); /* cumulative: constant past the band */
                value -= level;
                value += e[j];
                o[j] = -value;
            }
        }
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    release_buffers(views, 4);
    return result;
}

/* The first z in [from + first, from + last] inside 0 .. n - 1 where sign * values[z] is largest (the
   first of equals); 0 where no z of the window is inside */
static Py_ssize_t window_argmax(const float *values, Py_ssize_t n, Py_ssize_t from, Py_ssize_t first, Py_ssize_t last,
                                float sign) {
    Py_ssize_t lo = from + first, hi = from + last, best = -1;
    lo = lo < 0 ? 0 : lo;
    hi = hi > n - 1 ? n - 1 : hi;
    for (Py_ssize_t z = lo; z <= hi; z++)
        if (best < 0 || sign * values[z] > sign * values[best]) best = z;
    return best < 0 ? 0 : best;
}

/* layers._coarse_surfaces' layers below the coarse ILM for the coarse A-scans [lo, hi): step float32
   (dx, n_b, dz), ilm int64 (dx, n_b); windows are offsets in samples, [first, last]: the photoreceptors'
   rise isos the largest step in the isos window below the ILM, the RPE/BM band's peak the largest level
   (the step's float32 running sum from z = 0) in the peak window below isos, Bruch's membrane bm the
   largest fall (-step) in the bm window below that peak; isos and bm int64 (dx, n_b). */
static PyObject *band_coarse_layers(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objects[4];
    Py_ssize_t windows[6], lo, hi;
    if (!PyArg_ParseTuple(args, "OO(nn)(nn)(nn)nnOO", &objects[0], &objects[1], &windows[0], &windows[1],
                          &windows[2], &windows[3], &windows[4], &windows[5], &lo, &hi, &objects[2], &objects[3]))
        return NULL;
    static const BufferSpec specs[4] = {
        {"step", "f", 3, 0, 0}, {"ilm", "q", 2, 0, 0}, {"isos", "q", 2, 1, 0}, {"bm", "q", 2, 1, 0}};
    Py_buffer views[4];
    if (take_buffers(objects, specs, 4, views) < 0) return NULL;
    PyObject *result = NULL;
    float *level = NULL;
    const Py_ssize_t dx = views[0].shape[0], n_b = views[0].shape[1], dz = views[0].shape[2];
    for (int i = 1; i < 4; i++)
        if (views[i].shape[0] != dx || views[i].shape[1] != n_b) {
            PyErr_Format(PyExc_ValueError, "%s must have shape (n_ascans, n_bscans) of step", specs[i].name);
            goto done;
        }
    if (dz == 0 || lo < 0 || hi > dx || lo > hi) {
        PyErr_Format(PyExc_ValueError, "need a depth and 0 <= lo <= hi <= n_ascans (%zd..%zd)", lo, hi);
        goto done;
    }
    level = malloc(sizeof(float) * (size_t)dz);
    if (level == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const float *step = views[0].buf;
    const int64_t *ilm = views[1].buf;
    int64_t *isos = views[2].buf, *bm = views[3].buf;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t a = lo; a < hi; a++)
        for (Py_ssize_t b = 0; b < n_b; b++) {
            const Py_ssize_t at = a * n_b + b;
            const float *s = step + at * dz;
            float running = 0.0f;
            for (Py_ssize_t z = 0; z < dz; z++) level[z] = running += s[z];
            const Py_ssize_t rise = window_argmax(s, dz, ilm[at], windows[0], windows[1], 1.0f);
            const Py_ssize_t peak = window_argmax(level, dz, rise, windows[2], windows[3], 1.0f);
            isos[at] = rise;
            bm[at] = window_argmax(s, dz, peak, windows[4], windows[5], -1.0f);
        }
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    free(level);
    release_buffers(views, 4);
    return result;
}

static PyMethodDef methods[] = {
    {"fill", band_fill, METH_VARARGS,
     "fill(data, start, weights_a, weights_b, weights_r, k, pad, lo, hi, cumulative, edge): the band's "
     "cumulative sums and edges of the A-scans [lo, hi)."},
    {"fall_onto_dark", band_fall_onto_dark, METH_VARARGS,
     "fall_onto_dark(cumulative, edge, traced, pad, r0, r1, length, background, lo, hi, out): the ONL score "
     "of layers._Band.fall_onto_dark for the A-scans [lo, hi)."},
    {"coarse_layers", band_coarse_layers, METH_VARARGS,
     "coarse_layers(step, ilm, isos_window, peak_window, bm_window, lo, hi, isos, bm): the coarse photoreceptors' "
     "rise and Bruch's membrane below the coarse ILM of the coarse A-scans [lo, hi)."},
    {"coarse_scores", band_coarse_scores, METH_VARARGS,
     "coarse_scores(data, weights, threshold, scale, n_below, n_above, outside_cost, lo, hi, below, above, step, "
     "cost): the coarse ILM's scores of the coarse A-scans [lo, hi)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_band", "Compiled band of rows around a surface.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__band(void) { return PyModule_Create(&module); }
