/* The checked array arguments of the front end's compiled kernels (_paths, _band, _binning, _median).

   Each call describes its array arguments in one table of BufferSpec and takes them all with
   take_buffers, or none: a TypeError names the first argument that is not what its spec says
   (dimensions, element type), numpy's ValueError a non-contiguous one. Kinds are numpy's buffer
   format characters: 'f' float32, 'd' float64, 'q' int64 (numpy's 'l' on LP64), 'B' uint8,
   'H' uint16; a spec may allow several ("BHf"). */
#ifndef SDK_RETINA_BUFFERS_H
#define SDK_RETINA_BUFFERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    const char *name;  /* the argument's name in error messages */
    const char *kinds; /* the element types it may have, as format characters */
    int ndim;
    int writable;
    int strided; /* any strides (the kernel reads view->strides); else C-contiguous */
} BufferSpec;

/* The buffer's element type as one format character ('l' with 8 bytes read as 'q'), or 0. */
static char buffer_kind(const Py_buffer *view) {
    const char *format = view->format == NULL ? "" : view->format;
    if (format[0] == '=' || format[0] == '@') format++;
    if (format[0] == '\0' || format[1] != '\0') return 0;
    const char kind = (format[0] == 'l' || format[0] == 'q') ? 'q' : format[0];
    const Py_ssize_t size = kind == 'B' ? 1 : kind == 'H' ? 2 : kind == 'f' ? 4 : (kind == 'd' || kind == 'q') ? 8 : 0;
    return size != 0 && view->itemsize == size ? kind : 0;
}

static const char *kind_name(char kind) {
    switch (kind) {
    case 'f': return "float32";
    case 'd': return "float64";
    case 'q': return "int64";
    case 'B': return "uint8";
    case 'H': return "uint16";
    default: return "?";
    }
}

/* TypeError "<name> must be a C-contiguous <ndim>-D uint8, uint16 or float32 array" */
static void wrong_buffer(const BufferSpec *spec) {
    char names[64] = "";
    const size_t n = strlen(spec->kinds);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) strncat(names, i + 1 == n ? " or " : ", ", sizeof(names) - strlen(names) - 1);
        strncat(names, kind_name(spec->kinds[i]), sizeof(names) - strlen(names) - 1);
    }
    PyErr_Format(PyExc_TypeError, "%s must be a %s%d-D %s array", spec->name, spec->strided ? "" : "C-contiguous ",
                 spec->ndim, names);
}

static void release_buffers(Py_buffer *views, int n) {
    while (n-- > 0) PyBuffer_Release(&views[n]);
}

/* views[i] of objects[i] as specs[i] says, for i < n: 0, or -1 with an error set and nothing held. */
static int take_buffers(PyObject *const *objects, const BufferSpec *specs, int n, Py_buffer *views) {
    for (int i = 0; i < n; i++) {
        const BufferSpec *spec = &specs[i];
        const int flags = (spec->strided ? PyBUF_STRIDES : PyBUF_C_CONTIGUOUS) | PyBUF_FORMAT |
                          (spec->writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[i], &views[i], flags) < 0) {
            release_buffers(views, i);
            return -1;
        }
        const char kind = buffer_kind(&views[i]);
        if (views[i].ndim != spec->ndim || kind == 0 || strchr(spec->kinds, kind) == NULL) {
            wrong_buffer(spec);
            release_buffers(views, i + 1);
            return -1;
        }
    }
    return 0;
}

#endif
