/* Means of consecutive groups of samples along one axis of a volume (sdk.retina.intensity._block_mean),
   compiled.

   The same float32 arithmetic as the numpy reference (intensity._numpy_block_mean), so that both give
   identical arrays (tests/test_retina_kernels.py): the first sample of a group as float32, then each
   next one added in float32, in order, then the sum times float32(1 / factor).

   One call: block_mean(data, factor, axis, lo, hi, out) for the B-scans [lo, hi): data C-contiguous
   uint8, uint16 or float32 (n_b, depth, n_a); axis 1 (depth) or 2 (A-scans); out C-contiguous float32
   of data's shape with that axis's length divided by factor (trailing samples that fill no group are
   not read). It runs without the GIL, so that blocks of B-scans run in parallel threads. Only the
   buffer protocol is used (no numpy headers). */

#include "buffers.h" /* Python.h and the checked array arguments */
#include <stdint.h>
#include <stdlib.h>

/* out[b][g][x] (axis 1) or out[b][z][g] (axis 2) for b in [lo, hi); in: n_b x depth x n_a samples of
   type T; out: n_b x rows x cols floats */
#define BLOCK_MEAN(T)                                                                                            \
    static void block_mean_##T(const T *in, Py_ssize_t depth, Py_ssize_t n_a, Py_ssize_t factor, int axis,         \
                               Py_ssize_t lo, Py_ssize_t hi, float *out, Py_ssize_t rows, Py_ssize_t cols) {      \
        const float scale = (float)(1.0 / (double)factor);                                                      \
        for (Py_ssize_t b = lo; b < hi; b++) {                                                                   \
            const T *slab = in + b * depth * n_a;                                                                \
            float *result = out + b * rows * cols;                                                               \
            for (Py_ssize_t r = 0; r < rows; r++) {                                                              \
                float *line = result + r * cols;                                                                 \
                if (axis == 1) {                                                                                 \
                    const T *first = slab + r * factor * n_a;                                                    \
                    for (Py_ssize_t x = 0; x < cols; x++) line[x] = (float)first[x];                             \
                    for (Py_ssize_t i = 1; i < factor; i++) {                                                    \
                        const T *next = first + i * n_a;                                                         \
                        for (Py_ssize_t x = 0; x < cols; x++) line[x] += (float)next[x];                         \
                    }                                                                                            \
                } else {                                                                                         \
                    const T *samples = slab + r * n_a;                                                           \
                    if (factor == 2) /* the usual one, written out so that it runs on vector units */            \
                        for (Py_ssize_t g = 0; g < cols; g++) line[g] = (float)samples[2 * g] + (float)samples[2 * g + 1]; \
                    else                                                                                         \
                        for (Py_ssize_t g = 0; g < cols; g++) {                                                  \
                            float sum = (float)samples[g * factor];                                              \
                            for (Py_ssize_t i = 1; i < factor; i++) sum += (float)samples[g * factor + i];       \
                            line[g] = sum;                                                                       \
                        }                                                                                        \
                }                                                                                                \
                for (Py_ssize_t x = 0; x < cols; x++) line[x] *= scale;                                          \
            }                                                                                                    \
        }                                                                                                        \
    }

BLOCK_MEAN(uint8_t)
BLOCK_MEAN(uint16_t)
BLOCK_MEAN(float)

/* Block means along A-scans (factor fx) and then along depth (factor fz), B-scan by B-scan through a
   scratch slab of depth x cols floats: the same floats as block_mean along axis 2 and then along axis 1,
   without the whole intermediate array */
#define COARSE_MEAN(T)                                                                                           \
    static void coarse_mean_##T(const T *in, Py_ssize_t depth, Py_ssize_t n_a, Py_ssize_t fx, Py_ssize_t fz,       \
                                Py_ssize_t lo, Py_ssize_t hi, float *out, Py_ssize_t rows, Py_ssize_t cols,       \
                                float *scratch) {                                                                \
        for (Py_ssize_t b = lo; b < hi; b++) {                                                                   \
            block_mean_##T(in + b * depth * n_a, rows * fz, n_a, fx, 2, 0, 1, scratch, rows * fz, cols);         \
            block_mean_float(scratch, rows * fz, cols, fz, 1, 0, 1, out + b * rows * cols, rows, cols);          \
        }                                                                                                        \
    }

COARSE_MEAN(uint8_t)
COARSE_MEAN(uint16_t)
COARSE_MEAN(float)

