/* Minimum-cost boundary paths (sdk.retina.paths.best_path and band_path), compiled.

   The same dynamic programme as the numpy reference in sdk/retina/paths.py, with the same float32
   arithmetic and the same ties, so that both give identical paths (tests/test_retina_kernels.py):
   acc[a][b][o] = cost[a][b][o] + min over |d| <= m of (acc[a-1][b][o+d] + penalty[|d|]), offsets
   outside 0..n_o-1 unreachable. Back along the path, the previous offset is the first minimum over
   o-m .. o+m (the largest step from below). The search runs on finite costs only (numpy's NaN rules
   would stop the loops from running on vector units, and a window of infinite costs would step
   outside the band; the reference handles such costs).

   Two calls, both checking their buffers and running without the GIL (only the buffer protocol is
   used, no numpy headers):
   - best_path(cost, max_step, step_penalty, out): cost a C-contiguous float32 (n_a, n_b, n_o), out a
     C-contiguous int64 (n_a, n_b);
   - band_path(score, scale, low, high, outside_cost, max_step, step_penalty, path, refined):
     numpy_band_path's search without its cost array: the cost -(score / scale) inside the rows
     [low, high] and outside_cost elsewhere, made as the search reads it from score (float32, any
     strides, (n_a, n_b, n_o)), and the parabola's sub-pixel offset at each chosen one; low, high and
     refined float64 and path int64, C-contiguous (n_a, n_b). It returns False where a cost is not
     finite (path and refined are then not written). */

#include "buffers.h" /* Python.h and the checked array arguments */
#include <math.h> /* INFINITY, isfinite, isnan */
#include <stdint.h>
#include <stdlib.h>
#include <string.h> /* memcpy */

/* np.argmin of values[0..n): the first minimum (no NaN here) */
static Py_ssize_t first_min(const float *values, Py_ssize_t n) {
    Py_ssize_t best = 0;
    for (Py_ssize_t i = 1; i < n; i++)
        if (values[i] < values[best]) best = i;
    return best;
}

/* acc holds n_a slabs of n_b rows of width = n_o + 2m floats, the m floats at each end +inf, as the
   numpy reference's, and comes in holding the costs (acc[a][b][m + o] = cost[a][b][o]), which the
   search replaces by the least path costs; the loops over offsets are contiguous and branch-free, so
   the compiler runs them on vector units. reach is one row of n_o floats, window 2m + 1 floats. */
static void solve(float *acc, float *reach, float *window, int64_t *path, Py_ssize_t n_a, Py_ssize_t n_b,
                  Py_ssize_t n_o, Py_ssize_t m, const float *penalty) {
    const Py_ssize_t width = n_o + 2 * m, slab = n_b * width;
    for (Py_ssize_t a = 1; a < n_a; a++) {
        for (Py_ssize_t b = 0; b < n_b; b++) {
            const float *p = acc + (a - 1) * slab + b * width + m; /* p[-m .. n_o + m) readable */
            float *next = acc + a * slab + b * width + m;          /* the costs of A-scan a, then its sums */
            for (Py_ssize_t o = 0; o < n_o; o++) reach[o] = p[o];
            for (Py_ssize_t d = 1; d <= m; d++) {
                const float step = penalty[d];
                for (Py_ssize_t o = 0; o < n_o; o++) {
                    float pair = p[o + d] < p[o - d] ? p[o + d] : p[o - d];
                    pair += step;
                    reach[o] = pair < reach[o] ? pair : reach[o];
                }
            }
            for (Py_ssize_t o = 0; o < n_o; o++) next[o] = reach[o] + next[o];
        }
    }
    for (Py_ssize_t b = 0; b < n_b; b++) path[(n_a - 1) * n_b + b] = first_min(acc + (n_a - 1) * slab + b * width + m, n_o);
    for (Py_ssize_t a = n_a - 1; a > 0; a--) { /* A-scan by A-scan, as acc lies in memory */
        for (Py_ssize_t b = 0; b < n_b; b++) {
            const float *p = acc + (a - 1) * slab + b * width + m;
            const Py_ssize_t o = path[a * n_b + b];
            for (Py_ssize_t k = 0; k <= 2 * m; k++) /* previous offsets o-m .. o+m */
                window[k] = p[o - m + k] + penalty[k < m ? m - k : k - m];
            path[(a - 1) * n_b + b] = o - m + first_min(window, 2 * m + 1);
        }
    }
}

/* The search's memory: acc (n_a, n_b, n_o + 2m) all +inf, to be filled with costs, and its rows. */
typedef struct {
    float *acc, *reach, *window, *penalty;
} Work;

