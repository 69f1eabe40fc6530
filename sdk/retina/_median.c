/* The median filter of en-face maps (sdk.retina.median.median_filter), compiled.

   scipy.ndimage.median_filter(values, size, mode="nearest") for a 2-D float32 or float64 map and a
   window of odd height and width: every output pixel is the middle one of its window's values, the
   map extended by its edge pixels; no arithmetic, so the result is scipy's exactly for finite values
   (the caller passes finite maps only: numpy's and scipy's NaN order is not defined here).

   One call: median_filter(values, size_y, size_x, out), values and out C-contiguous 2-D arrays of one
   float type and shape; it runs without the GIL. Only the buffer protocol is used (no numpy headers). */

#include "buffers.h" /* Python.h and the checked array arguments */
#include <stdlib.h>

static Py_ssize_t clamp(Py_ssize_t i, Py_ssize_t n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

/* Each row's windows as one sorted array, slid along x: the column leaving is taken out and the one
   entering moved into its place (an insertion step: the values between close up), so a step costs
   about size_y * k compares and moves; the median is the middle element. */
#define FILTER(TYPE)                                                                                \
    static Py_ssize_t first_not_below_##TYPE(const TYPE *sorted, Py_ssize_t n, TYPE v) {            \
        Py_ssize_t below = 0; /* counted, not searched: no branch to mispredict, vector units */    \
        for (Py_ssize_t i = 0; i < n; i++) below += sorted[i] < v;                                  \
        return below;                                                                               \
    }                                                                                               \
    static void insert_##TYPE(TYPE *sorted, Py_ssize_t n, TYPE v) { /* room for n + 1 */            \
        Py_ssize_t i = n;                                                                           \
        for (; i > 0 && sorted[i - 1] > v; i--) sorted[i] = sorted[i - 1];                          \
        sorted[i] = v;                                                                              \
    }                                                                                               \
    /* one of the values, ``leaving``, replaced by ``v``: it moves to its place, the others close up */ \
    static void replace_##TYPE(TYPE *sorted, Py_ssize_t n, TYPE leaving, TYPE v) {                 \
        Py_ssize_t i = first_not_below_##TYPE(sorted, n, leaving);                                  \
        for (; i + 1 < n && sorted[i + 1] < v; i++) sorted[i] = sorted[i + 1];                      \
        for (; i > 0 && sorted[i - 1] > v; i--) sorted[i] = sorted[i - 1];                          \
        sorted[i] = v;                                                                              \
    }                                                                                               \
    static void filter_##TYPE(const TYPE *in, TYPE *out, Py_ssize_t ny, Py_ssize_t nx, Py_ssize_t sy, \
                              Py_ssize_t sx, TYPE *sorted) {                                        \
        const Py_ssize_t ry = sy / 2, rx = sx / 2, k = sy * sx;                                     \
        for (Py_ssize_t y = 0; y < ny; y++) {                                                       \
            Py_ssize_t n = 0;                                                                       \
            for (Py_ssize_t dy = -ry; dy <= ry; dy++)                                               \
                for (Py_ssize_t dx = -rx; dx <= rx; dx++)                                           \
                    insert_##TYPE(sorted, n++, in[clamp(y + dy, ny) * nx + clamp(dx, nx)]);         \
            out[y * nx] = sorted[k / 2];                                                            \
            for (Py_ssize_t x = 1; x < nx; x++) {                                                   \
                const Py_ssize_t leaving = clamp(x - 1 - rx, nx), entering = clamp(x + rx, nx);     \
                for (Py_ssize_t dy = -ry; dy <= ry; dy++) {                                         \
                    const TYPE *row = in + clamp(y + dy, ny) * nx;                                  \
                    replace_##TYPE(sorted, k, row[leaving], row[entering]);                         \
                }                                                                                   \
                out[y * nx + x] = sorted[k / 2];                                                    \
            }                                                                                       \
        }                                                                                           \
    }

FILTER(float)
FILTER(double)

static PyObject *median_filter(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objects[2];
    Py_ssize_t sy, sx;
    if (!PyArg_ParseTuple(args, "OnnO", &objects[0], &sy, &sx, &objects[1])) return NULL;
    if (sy < 1 || sx < 1 || sy % 2 == 0 || sx % 2 == 0)
        return PyErr_Format(PyExc_ValueError, "the window must have odd sides, not %zd x %zd", sy, sx);
    static const BufferSpec specs[2] = {{"values", "fd", 2, 0, 0}, {"out", "fd", 2, 1, 0}};
    Py_buffer views[2];
    if (take_buffers(objects, specs, 2, views) < 0) return NULL;
    const Py_buffer values = views[0], out = views[1];
    PyObject *result = NULL;
    void *window = NULL;
    const char format = buffer_kind(&values);
    if (buffer_kind(&out) != format || out.shape[0] != values.shape[0] || out.shape[1] != values.shape[1]) {
        PyErr_SetString(PyExc_TypeError, "values and out must be C-contiguous 2-D float32 or float64 arrays of one shape");
        goto done;
    }
    const Py_ssize_t ny = values.shape[0], nx = values.shape[1];
    window = malloc((size_t)(sy * sx) * (size_t)values.itemsize);
    if (window == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    if (format == 'f')
        filter_float(values.buf, out.buf, ny, nx, sy, sx, window);
    else
        filter_double(values.buf, out.buf, ny, nx, sy, sx, window);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    free(window);
    release_buffers(views, 2);
    return result;
}

static PyMethodDef methods[] = {
    {"median_filter", median_filter, METH_VARARGS,
     "median_filter(values, size_y, size_x, out): scipy.ndimage.median_filter(values, (size_y, size_x), "
     "mode='nearest') of a finite 2-D map into out."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_median", "Compiled median filter of maps.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__median(void) { return PyModule_Create(&module); }
