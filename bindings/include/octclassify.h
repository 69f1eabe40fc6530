/*
 * octclassify.h: C API of the OCT glaucoma-type classifier (liboctclassify.so.0).
 *
 * The library runs the Python SDK (sdk.Classifier) inside the calling process, in an isolated
 * Python interpreter of its own that the first call starts from the runtime folder installed next
 * to the library (lib/octclassify/). See bindings/README.md.
 *
 *     octc_classifier *clf;
 *     octc_result r;
 *     const double spacing_mm[3] = {0.094, 0.0039, 0.023};   (bscan, axial, ascan)
 *     if (octc_open("/opt/oct/bundle", "auto", &clf) != OCTC_OK)
 *         fprintf(stderr, "%s\n", octc_last_error());
 *     else if (octc_classify(clf, voxels, n_bytes, OCTC_UINT16, 128, 496, 512, spacing_mm, "OD", &r)
 *              != OCTC_OK)
 *         fprintf(stderr, "%s\n", octc_last_error());
 *     else if (r.gradable)
 *         printf("%s p=%.3f\n", r.label_name, r.probabilities[r.label]);
 *     else
 *         printf("ungradable: %s\n", r.reason);
 *     octc_close(clf);
 *
 * Rules:
 * - Every function that can fail returns an octc_status; results come back through out
 *   parameters. On an error, octc_last_error() gives the calling thread a message that names the
 *   problem and what to do.
 * - If the embedded Python cannot start, that call and every later one that needs Python return
 *   OCTC_PYTHON_INIT_FAILED (the interpreter cannot be restarted in the same process).
 * - Calls may come from any thread, and one handle may be shared by several threads.
 * - The library leaves the process alone: it installs no signal handler, changes neither the
 *   locale, the environment nor stdio, reads no PYTHON* variable and writes nothing to stdout or
 *   stderr (messages go to octc_last_error() and the optional logger).
 * - The embedded Python is never finalised: do not call into the library while the process exits.
 * - Public structs have fixed-width fields only: their layout does not depend on compiler options
 *   such as -fshort-enums. Plain C89 to C11 and C++98 to C++17.
 */
#ifndef OCTCLASSIFY_H
#define OCTCLASSIFY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this header. The library's is octc_api_version(); its soname changes with MAJOR. */
#define OCTC_VERSION_MAJOR 0
#define OCTC_VERSION_MINOR 1
#define OCTC_VERSION_PATCH 0
#define OCTC_API_VERSION ((OCTC_VERSION_MAJOR << 16) | (OCTC_VERSION_MINOR << 8) | OCTC_VERSION_PATCH)

/* Status of every call (octc_status). */
typedef int32_t octc_status;
enum {
    OCTC_OK = 0,
    OCTC_INVALID_ARGUMENT = 1,     /* a value is unusable: empty string, backend or precision name,
                                      laterality, spacing, voxel content (too few samples, NaN), a
                                      pointer not from octc_open, an options struct_size */
    OCTC_NULL_POINTER = 2,         /* a required pointer is NULL */
    OCTC_BAD_DIMENSIONS = 3,       /* a dimension is zero or negative, or the volume has more than
                                      OCTC_MAX_VOXELS voxels */
    OCTC_UNKNOWN_DTYPE = 4,        /* dtype is not one of OCTC_UINT8, OCTC_UINT16, OCTC_FLOAT32 */
    OCTC_BUNDLE_ERROR = 5,         /* the bundle is missing, unreadable, incomplete, altered, or not
                                      signed by a trusted key; a trusted key is unusable */
    OCTC_BACKEND_UNAVAILABLE = 6,  /* the backend cannot run here (library or device missing) */
    OCTC_PYTHON_INIT_FAILED = 7,   /* the embedded Python or the SDK could not start: permanent */
    OCTC_CLOSED_HANDLE = 8,        /* the handle was closed by octc_close */
    OCTC_INTERNAL = 9,             /* an unexpected error inside the SDK (the message says which) */
    OCTC_SIZE_MISMATCH = 10,       /* voxels_bytes differs from n_bscans * depth * n_ascans * the
                                      voxel size */
    OCTC_FILE_ERROR = 11,          /* a file or folder named in the options (engine cache folder)
                                      cannot be read or written */
    OCTC_OUT_OF_MEMORY = 12        /* the process ran out of memory */
};