static void work_free(Work *work) {
    free(work->acc);
    free(work->reach);
    free(work->window);
    free(work->penalty);
}

static int work_alloc(Work *work, Py_ssize_t n_a, Py_ssize_t n_b, Py_ssize_t n_o, Py_ssize_t m, double step_penalty) {
    if (m < 0) {
        PyErr_Format(PyExc_ValueError, "max_step must be >= 0, not %zd", m);
        return -1;
    }
    if (n_a == 0 || n_b == 0 || n_o == 0) {
        PyErr_SetString(PyExc_ValueError, "cost must have no empty axis");
        return -1;
    }
    const size_t n = (size_t)(n_a * n_b * (n_o + 2 * m));
    work->acc = malloc(sizeof(float) * n);
    work->reach = malloc(sizeof(float) * (size_t)n_o);
    work->window = malloc(sizeof(float) * (size_t)(2 * m + 1));
    work->penalty = malloc(sizeof(float) * (size_t)(m + 1));
    if (work->acc == NULL || work->reach == NULL || work->window == NULL || work->penalty == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < n; i++) work->acc[i] = INFINITY;
    for (Py_ssize_t d = 0; d <= m; d++) work->penalty[d] = (float)(step_penalty * (double)d); /* numpy's float32(p * d) */
    return 0;
}

