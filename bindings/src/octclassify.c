/*
 * The C half of liboctclassify. build_library.py hands this file to cffi's set_source(), so it is
 * compiled inside the module cffi generates, after Python.h. The exported octc_* functions check
 * their arguments, start Python once per process and call the Python half (embedded.py) through
 * the extern "Python" functions declared below; they never return OCTC_OK unless Python ran.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "octclassify.h"

/* Implemented in Python (embedded.py); cffi defines them further down in the generated file. */
static int _octc_py_open(const char *bundle_path, const char *backend_name, uint64_t *out_handle);
static int _octc_py_classify(uint64_t handle, const char *voxels, int dtype, int64_t n_bscans, int64_t depth,
                             int64_t n_ascans, const double *spacing_mm, const char *laterality,
                             octc_result *out);
static int _octc_py_close(uint64_t handle);

#define PYTHONPATH_FILE "liboctclassify.pythonpath"

static _Thread_local char last_error[1024];

static pthread_once_t start_once = PTHREAD_ONCE_INIT;
static int start_failed;
static char *python_path;          /* ':'-separated directories the embedded Python searches first */
static char python_path_origin[PATH_MAX + 64];
static char start_error[PATH_MAX + 256];

static octc_status fail(octc_status status, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    return status;
}

/* Called from Python. */
static void _octc_set_error(const char *message)
{
    snprintf(last_error, sizeof last_error, "%s", message);
}

static void _octc_start_failed(const char *message)
{
    snprintf(start_error, sizeof start_error, "%s", message);
}

static const char *_octc_python_path(void)
{
    return python_path;
}

/* $OCTC_PYTHONPATH if set, else the lines of liboctclassify.pythonpath next to this library (relative
   lines are relative to its folder; blank lines and lines starting with '#' are skipped). */
static char *find_python_path(void)
{
    const char *env = getenv("OCTC_PYTHONPATH");
    if (env != NULL && env[0] != '\0') {
        snprintf(python_path_origin, sizeof python_path_origin, "$OCTC_PYTHONPATH");
        return strdup(env);
    }
    Dl_info info;
    char folder[PATH_MAX];
    if (dladdr((void *)&find_python_path, &info) == 0 || realpath(info.dli_fname, folder) == NULL) {
        snprintf(start_error, sizeof start_error, "cannot find liboctclassify's file: set OCTC_PYTHONPATH");
        return NULL;
    }
    *strrchr(folder, '/') = '\0';
    snprintf(python_path_origin, sizeof python_path_origin, "%s/%s", folder, PYTHONPATH_FILE);
    FILE *in = fopen(python_path_origin, "r");
    if (in == NULL) {
        snprintf(start_error, sizeof start_error, "cannot read %s (%s): rebuild the library or set "
                 "OCTC_PYTHONPATH", python_path_origin, strerror(errno));
        return NULL;
    }
    char *path = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&path, &size);
    if (out == NULL) {
        fclose(in);
        snprintf(start_error, sizeof start_error, "out of memory");
        return NULL;
    }
    char line[PATH_MAX];
    const char *separator = "";
    while (fgets(line, sizeof line, in) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (line[0] == '/')
            fprintf(out, "%s%s", separator, line);
        else
            fprintf(out, "%s%s/%s", separator, folder, line);
        separator = ":";
    }
    fclose(in);
    fclose(out);
    return path;
}

/* Start Python with python_path in front of sys.path, then let cffi load the Python half. cffi
   would start Python itself, but too late for the path: its module imports _cffi_backend (from
   the virtualenv) before any of our Python code runs. */
static void start_python(void)
{
    python_path = find_python_path();
    if (python_path == NULL) {
        start_failed = 1;
        return;
    }
    /* libpython's symbols must be global for Python's extension modules, even if the firmware
       dlopen()ed this library with RTLD_LOCAL */
    dlopen(OCTC_LIBPYTHON, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
    if (!Py_IsInitialized()) { /* else the host started it: embedded.py adds python_path */
        PyConfig config;
        PyConfig_InitPythonConfig(&config);
        config.install_signal_handlers = 0; /* the firmware keeps its own signal handlers */
        config.site_import = 0;             /* no site-packages of the base installation */
        PyStatus status = PyConfig_SetBytesString(&config, &config.pythonpath_env, python_path);
        /* the standard library of the libpython we link, not of whichever python3 is on PATH */
        if (!PyStatus_Exception(status) && getenv("PYTHONHOME") == NULL)
            status = PyConfig_SetBytesString(&config, &config.home, OCTC_PYTHON_HOME);
        if (!PyStatus_Exception(status))
            status = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(status)) {
            snprintf(start_error, sizeof start_error, "Python could not start: %s",
                     status.err_msg != NULL ? status.err_msg : "no reason given");
            start_failed = 1;
            return;
        }
        PyEval_SaveThread(); /* release the GIL, as cffi does when it starts Python */
    }
    if (cffi_start_python() != 0) {
        if (start_error[0] == '\0')
            snprintf(start_error, sizeof start_error, "the embedded Python could not load the library's "
                     "Python code (cffi; traceback on stderr)");
        start_failed = 1;
    }
}

/* Start Python on the first call; afterwards report a failed start on every call. */
static int python_ready(void)
{
    pthread_once(&start_once, start_python);
    if (start_failed)
        fail(OCTC_PYTHON_INIT_FAILED, "%s; python path %s (from %s)", start_error,
             python_path != NULL ? python_path : "unknown", python_path_origin);
    return !start_failed;
}