/* Voxel type of the caller's buffer (octc_dtype). */
typedef int32_t octc_dtype;
enum { OCTC_UINT8 = 1, OCTC_UINT16 = 2, OCTC_FLOAT32 = 3 };

/* The five classes, in the order of octc_result.probabilities (octc_class). */
typedef int32_t octc_class;
enum {
    OCTC_CLASS_NONE = -1,          /* ungradable scan: no class */
    OCTC_CLASS_NORMAL = 0,
    OCTC_CLASS_FI = 1,             /* focal ischemic glaucomatous disc */
    OCTC_CLASS_GE = 2,             /* generalized enlargement of the cup */
    OCTC_CLASS_MY = 3,             /* myopic glaucomatous disc */
    OCTC_CLASS_SS = 4,             /* senile sclerotic glaucomatous disc */
    OCTC_N_CLASSES = 5
};

/* Levels of the messages given to an octc_log_function (Python's logging levels). */
enum { OCTC_LOG_DEBUG = 10, OCTC_LOG_INFO = 20, OCTC_LOG_WARNING = 30, OCTC_LOG_ERROR = 40 };

/* Sizes of the text fields of octc_result, NUL included, and the largest volume octc_classify
   takes: 2^31 voxels (2 GiB of uint8 voxels), checked before anything is allocated. */
enum {
    OCTC_LABEL_CHARS = 8,
    OCTC_REASON_CHARS = 512,
    OCTC_BUNDLE_ID_CHARS = 72,     /* sha256 in hex: 64 characters */
    OCTC_SIGNER_CHARS = 24,        /* key id: 16 hex digits */
    OCTC_NAME_CHARS = 16
};
#define OCTC_MAX_VOXELS ((int64_t)1 << 31)

/* The answer for one eye. A scan too poor to grade is not an error: gradable is 0, label is
   OCTC_CLASS_NONE, label_name is "", the probabilities are NaN and reason says why. Every text
   field is NUL-terminated UTF-8. Size 720 bytes, the same with any compiler option. */
typedef struct octc_result {
    int32_t gradable;                        /* 1 graded, 0 ungradable */
    octc_class label;                        /* most probable class, or OCTC_CLASS_NONE */
    char label_name[OCTC_LABEL_CHARS];       /* "normal", "FI", "GE", "MY", "SS" or "" */
    double probabilities[OCTC_N_CLASSES];    /* indexed by octc_class; they sum to 1 */
    char reason[OCTC_REASON_CHARS];          /* quality reasons joined by "; " (cut to fit); "" when
                                                there are none */
    double latency_ms;                       /* wall time of the octc_classify call */
    char bundle_id[OCTC_BUNDLE_ID_CHARS];    /* the bundle's content hash (manifest bundle_id) */
    char signer[OCTC_SIGNER_CHARS];          /* key id of the trusted key that signed the bundle, or
                                                "" when no trusted keys were configured */
    char backend[OCTC_NAME_CHARS];           /* "onnxruntime", "tensorrt" or "torch" */
    char precision[OCTC_NAME_CHARS];         /* "fp32", "fp16", "int8" or "bf16" */
    char sdk_version[OCTC_NAME_CHARS];       /* version of the SDK that answered, e.g. "0.1.0" */
} octc_result;

/* A message from the library: level is an OCTC_LOG_* value, message a NUL-terminated UTF-8 line
   valid during the call. Called on the thread of the library call that logs, while the library
   holds its interpreter lock: return quickly and do not call into the library. */
typedef void (*octc_log_function)(void *user_data, int32_t level, const char *message);

/* Settings of octc_open_with_options. Fill it with octc_options_init, then set what you need: a
   library that knows fewer fields than your header reads only those (struct_size says how many),
   and refuses the struct if a field it does not know is set. NULL strings mean the default; an
   empty string is refused. */