static PyObject *best_path(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objects[2];
    Py_ssize_t m;
    double step_penalty;
    if (!PyArg_ParseTuple(args, "OndO", &objects[0], &m, &step_penalty, &objects[1])) return NULL;
    static const BufferSpec specs[2] = {{"cost", "f", 3, 0, 0}, {"out", "q", 2, 1, 0}};
    Py_buffer views[2];
    if (take_buffers(objects, specs, 2, views) < 0) return NULL;
    const Py_buffer cost = views[0], out = views[1];
    const Py_ssize_t n_a = cost.shape[0], n_b = cost.shape[1], n_o = cost.shape[2];
    PyObject *result = NULL;
    Work work = {NULL, NULL, NULL, NULL};
    if (out.shape[0] != n_a || out.shape[1] != n_b) {
        PyErr_SetString(PyExc_ValueError, "out must have shape (n_ascans, n_bscans) of cost");
        goto done;
    }
    if (work_alloc(&work, n_a, n_b, n_o, m, step_penalty) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS;
    const float *c = cost.buf;
    for (Py_ssize_t row = 0; row < n_a * n_b; row++)
        for (Py_ssize_t o = 0; o < n_o; o++) work.acc[row * (n_o + 2 * m) + m + o] = c[row * n_o + o];
    solve(work.acc, work.reach, work.window, out.buf, n_a, n_b, n_o, m, work.penalty);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    work_free(&work);
    release_buffers(views, 2);
    return result;
}

/* score[a][b][o] of a float32 buffer with any strides */
static float score_at(const Py_buffer *score, Py_ssize_t a, Py_ssize_t b, Py_ssize_t o) {
    return *(const float *)((const char *)score->buf + a * score->strides[0] + b * score->strides[1] +
                            o * score->strides[2]);
}

/* The first and last offsets o in 0 .. n_o - 1 with low <= o <= high (first > last where none is) */
static void inside_rows(double low, double high, Py_ssize_t n_o, Py_ssize_t *first, Py_ssize_t *last) {
    if (!(low <= high)) { /* NaN, or an empty range */
        *first = 0;
        *last = -1;
        return;
    }
    *first = low <= 0.0 ? 0 : (low > (double)n_o ? n_o : (Py_ssize_t)ceil(low));
    *last = high >= (double)(n_o - 1) ? n_o - 1 : (high < 0.0 ? -1 : (Py_ssize_t)floor(high));
}

/* The cost of paths_band.numpy_band_path: -(score / scale) inside [low, high], outside_cost elsewhere,
   into acc; 0 where a cost inside is not finite (the numpy search's case). */
static int band_costs(const Py_buffer *score, float scale, const double *low, const double *high, float outside,
                      Py_ssize_t n_a, Py_ssize_t n_t, Py_ssize_t n_o, Py_ssize_t m, float *acc) {
    const Py_ssize_t step = score->strides[2];
    unsigned not_finite = 0; /* an exponent of all ones: inf or NaN */
    for (Py_ssize_t a = 0; a < n_a; a++)
        for (Py_ssize_t t = 0; t < n_t; t++) {
            Py_ssize_t first, last;
            inside_rows(low[a * n_t + t], high[a * n_t + t], n_o, &first, &last);
            float *row = acc + (a * n_t + t) * (n_o + 2 * m) + m;
            const char *line = (const char *)score->buf + a * score->strides[0] + t * score->strides[1];
            for (Py_ssize_t o = 0; o < first; o++) row[o] = outside;
            if (step == (Py_ssize_t)sizeof(float)) { /* contiguous along offsets: on vector units */
                const float *values = (const float *)line;
                for (Py_ssize_t o = first; o <= last; o++) row[o] = -(values[o] / scale);
            } else
                for (Py_ssize_t o = first; o <= last; o++) row[o] = -(*(const float *)(line + o * step) / scale);
            for (Py_ssize_t o = first; o <= last; o++) {
                uint32_t bits;
                memcpy(&bits, &row[o], sizeof bits);
                not_finite |= (bits & 0x7f800000u) == 0x7f800000u;
            }
            for (Py_ssize_t o = last + 1 > first ? last + 1 : first; o < n_o; o++) row[o] = outside;
        }
    return !not_finite;
}

/* refine_subpixel of paths.py at every chosen offset, on strength = -cost */
static void refine(const Py_buffer *score, float scale, const double *low, const double *high, float outside,
                   const int64_t *path, Py_ssize_t n_a, Py_ssize_t n_t, Py_ssize_t n_o, double *refined) {
    for (Py_ssize_t a = 0; a < n_a; a++)
        for (Py_ssize_t t = 0; t < n_t; t++) {
            const Py_ssize_t at = a * n_t + t, index = path[at];
            refined[at] = (double)index;
            if (n_o < 3 || index < 1 || index > n_o - 2) continue;
            float strength[3];
            for (int k = 0; k < 3; k++) {
                const Py_ssize_t o = index - 1 + k;
                strength[k] = (double)o >= low[at] && (double)o <= high[at] ? score_at(score, a, t, o) / scale
                                                                            : -outside;
            }
            const float curvature = strength[0] - 2.0f * strength[1] + strength[2];
            float delta = curvature < 0.0f ? 0.5f * (strength[0] - strength[2]) / curvature : 0.0f;
            delta = isnan(delta) ? 0.0f : (delta < -0.5f ? -0.5f : (delta > 0.5f ? 0.5f : delta));
            refined[at] = (double)index + (double)delta;
        }
}

static PyObject *band_path(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objects[5];
    double scale, outside, step_penalty;
    Py_ssize_t m;
    if (!PyArg_ParseTuple(args, "OdOOdndOO", &objects[0], &scale, &objects[1], &objects[2], &outside, &m,
                          &step_penalty, &objects[3], &objects[4]))
        return NULL;
    static const BufferSpec specs[5] = {{"score", "f", 3, 0, 1}, /* any strides: score_at reads them */
                                        {"low", "d", 2, 0, 0},
                                        {"high", "d", 2, 0, 0},
                                        {"path", "q", 2, 1, 0},
                                        {"refined", "d", 2, 1, 0}};
    Py_buffer views[5];
    if (take_buffers(objects, specs, 5, views) < 0) return NULL;
    PyObject *result = NULL;
    Work work = {NULL, NULL, NULL, NULL};
    const Py_ssize_t n_a = views[0].shape[0], n_b = views[0].shape[1], n_o = views[0].shape[2];
    for (int i = 1; i < 5; i++)
        if (views[i].shape[0] != n_a || views[i].shape[1] != n_b) {
            PyErr_Format(PyExc_ValueError, "%s must have shape (n_ascans, n_bscans) of score", specs[i].name);
            goto done;
        }
    if (work_alloc(&work, n_a, n_b, n_o, m, step_penalty) < 0) goto done;
    int finite;
    Py_BEGIN_ALLOW_THREADS;
    finite = band_costs(&views[0], (float)scale, views[1].buf, views[2].buf, (float)outside, n_a, n_b, n_o, m, work.acc);
    if (finite) {
        solve(work.acc, work.reach, work.window, views[3].buf, n_a, n_b, n_o, m, work.penalty);
        refine(&views[0], (float)scale, views[1].buf, views[2].buf, (float)outside, views[3].buf, n_a, n_b, n_o,
               views[4].buf);
    }
    Py_END_ALLOW_THREADS;
    result = PyBool_FromLong(finite);
done:
    work_free(&work);
    release_buffers(views, 5);
    return result;
}

static PyMethodDef methods[] = {
    {"best_path", best_path, METH_VARARGS,
     "best_path(cost, max_step, step_penalty, out): minimum-cost path of every B-scan into out."},
    {"band_path", band_path, METH_VARARGS,
     "band_path(score, scale, low, high, outside_cost, max_step, step_penalty, path, refined): the path "
     "and its sub-pixel rows where score / scale is high inside [low, high]; False (nothing written) where a "
     "cost is not finite."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_paths", "Compiled path search.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__paths(void) { return PyModule_Create(&module); }
