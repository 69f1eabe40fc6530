/*
 * octclassify.h: C API of the OCT glaucoma-type classifier (liboctclassify.so).
 *
 * The library runs the Python SDK (sdk.Classifier) inside the calling process: the first call
 * starts an embedded Python interpreter (see bindings/README.md for how it finds its packages).
 *
 *     octc_classifier *clf;
 *     if (octc_open("/opt/oct/bundle", "auto", &clf) != OCTC_OK)
 *         fprintf(stderr, "%s\n", octc_last_error());
 *     octc_result r;
 *     const double spacing_mm[3] = {0.094, 0.0039, 0.023};   // bscan, axial, ascan
 *     if (octc_classify(clf, voxels, OCTC_UINT16, 128, 496, 512, spacing_mm, "OD", &r) != OCTC_OK)
 *         fprintf(stderr, "%s\n", octc_last_error());
 *     else if (r.gradable)
 *         printf("%s p=%.3f\n", r.label_name, r.probabilities[r.label]);
 *     else
 *         printf("ungradable: %s\n", r.reason);
 *     octc_close(clf);
 *
 * Rules:
 * - Every function that can fail returns an octc_status; results come back through out parameters.
 *   On an error, octc_last_error() gives the calling thread a message that names the problem and
 *   what to do.
 * - If the embedded Python cannot start, that call and every later one return
 *   OCTC_PYTHON_INIT_FAILED (the interpreter cannot be restarted in the same process).
 * - Calls may come from any thread, and one handle may be shared by several threads. Python code
 *   runs one thread at a time (the GIL); ONNX Runtime releases it while the networks run.
 * - The embedded Python is never finalised: do not call into the library while the process exits.
 */
#ifndef OCTCLASSIFY_H
#define OCTCLASSIFY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi: begin. build_library.py gives the declarations up to "cffi: end" to cffi's cdef(), which
   reads plain C declarations only (no preprocessor lines). */

/* Status of every call. */
typedef enum octc_status {
    OCTC_OK = 0,
    OCTC_INVALID_ARGUMENT = 1,      /* a value is unusable: backend name, laterality, spacing, voxel
                                       content (too few samples, NaN), a pointer not from octc_open */
    OCTC_NULL_POINTER = 2,          /* a required pointer is NULL */
    OCTC_BAD_DIMENSIONS = 3,        /* a dimension is zero or negative, or the volume is too large */
    OCTC_UNKNOWN_DTYPE = 4,         /* dtype is not one of octc_dtype */
    OCTC_BUNDLE_ERROR = 5,          /* the bundle is missing, incomplete or tampered with */
    OCTC_BACKEND_UNAVAILABLE = 6,   /* the backend cannot run here (library or device missing) */
    OCTC_PYTHON_INIT_FAILED = 7,    /* the embedded Python or the SDK could not start: permanent */
    OCTC_CLOSED_HANDLE = 8,         /* the handle was closed by octc_close */
    OCTC_INTERNAL = 9               /* an unexpected error inside the SDK (the message says which) */
} octc_status;

/* Voxel type of the caller's buffer. */
typedef enum octc_dtype {
    OCTC_UINT8 = 1,
    OCTC_UINT16 = 2,
    OCTC_FLOAT32 = 3
} octc_dtype;

/* The five classes, in the order of octc_result.probabilities. */
typedef enum octc_class {
    OCTC_CLASS_NONE = -1,           /* ungradable scan: no class */
    OCTC_CLASS_NORMAL = 0,
    OCTC_CLASS_FI = 1,              /* focal ischemic glaucomatous disc */
    OCTC_CLASS_GE = 2,              /* generalized enlargement of the cup */
    OCTC_CLASS_MY = 3,              /* myopic glaucomatous disc */
    OCTC_CLASS_SS = 4,              /* senile sclerotic glaucomatous disc */
    OCTC_N_CLASSES = 5
} octc_class;

enum { OCTC_LABEL_CHARS = 8, OCTC_REASON_CHARS = 512 };

/* The answer for one eye. A scan too poor to grade is not an error: gradable is 0, label is
   OCTC_CLASS_NONE, label_name is "", the probabilities are NaN and reason says why. */
typedef struct octc_result {
    int gradable;                            /* 1 graded, 0 ungradable */
    octc_class label;                        /* most probable class, or OCTC_CLASS_NONE */
    char label_name[OCTC_LABEL_CHARS];       /* "normal", "FI", "GE", "MY", "SS" or "" */
    double probabilities[OCTC_N_CLASSES];    /* indexed by octc_class; they sum to 1 */
    char reason[OCTC_REASON_CHARS];          /* quality reasons joined by "; " (NUL-terminated,
                                                cut to fit); "" when there are none */
    double latency_ms;                       /* wall time of the octc_classify call */
} octc_result;

/* cffi: end */

/* A classifier: one verified bundle loaded into one backend. Opaque. */
typedef struct octc_classifier octc_classifier;

/* Verify the bundle folder at bundle_path (every file's sha256) and load its networks into
   backend_name: "auto" (TensorRT when usable, else ONNX Runtime), "onnxruntime", "tensorrt" or
   "torch"; NULL means "auto". The first call into the library also starts Python. On success
   *out_handle is set; otherwise it is set to NULL. */
octc_status octc_open(const char *bundle_path, const char *backend_name, octc_classifier **out_handle);

/* Classify one wide-field volume (disc and macula in one cube).
   voxels: n_bscans * depth * n_ascans samples of dtype, C order with axes (n_bscans, depth,
     n_ascans): B-scan index superior -> inferior, depth anterior -> posterior, A-scan index left ->
     right of the en-face view. Read in place (no copy) during the call only; never kept.
   spacing_mm: sample spacing {bscan, axial, ascan} in millimetres.
   laterality: "OD" (right eye) or "OS" (left eye); "R"/"L" are accepted.
   out_result: filled on success; on an error it is cleared (label OCTC_CLASS_NONE). */
octc_status octc_classify(octc_classifier *handle, const void *voxels, octc_dtype dtype, int64_t n_bscans,
                          int64_t depth, int64_t n_ascans, const double spacing_mm[3], const char *laterality,
                          octc_result *out_result);

/* Release the classifier. The handle must not be in use by another thread; any later call with it
   returns OCTC_CLOSED_HANDLE (closing it again too). */
octc_status octc_close(octc_classifier *handle);

/* Message of the calling thread's last failed call ("" if its last call succeeded). Valid until the
   thread's next call into the library. */
const char *octc_last_error(void);

/* Name of a status code, e.g. "OCTC_BAD_DIMENSIONS". */
const char *octc_status_name(octc_status status);

/* Library version, e.g. "octclassify 0.1.0". Needs no Python. */
const char *octc_version(void);

#ifdef __cplusplus
}
#endif

#endif /* OCTCLASSIFY_H */