typedef struct octc_options {
    uint32_t struct_size;            /* sizeof(octc_options) of the caller's header */
    int32_t threads;                 /* CPU threads per network (onnxruntime, torch); 0: every core.
                                        The threads inherit the CPU affinity of the thread that
                                        calls octc_open. */
    const char *backend;             /* "auto" (default), "onnxruntime", "tensorrt" or "torch" */
    const char *precision;           /* "fp32", "fp16", "int8" (a bundle made with --int8,
                                        onnxruntime on the CPU) or "bf16" (a bundle made with --bf16,
                                        torch on a CPU with bfloat16 instructions: a runtime folder
                                        with torch); default: the backend's natural one */
    const char *engine_cache_dir;    /* writable folder for TensorRT engines, and for ONNX
                                        Runtime's optimised CPU models (a faster start from the
                                        second process on; only where this field or
                                        $OCTC_ENGINE_CACHE is set, only a folder no other user may
                                        write); default: $OCTC_ENGINE_CACHE, else (TensorRT only)
                                        ~/.cache/octclassify/engines */
    const char *trusted_keys;        /* public key file, or folder of *.pem keys, the bundle must be
                                        signed by; default: $OCTC_TRUSTED_KEYS, and when that is
                                        unset too any bundle loads (result signer "") */
    octc_log_function logger;        /* receives the SDK's messages (INFO and above) during calls
                                        on this handle; default: none, messages are dropped */
    void *logger_user_data;          /* passed to logger */
} octc_options;

/* A classifier: one verified bundle loaded into one backend. Opaque. */
typedef struct octc_classifier octc_classifier;

/* Set every field of *options to its default and struct_size to sizeof(octc_options). Needs no
   Python. */
void octc_options_init(octc_options *options);

/* Verify the bundle folder at bundle_path (every file's sha256; the signature when trusted keys
   are set) and load its networks. The first call into the library also starts Python (about half
   a second). On success *out_handle is set; otherwise it is set to NULL. options may be NULL (all
   defaults). */
octc_status octc_open_with_options(const char *bundle_path, const octc_options *options,
                                   octc_classifier **out_handle);

/* octc_open_with_options with default options but backend_name (NULL means "auto"). */
octc_status octc_open(const char *bundle_path, const char *backend_name, octc_classifier **out_handle);

/* Classify one wide-field volume (disc and macula in one cube).
   voxels: n_bscans * depth * n_ascans samples of dtype, C order with axes (n_bscans, depth,
     n_ascans): B-scan index superior -> inferior, depth anterior -> posterior, A-scan index left ->
     right of the en-face view. Read in place (no copy) during the call only; never kept.
   voxels_bytes: the size of the buffer in bytes; it must equal the dimensions times the voxel size
     (1, 2 or 4), else OCTC_SIZE_MISMATCH and nothing is read.
   spacing_mm: sample spacing {bscan, axial, ascan} in millimetres.
   laterality: "OD" (right eye) or "OS" (left eye); "R"/"L" are accepted.
   out_result: filled on success; on an error it is cleared (label OCTC_CLASS_NONE). */
octc_status octc_classify(octc_classifier *handle, const void *voxels, size_t voxels_bytes, octc_dtype dtype,
                          int64_t n_bscans, int64_t depth, int64_t n_ascans, const double spacing_mm[3],
                          const char *laterality, octc_result *out_result);

/* Release the classifier. The handle must not be in use by another thread; any later call with it
   returns OCTC_CLOSED_HANDLE (closing it again too). octc_close(NULL) returns OCTC_NULL_POINTER
   at once. */
octc_status octc_close(octc_classifier *handle);

/* Message of the calling thread's last failed call ("" if its last call succeeded). Valid until the
   thread's next call into the library. */
const char *octc_last_error(void);

/* Name of a status code, e.g. "OCTC_BAD_DIMENSIONS". Needs no Python. */
const char *octc_status_name(octc_status status);

/* Library version, e.g. "octclassify 0.1.0". Needs no Python. */
const char *octc_version(void);

/* The library's OCTC_API_VERSION: (major << 16) | (minor << 8) | patch. A program built with this
   header runs with any library of the same major version and a minor version at least its own.
   Needs no Python. */
uint32_t octc_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* OCTCLASSIFY_H */
