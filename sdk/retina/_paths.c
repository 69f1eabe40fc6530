/* Minimum-cost boundary paths (sdk.retina.paths.best_path), compiled.

   The same dynamic programme as the numpy reference in sdk/retina/paths.py, with the same float32
   arithmetic and the same ties, so that both give identical paths (tests/test_retina_kernels.py):
   acc[a][b][o] = cost[a][b][o] + min over |d| <= m of (acc[a-1][b][o+d] + penalty[|d|]), offsets
   outside 0..n_o-1 unreachable. Back along the path, the previous offset is the first minimum over
   o-m .. o+m (the largest step from below). The caller passes finite costs only (numpy's NaN rules
   would stop the loops from running on vector units, and a window of infinite costs would step
   outside the band; the reference handles such costs).

   One call: best_path(cost, max_step, step_penalty, out) with cost a C-contiguous float32 buffer of
   shape (n_a, n_b, n_o) and out a C-contiguous int64 buffer of shape (n_a, n_b), both checked here;
   the work runs without the GIL. Only the buffer protocol is used (no numpy headers). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h> /* INFINITY */
#include <stdint.h>
#include <stdlib.h>

/* np.argmin of values[0..n): the first minimum (no NaN here) */
static Py_ssize_t first_min(const float *values, Py_ssize_t n) {
    Py_ssize_t best = 0;
    for (Py_ssize_t i = 1; i < n; i++)
        if (values[i] < values[best]) best = i;
    return best;
}

/* acc holds n_a slabs of n_b rows of width = n_o + 2m floats, the m floats at each end +inf, as the
   numpy reference's; the loops over offsets are contiguous and branch-free, so the compiler runs them
   on vector units. reach is one row of n_o floats, window 2m + 1 floats. */
static void solve(const float *cost, float *acc, float *reach, float *window, int64_t *path, Py_ssize_t n_a,
                  Py_ssize_t n_b, Py_ssize_t n_o, Py_ssize_t m, const float *penalty) {
    const Py_ssize_t width = n_o + 2 * m, slab = n_b * width;
    for (Py_ssize_t i = 0; i < n_a * slab; i++) acc[i] = INFINITY;
    for (Py_ssize_t b = 0; b < n_b; b++)
        for (Py_ssize_t o = 0; o < n_o; o++) acc[b * width + m + o] = cost[b * n_o + o];
    for (Py_ssize_t a = 1; a < n_a; a++) {
        for (Py_ssize_t b = 0; b < n_b; b++) {
            const float *p = acc + (a - 1) * slab + b * width + m; /* p[-m .. n_o + m) readable */
            const float *here = cost + (a * n_b + b) * n_o;
            float *next = acc + a * slab + b * width + m;
            for (Py_ssize_t o = 0; o < n_o; o++) reach[o] = p[o];
            for (Py_ssize_t d = 1; d <= m; d++) {
                const float step = penalty[d];
                for (Py_ssize_t o = 0; o < n_o; o++) {
                    float pair = p[o + d] < p[o - d] ? p[o + d] : p[o - d];
                    pair += step;
                    reach[o] = pair < reach[o] ? pair : reach[o];
                }
            }
            for (Py_ssize_t o = 0; o < n_o; o++) next[o] = reach[o] + here[o];
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

static int get_buffer(PyObject *object, Py_buffer *view, const char *name, const char *format,
                      Py_ssize_t itemsize, int ndim, int writable) {
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->ndim != ndim || view->itemsize != itemsize || view->format == NULL ||
        !(view->format[0] == format[0] || (view->format[0] == '=' && view->format[1] == format[0]))) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous %d-D %s array", name, ndim,
                     format[0] == 'f' ? "float32" : "int64");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *best_path(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *cost_object, *out_object;
    Py_ssize_t m;
    double step_penalty;
    if (!PyArg_ParseTuple(args, "OndO", &cost_object, &m, &step_penalty, &out_object)) return NULL;
    if (m < 0) return PyErr_Format(PyExc_ValueError, "max_step must be >= 0, not %zd", m);
    Py_buffer cost, out;
    if (get_buffer(cost_object, &cost, "cost", "f", 4, 3, 0) < 0) return NULL;
    /* int64 is 'l' on LP64 Linux and 'q' elsewhere */
    const char *int64_format = sizeof(long) == 8 ? "l" : "q";
    if (get_buffer(out_object, &out, "out", int64_format, 8, 2, 1) < 0) {
        PyBuffer_Release(&cost);
        return NULL;
    }
    Py_ssize_t n_a = cost.shape[0], n_b = cost.shape[1], n_o = cost.shape[2];
    PyObject *result = NULL;
    float *acc = NULL, *reach = NULL, *window = NULL, *penalty = NULL;
    if (out.shape[0] != n_a || out.shape[1] != n_b) {
        PyErr_SetString(PyExc_ValueError, "out must have shape (n_ascans, n_bscans) of cost");
        goto done;
    }
    if (n_a == 0 || n_b == 0 || n_o == 0) {
        PyErr_SetString(PyExc_ValueError, "cost must have no empty axis");
        goto done;
    }
    acc = malloc(sizeof(float) * (size_t)(n_a * n_b * (n_o + 2 * m)));
    reach = malloc(sizeof(float) * (size_t)n_o);
    window = malloc(sizeof(float) * (size_t)(2 * m + 1));
    penalty = malloc(sizeof(float) * (size_t)(m + 1));
    if (acc == NULL || reach == NULL || window == NULL || penalty == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t d = 0; d <= m; d++) penalty[d] = (float)(step_penalty * (double)d); /* numpy's float32(p * d) */
    Py_BEGIN_ALLOW_THREADS;
    solve(cost.buf, acc, reach, window, out.buf, n_a, n_b, n_o, m, penalty);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    free(acc);
    free(reach);
    free(window);
    free(penalty);
    PyBuffer_Release(&cost);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"best_path", best_path, METH_VARARGS,
     "best_path(cost, max_step, step_penalty, out): minimum-cost path of every B-scan into out."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_paths", "Compiled path search.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__paths(void) { return PyModule_Create(&module); }