static void clear_result(octc_result *result)
{
    memset(result, 0, sizeof *result);
    result->label = OCTC_CLASS_NONE;
    for (int i = 0; i < OCTC_N_CLASSES; i++)
        result->probabilities[i] = NAN;
}

static size_t dtype_size(octc_dtype dtype)
{
    switch (dtype) {
    case OCTC_UINT8: return 1;
    case OCTC_UINT16: return 2;
    case OCTC_FLOAT32: return 4;
    }
    return 0;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

CFFI_DLLEXPORT octc_status octc_open(const char *bundle_path, const char *backend_name,
                                     octc_classifier **out_handle)
{
    last_error[0] = '\0';
    if (out_handle != NULL)
        *out_handle = NULL;
    if (!python_ready())
        return OCTC_PYTHON_INIT_FAILED;
    const char *null = bundle_path == NULL ? "bundle_path" : out_handle == NULL ? "out_handle" : NULL;
    if (null != NULL)
        return fail(OCTC_NULL_POINTER, "octc_open: %s is NULL", null);
    uint64_t handle = 0;
    octc_status status = _octc_py_open(bundle_path, backend_name != NULL ? backend_name : "auto", &handle);
    if (status == OCTC_OK)
        *out_handle = (octc_classifier *)(uintptr_t)handle;
    return status;
}

CFFI_DLLEXPORT octc_status octc_classify(octc_classifier *handle, const void *voxels, octc_dtype dtype,
                                         int64_t n_bscans, int64_t depth, int64_t n_ascans,
                                         const double spacing_mm[3], const char *laterality,
                                         octc_result *out_result)
{
    double start_ms = now_ms();
    last_error[0] = '\0';
    if (out_result != NULL)
        clear_result(out_result);
    if (!python_ready())
        return OCTC_PYTHON_INIT_FAILED;
    const char *null = handle == NULL       ? "handle"
                       : voxels == NULL     ? "voxels"
                       : spacing_mm == NULL ? "spacing_mm"
                       : laterality == NULL ? "laterality"
                       : out_result == NULL ? "out_result"
                                            : NULL;
    if (null != NULL)
        return fail(OCTC_NULL_POINTER, "octc_classify: %s is NULL", null);
    size_t item_size = dtype_size(dtype);
    if (item_size == 0)
        return fail(OCTC_UNKNOWN_DTYPE, "octc_classify: dtype %d is unknown: use OCTC_UINT8, OCTC_UINT16 or "
                    "OCTC_FLOAT32", (int)dtype);
    if (n_bscans <= 0 || depth <= 0 || n_ascans <= 0)
        return fail(OCTC_BAD_DIMENSIONS, "octc_classify: dimensions (n_bscans %lld, depth %lld, n_ascans "
                    "%lld) must all be positive", (long long)n_bscans, (long long)depth, (long long)n_ascans);
    int64_t n_bytes;
    if (__builtin_mul_overflow(n_bscans, depth, &n_bytes)
        || __builtin_mul_overflow(n_bytes, n_ascans, &n_bytes)
        || __builtin_mul_overflow(n_bytes, (int64_t)item_size, &n_bytes))
        return fail(OCTC_BAD_DIMENSIONS, "octc_classify: dimensions (%lld, %lld, %lld) give more bytes than "
                    "memory can hold", (long long)n_bscans, (long long)depth, (long long)n_ascans);
    octc_status status = _octc_py_classify((uint64_t)(uintptr_t)handle, voxels, dtype, n_bscans, depth,
                                           n_ascans, spacing_mm, laterality, out_result);
    if (status != OCTC_OK)
        clear_result(out_result);
    else
        out_result->latency_ms = now_ms() - start_ms;
    return status;
}

CFFI_DLLEXPORT octc_status octc_close(octc_classifier *handle)
{
    last_error[0] = '\0';
    if (!python_ready())
        return OCTC_PYTHON_INIT_FAILED;
    if (handle == NULL)
        return fail(OCTC_NULL_POINTER, "octc_close: handle is NULL");
    return _octc_py_close((uint64_t)(uintptr_t)handle);
}

CFFI_DLLEXPORT const char *octc_last_error(void)
{
    return last_error;
}

CFFI_DLLEXPORT const char *octc_status_name(octc_status status)
{
    switch (status) {
    case OCTC_OK: return "OCTC_OK";
    case OCTC_INVALID_ARGUMENT: return "OCTC_INVALID_ARGUMENT";
    case OCTC_NULL_POINTER: return "OCTC_NULL_POINTER";
    case OCTC_BAD_DIMENSIONS: return "OCTC_BAD_DIMENSIONS";
    case OCTC_UNKNOWN_DTYPE: return "OCTC_UNKNOWN_DTYPE";
    case OCTC_BUNDLE_ERROR: return "OCTC_BUNDLE_ERROR";
    case OCTC_BACKEND_UNAVAILABLE: return "OCTC_BACKEND_UNAVAILABLE";
    case OCTC_PYTHON_INIT_FAILED: return "OCTC_PYTHON_INIT_FAILED";
    case OCTC_CLOSED_HANDLE: return "OCTC_CLOSED_HANDLE";
    case OCTC_INTERNAL: return "OCTC_INTERNAL";
    }
    return "unknown status";
}

CFFI_DLLEXPORT const char *octc_version(void)
{
    return "octclassify " OCTC_SDK_VERSION;
}