/* data (uint8, uint16 or float32) and out (float32), both 3-D */
static const BufferSpec volume_specs[2] = {{"data", "BHf", 3, 0, 0}, {"out", "f", 3, 1, 0}};

static PyObject *block_mean(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objects[2];
    Py_ssize_t factor, lo, hi;
    int axis;
    if (!PyArg_ParseTuple(args, "OninnO", &objects[0], &factor, &axis, &lo, &hi, &objects[1])) return NULL;
    Py_buffer views[2];
    if (take_buffers(objects, volume_specs, 2, views) < 0) return NULL;
    const Py_buffer data = views[0], out = views[1];
    const char kind = buffer_kind(&data);
    PyObject *result = NULL;
    const Py_ssize_t n_b = data.shape[0], depth = data.shape[1], n_a = data.shape[2];
    if (factor < 1 || (axis != 1 && axis != 2) || lo < 0 || hi > n_b || lo > hi) {
        PyErr_Format(PyExc_ValueError, "need factor >= 1, axis 1 or 2 and 0 <= lo <= hi <= n_bscans (factor %zd, "
                     "axis %d, %zd..%zd)", factor, axis, lo, hi);
        goto done;
    }
    const Py_ssize_t rows = axis == 1 ? depth / factor : depth, cols = axis == 2 ? n_a / factor : n_a;
    if (out.shape[0] != n_b || out.shape[1] != rows || out.shape[2] != cols) {
        PyErr_Format(PyExc_ValueError, "out must have shape (%zd, %zd, %zd)", n_b, rows, cols);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    if (kind == 'B')
        block_mean_uint8_t(data.buf, depth, n_a, factor, axis, lo, hi, out.buf, rows, cols);
    else if (kind == 'H')
        block_mean_uint16_t(data.buf, depth, n_a, factor, axis, lo, hi, out.buf, rows, cols);
    else
        block_mean_float(data.buf, depth, n_a, factor, axis, lo, hi, out.buf, rows, cols);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    release_buffers(views, 2);
    return result;
}

static PyObject *coarse_mean(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objects[2];
    Py_ssize_t fx, fz, lo, hi;
    if (!PyArg_ParseTuple(args, "OnnnnO", &objects[0], &fx, &fz, &lo, &hi, &objects[1])) return NULL;
    Py_buffer views[2];
    if (take_buffers(objects, volume_specs, 2, views) < 0) return NULL;
    const Py_buffer data = views[0], out = views[1];
    const char kind = buffer_kind(&data);
    PyObject *result = NULL;
    float *scratch = NULL;
    const Py_ssize_t n_b = data.shape[0], depth = data.shape[1], n_a = data.shape[2];
    if (fx < 1 || fz < 1 || lo < 0 || hi > n_b || lo > hi) {
        PyErr_Format(PyExc_ValueError, "need factors >= 1 and 0 <= lo <= hi <= n_bscans (factors %zd, %zd, %zd..%zd)",
                     fx, fz, lo, hi);
        goto done;
    }
    const Py_ssize_t rows = depth / fz, cols = n_a / fx;
    if (out.shape[0] != n_b || out.shape[1] != rows || out.shape[2] != cols) {
        PyErr_Format(PyExc_ValueError, "out must have shape (%zd, %zd, %zd)", n_b, rows, cols);
        goto done;
    }
    scratch = malloc(sizeof(float) * (size_t)(rows * fz * cols + 1));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    if (kind == 'B')
        coarse_mean_uint8_t(data.buf, depth, n_a, fx, fz, lo, hi, out.buf, rows, cols, scratch);
    else if (kind == 'H')
        coarse_mean_uint16_t(data.buf, depth, n_a, fx, fz, lo, hi, out.buf, rows, cols, scratch);
    else
        coarse_mean_float(data.buf, depth, n_a, fx, fz, lo, hi, out.buf, rows, cols, scratch);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    free(scratch);
    release_buffers(views, 2);
    return result;
}

static PyMethodDef methods[] = {
    {"block_mean", block_mean, METH_VARARGS,
     "block_mean(data, factor, axis, lo, hi, out): means of groups of factor samples along axis (1 or 2) of "
     "the B-scans [lo, hi) of data into out."},
    {"coarse_mean", coarse_mean, METH_VARARGS,
     "coarse_mean(data, fx, fz, lo, hi, out): means of groups of fx A-scans and then of fz samples in depth of "
     "the B-scans [lo, hi) of data into out."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_binning", "Compiled block means of a volume.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__binning(void) { return PyModule_Create(&module); }
