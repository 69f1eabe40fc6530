/*
 * The C half of liboctclassify: the exported octc_* functions (octclassify.h).
 *
 * Each function checks its arguments in C first (no Python is started for a NULL pointer, a bad
 * dimension, a buffer of the wrong size or an empty string), then, on the first call that needs
 * it, starts an isolated embedded Python with CPython's documented embedding API (PyPreConfig and
 * PyConfig, PEP 587) from the runtime folder next to this library, and calls the Python half,
 * octclassify_embedded.py, with the GIL taken through PyGILState_Ensure. The Python half answers
 * (status, message, value) and never raises.
 *
 * The runtime folder, <folder of this library>/octclassify (bindings/deploy.py writes it):
 *     libpython3.X.so.1.0   found through this library's RPATH $ORIGIN/octclassify
 *     lib/python3.X/        standard library and lib-dynload
 *     site-packages/        numpy, scipy, onnxruntime, pydicom, the SDK, octclassify_embedded.py
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "octclassify.h"

#define OCTC_EXPORT __attribute__((visibility("default")))
#define RUNTIME_FOLDER "octclassify"
#define EMBEDDED_MODULE "octclassify_embedded"
#define STDLIB "lib/python" Py_STRINGIFY(PY_MAJOR_VERSION) "." Py_STRINGIFY(PY_MINOR_VERSION)
#define VERSION_TEXT Py_STRINGIFY(OCTC_VERSION_MAJOR) "." Py_STRINGIFY(OCTC_VERSION_MINOR) "." \
    Py_STRINGIFY(OCTC_VERSION_PATCH)
#define MESSAGE_CHARS 2048
#define MAX_OPTIONS_BYTES 4096 /* a larger struct_size is garbage, not a later version */

_Static_assert(sizeof(int) == sizeof(int32_t), "the Python half's int fields are the header's int32_t");

static _Thread_local char last_error[MESSAGE_CHARS];

static pthread_once_t start_once = PTHREAD_ONCE_INIT;
static int start_requested;        /* set (atomically) before the start: no handle exists before */
static int start_failed;
static char start_error[MESSAGE_CHARS];
static PyObject *embedded;         /* the Python half, kept for the life of the process */

static octc_status fail(octc_status status, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    return status;
}

/* ------------------------------------------------------------------------------------------------
   The builtin module _octclassify: the header's constants and log() for the Python half. */

static PyObject *log_message(PyObject *self, PyObject *args)
{
    unsigned long long function, user_data;
    int level;
    const char *message;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKis", &function, &user_data, &level, &message))
        return NULL;
    ((octc_log_function)(uintptr_t)function)((void *)(uintptr_t)user_data, level, message);
    Py_RETURN_NONE;
}

static PyMethodDef module_functions[] = {
    {"log", log_message, METH_VARARGS, "log(function, user_data, level, message): call an octc_log_function"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_octclassify", "Constants of octclassify.h and the logger call.", -1,
    module_functions, NULL, NULL, NULL, NULL};

static PyObject *make_module(void)
{
    static const struct { const char *name; long value; } constants[] = {
#define CONSTANT(name) {#name, name}
        CONSTANT(OCTC_OK), CONSTANT(OCTC_INVALID_ARGUMENT), CONSTANT(OCTC_NULL_POINTER),
        CONSTANT(OCTC_BAD_DIMENSIONS), CONSTANT(OCTC_UNKNOWN_DTYPE), CONSTANT(OCTC_BUNDLE_ERROR),
        CONSTANT(OCTC_BACKEND_UNAVAILABLE), CONSTANT(OCTC_PYTHON_INIT_FAILED), CONSTANT(OCTC_CLOSED_HANDLE),
        CONSTANT(OCTC_INTERNAL), CONSTANT(OCTC_SIZE_MISMATCH), CONSTANT(OCTC_FILE_ERROR),
        CONSTANT(OCTC_OUT_OF_MEMORY), CONSTANT(OCTC_UINT8), CONSTANT(OCTC_UINT16), CONSTANT(OCTC_FLOAT32),
        CONSTANT(OCTC_CLASS_NONE), CONSTANT(OCTC_LABEL_CHARS), CONSTANT(OCTC_REASON_CHARS),
        CONSTANT(OCTC_BUNDLE_ID_CHARS), CONSTANT(OCTC_SIGNER_CHARS), CONSTANT(OCTC_NAME_CHARS),
#undef CONSTANT
    };
    PyObject *module = PyModule_Create(&module_definition);
    for (size_t i = 0; module != NULL && i < sizeof constants / sizeof constants[0]; i++)
        if (PyModule_AddIntConstant(module, constants[i].name, constants[i].value) < 0)
            Py_CLEAR(module);
    return module;
}

/* ------------------------------------------------------------------------------------------------
   Start-up, once per process. */

/* "Type: message" of the pending Python exception, which is cleared. */
static void exception_text(char *text, size_t size)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    PyObject *message = value != NULL ? PyObject_Str(value) : NULL;
    const char *utf8 = message != NULL ? PyUnicode_AsUTF8(message) : NULL;
    snprintf(text, size, "%s: %s", type != NULL ? ((PyTypeObject *)type)->tp_name : "error",
             utf8 != NULL ? utf8 : "(no message)");
    PyErr_Clear();
    Py_XDECREF(message);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
}

static int append_path(PyConfig *config, const char *home, const char *relative)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", home, relative);
    wchar_t *wide = Py_DecodeLocale(path, NULL);
    if (wide == NULL)
        return 0;
    PyStatus status = PyWideStringList_Append(&config->module_search_paths, wide);
    PyMem_RawFree(wide);
    return !PyStatus_Exception(status);
}

/* An isolated interpreter (PEP 587): no PYTHON* variable read, no locale change, no signal
   handler, no C stdio change, no site import, no faulthandler, no bytecode written; sys.path is
   the runtime folder only; strings are UTF-8 whatever the locale. */
static const char *initialize(const char *library, const char *home)
{
    PyPreConfig preconfig;
    PyPreConfig_InitIsolatedConfig(&preconfig);
    preconfig.utf8_mode = 1;
    PyStatus status = Py_PreInitialize(&preconfig);
    if (PyStatus_Exception(status))
        return status.err_msg;
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.site_import = 0;
    config.write_bytecode = 0;
    config.module_search_paths_set = 1;
    status = PyConfig_SetBytesString(&config, &config.home, home);
    if (!PyStatus_Exception(status)) /* sys.executable: this library, never a python3 on PATH */
        status = PyConfig_SetBytesString(&config, &config.program_name, library);
    if (!PyStatus_Exception(status)
        && !(append_path(&config, home, "site-packages") && append_path(&config, home, STDLIB)
             && append_path(&config, home, STDLIB "/lib-dynload")))
        status = PyStatus_NoMemory();
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    return PyStatus_Exception(status) ? (status.err_msg != NULL ? status.err_msg : "no reason given") : NULL;
}

/* This library's path into library and its folder into folder; 0 if they cannot be found. */
static int library_folder(char *library, char *folder)
{
    Dl_info info;
    if (dladdr((void *)&library_folder, &info) == 0 || realpath(info.dli_fname, library) == NULL)
        return 0;
    strcpy(folder, library);
    *strrchr(folder, '/') = '\0';
    return 1;
}

static void start_failure(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(start_error, sizeof start_error, format, args);
    va_end(args);
    start_failed = 1;
}

static void start(void)
{
    char library[PATH_MAX], home[PATH_MAX], path[PATH_MAX + 64], python_used[PATH_MAX], python_shipped[PATH_MAX];
    char shipped_name[PATH_MAX + 64];
    Dl_info python;
    struct stat info;
    if (Py_IsInitialized()) {
        start_failure("this process already runs Python, and liboctclassify needs an interpreter of its own: "
                      "from Python, use sdk.Classifier");
        return;
    }
    if (!library_folder(library, home)) {
        start_failure("cannot find the file of liboctclassify (dladdr)");
        return;
    }
    strncat(home, "/" RUNTIME_FOLDER, sizeof home - strlen(home) - 1);
    snprintf(path, sizeof path, "%s/" STDLIB "/encodings", home);
    snprintf(shipped_name, sizeof shipped_name, "%s/" OCTC_LIBPYTHON, home);
    if (stat(path, &info) != 0 || realpath(shipped_name, python_shipped) == NULL) {
        start_failure("the runtime folder %s is missing or incomplete (no %s or no " STDLIB "/encodings): "
                      "install it with the library (cmake --install) or build the deploy target",
                      home, OCTC_LIBPYTHON);
        return;
    }
    python_used[0] = '\0';
    if (dladdr((void *)&Py_InitializeFromConfig, &python) == 0 || realpath(python.dli_fname, python_used) == NULL
        || strcmp(python_used, python_shipped) != 0) {
        start_failure("the process uses the Python library %s, not the runtime's %s: another libpython of the "
                      "same name was loaded first (LD_PRELOAD, or the program links one)",
                      python_used, python_shipped);
        return;
    }
    /* extension modules take libpython's symbols from the global scope, even if the firmware
       dlopen()ed this library with RTLD_LOCAL */
    dlopen(python_used, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
    PyImport_AppendInittab("_octclassify", make_module);
    const char *error = initialize(library, home);
    if (error != NULL) {
        start_failure("Python could not start from %s: %s", home, error);
        return;
    }
    /* CPython puts its own SIGINT handler in place when the _signal module first loads, even with
       install_signal_handlers = 0 (cpython#111400): load it now and put the firmware's back. */
    struct sigaction sigint;
    sigaction(SIGINT, NULL, &sigint);
    PyObject *signal_module = PyImport_ImportModule("_signal");
    sigaction(SIGINT, &sigint, NULL);
    embedded = signal_module != NULL ? PyImport_ImportModule(EMBEDDED_MODULE) : NULL;
    if (embedded == NULL) {
        char text[MESSAGE_CHARS - 128];
        exception_text(text, sizeof text);
        start_failure("the embedded Python could not import the SDK from %s/site-packages (%s)", home, text);
    }
    Py_XDECREF(signal_module);
    PyEval_SaveThread(); /* release the GIL: every call takes it with PyGILState_Ensure */
}

/* Start Python on the first call; afterwards report a failed start on every call. */
static int python_ready(void)
{
    __atomic_store_n(&start_requested, 1, __ATOMIC_SEQ_CST);
    pthread_once(&start_once, start);
    if (start_failed)
        fail(OCTC_PYTHON_INIT_FAILED, "%s", start_error);
    return !start_failed;
}

/* Before any octc_open has run, no handle exists: a handle is refused without starting Python. */
static int no_handle_yet(const char *function, const octc_classifier *handle)
{
    if (__atomic_load_n(&start_requested, __ATOMIC_SEQ_CST))
        return 0;
    fail(OCTC_INVALID_ARGUMENT, "%s: %p is not a handle from octc_open (none was opened)", function,
         (const void *)handle);
    return 1;
}

/* Reads the value of a successful call into out, under the GIL; 0 (a Python exception set) if the
   value is malformed. */
typedef int (*take_function)(PyObject *value, void *out);

/* With the GIL held: call the Python half's function with arguments (a new reference, or NULL
   with an exception set), return its status and set the message on failure; on success take
   reads its value into out. */
static octc_status call_python(const char *function, PyObject *arguments, take_function take, void *out)
{
    PyObject *callable = arguments != NULL ? PyObject_GetAttrString(embedded, function) : NULL;
    PyObject *answer = callable != NULL ? PyObject_CallObject(callable, arguments) : NULL;
    int status = OCTC_INTERNAL;
    const char *message = "";
    PyObject *value = NULL;
    if (answer == NULL || !PyArg_ParseTuple(answer, "isO", &status, &message, &value)
        || (status == OCTC_OK && take != NULL && !take(value, out))) {
        char text[MESSAGE_CHARS - 64];
        exception_text(text, sizeof text);
        status = fail(OCTC_INTERNAL, "octc_%s: unexpected failure of the Python half (%s)", function, text);
    } else if (status != OCTC_OK) {
        fail(status, "%s", message);
    }
    Py_XDECREF(answer);
    Py_XDECREF(callable);
    Py_XDECREF(arguments);
    return status;
}

/* ------------------------------------------------------------------------------------------------
   The API. */

static const char *empty_or_too_long(const char *text)
{
    if (text == NULL)
        return NULL;
    if (text[0] == '\0')
        return "is an empty string";
    if (strnlen(text, PATH_MAX) >= PATH_MAX)
        return "is longer than PATH_MAX (" Py_STRINGIFY(PATH_MAX) " bytes)";
    return NULL;
}

OCTC_EXPORT void octc_options_init(octc_options *options)
{
    if (options == NULL)
        return;
    memset(options, 0, sizeof *options);
    options->struct_size = (uint32_t)sizeof *options;
}

/* *out: the caller's options as this library's octc_options (defaults where given is NULL). */
static octc_status read_options(const octc_options *given, octc_options *out)
{
    octc_options_init(out);
    if (given == NULL)
        return OCTC_OK;
    if (given->struct_size < sizeof *out || given->struct_size > MAX_OPTIONS_BYTES)
        return fail(OCTC_INVALID_ARGUMENT, "octc_open_with_options: options.struct_size is %u, not the size of "
                    "an octc_options (this library's has %zu bytes): fill the options with octc_options_init",
                    (unsigned)given->struct_size, sizeof *out);
    const unsigned char *tail = (const unsigned char *)given + sizeof *out;
    for (size_t i = 0; i < given->struct_size - sizeof *out; i++)
        if (tail[i] != 0)
            return fail(OCTC_INVALID_ARGUMENT, "octc_open_with_options: options set a field that this "
                        "library (octclassify " VERSION_TEXT ") does not know (byte %zu of %u)",
                        sizeof *out + i, (unsigned)given->struct_size);
    memcpy(out, given, sizeof *out);
    out->struct_size = (uint32_t)sizeof *out;
    if (out->threads < 0)
        return fail(OCTC_INVALID_ARGUMENT, "octc_open_with_options: options.threads is %d: use 0 (every "
                    "core) or a positive number", (int)out->threads);
    const struct { const char *name, *value; } texts[] = {
        {"backend", out->backend}, {"precision", out->precision},
        {"engine_cache_dir", out->engine_cache_dir}, {"trusted_keys", out->trusted_keys}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *problem = empty_or_too_long(texts[i].value);
        if (problem != NULL)
            return fail(OCTC_INVALID_ARGUMENT, "octc_open_with_options: options.%s %s: use NULL for the "
                        "default", texts[i].name, problem);
    }
    return OCTC_OK;
}

static int take_handle(PyObject *value, void *out)
{
    unsigned long long number = PyLong_AsUnsignedLongLong(value);
    *(octc_classifier **)out = (octc_classifier *)(uintptr_t)number;
    return !PyErr_Occurred();
}

OCTC_EXPORT octc_status octc_open_with_options(const char *bundle_path, const octc_options *options,
                                               octc_classifier **out_handle)
{
    last_error[0] = '\0';
    if (out_handle == NULL)
        return fail(OCTC_NULL_POINTER, "octc_open: out_handle is NULL");
    *out_handle = NULL;
    if (bundle_path == NULL)
        return fail(OCTC_NULL_POINTER, "octc_open: bundle_path is NULL");
    const char *problem = empty_or_too_long(bundle_path);
    if (problem != NULL)
        return fail(OCTC_INVALID_ARGUMENT, "octc_open: bundle_path %s: give the bundle folder", problem);
    octc_options o;
    octc_status status = read_options(options, &o);
    if (status != OCTC_OK || !python_ready())
        return status != OCTC_OK ? status : OCTC_PYTHON_INIT_FAILED;
    PyGILState_STATE gil = PyGILState_Ensure();
    status = call_python("open", Py_BuildValue("(yyyyyiKK)", bundle_path, o.backend, o.precision,
                                               o.engine_cache_dir, o.trusted_keys, (int)o.threads,
                                               (unsigned long long)(uintptr_t)o.logger,
                                               (unsigned long long)(uintptr_t)o.logger_user_data),
                         take_handle, out_handle);
    PyGILState_Release(gil);
    return status;
}

OCTC_EXPORT octc_status octc_open(const char *bundle_path, const char *backend_name, octc_classifier **out_handle)
{
    octc_options options;
    octc_options_init(&options);
    options.backend = backend_name;
    return octc_open_with_options(bundle_path, &options, out_handle);
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

/* The arguments of octc_classify that C can check. */
static octc_status check_classify(const void *handle, const void *voxels, size_t voxels_bytes, octc_dtype dtype,
                                  int64_t n_bscans, int64_t depth, int64_t n_ascans, const double *spacing_mm,
                                  const char *laterality, const octc_result *out_result)
{
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
    int64_t n_voxels;
    if (__builtin_mul_overflow(n_bscans, depth, &n_voxels) || __builtin_mul_overflow(n_voxels, n_ascans, &n_voxels)
        || n_voxels > OCTC_MAX_VOXELS)
        return fail(OCTC_BAD_DIMENSIONS, "octc_classify: dimensions (%lld, %lld, %lld) give more than "
                    "OCTC_MAX_VOXELS (%lld) voxels", (long long)n_bscans, (long long)depth, (long long)n_ascans,
                    (long long)OCTC_MAX_VOXELS);
    if ((uint64_t)voxels_bytes != (uint64_t)n_voxels * item_size)
        return fail(OCTC_SIZE_MISMATCH, "octc_classify: voxels_bytes is %zu, but %lld x %lld x %lld voxels of %zu "
                    "bytes take %llu", voxels_bytes, (long long)n_bscans, (long long)depth, (long long)n_ascans,
                    item_size, (unsigned long long)n_voxels * item_size);
    if (laterality[0] == '\0')
        return fail(OCTC_INVALID_ARGUMENT, "octc_classify: laterality is an empty string: use \"OD\" or \"OS\"");
    return OCTC_OK;
}

static void copy_text(char *field, size_t size, const char *text)
{
    snprintf(field, size, "%s", text);
}

static int take_result(PyObject *value, void *out)
{
    octc_result *r = out;
    const char *label_name, *reason, *bundle_id, *signer, *backend, *precision, *sdk_version;
    if (!PyArg_ParseTuple(value, "iiy(ddddd)yyyyyy", (int *)&r->gradable, (int *)&r->label, &label_name,
                          &r->probabilities[0], &r->probabilities[1], &r->probabilities[2], &r->probabilities[3],
                          &r->probabilities[4], &reason, &bundle_id, &signer, &backend, &precision, &sdk_version))
        return 0;
    copy_text(r->label_name, sizeof r->label_name, label_name);
    copy_text(r->reason, sizeof r->reason, reason);
    copy_text(r->bundle_id, sizeof r->bundle_id, bundle_id);
    copy_text(r->signer, sizeof r->signer, signer);
    copy_text(r->backend, sizeof r->backend, backend);
    copy_text(r->precision, sizeof r->precision, precision);
    copy_text(r->sdk_version, sizeof r->sdk_version, sdk_version);
    return 1;
}

OCTC_EXPORT octc_status octc_classify(octc_classifier *handle, const void *voxels, size_t voxels_bytes,
                                      octc_dtype dtype, int64_t n_bscans, int64_t depth, int64_t n_ascans,
                                      const double spacing_mm[3], const char *laterality, octc_result *out_result)
{
    double start_ms = now_ms();
    last_error[0] = '\0';
    if (out_result != NULL)
        clear_result(out_result);
    octc_status status = check_classify(handle, voxels, voxels_bytes, dtype, n_bscans, depth, n_ascans, spacing_mm,
                                        laterality, out_result);
    if (status != OCTC_OK || no_handle_yet("octc_classify", handle))
        return status != OCTC_OK ? status : OCTC_INVALID_ARGUMENT;
    if (!python_ready())
        return OCTC_PYTHON_INIT_FAILED;
    PyGILState_STATE gil = PyGILState_Ensure();
    /* the Python half reads the caller's buffer in place and releases the view before it returns */
    PyObject *view = PyMemoryView_FromMemory((char *)voxels, (Py_ssize_t)voxels_bytes, PyBUF_READ);
    status = call_python("classify", view == NULL ? NULL : Py_BuildValue(
                             "(KOi(LLL)(ddd)y)", (unsigned long long)(uintptr_t)handle, view, (int)dtype,
                             (long long)n_bscans, (long long)depth, (long long)n_ascans, spacing_mm[0],
                             spacing_mm[1], spacing_mm[2], laterality),
                         take_result, out_result);
    Py_XDECREF(view);
    PyGILState_Release(gil);
    if (status != OCTC_OK)
        clear_result(out_result);
    else
        out_result->latency_ms = now_ms() - start_ms;
    return status;
}

OCTC_EXPORT octc_status octc_close(octc_classifier *handle)
{
    last_error[0] = '\0';
    if (handle == NULL)
        return fail(OCTC_NULL_POINTER, "octc_close: handle is NULL");
    if (no_handle_yet("octc_close", handle))
        return OCTC_INVALID_ARGUMENT;
    if (!python_ready())
        return OCTC_PYTHON_INIT_FAILED;
    PyGILState_STATE gil = PyGILState_Ensure();
    octc_status status = call_python("close", Py_BuildValue("(K)", (unsigned long long)(uintptr_t)handle), NULL,
                                     NULL);
    PyGILState_Release(gil);
    return status;
}

OCTC_EXPORT const char *octc_last_error(void)
{
    return last_error;
}

OCTC_EXPORT const char *octc_status_name(octc_status status)
{
    static const char *const names[] = {
        "OCTC_OK", "OCTC_INVALID_ARGUMENT", "OCTC_NULL_POINTER", "OCTC_BAD_DIMENSIONS", "OCTC_UNKNOWN_DTYPE",
        "OCTC_BUNDLE_ERROR", "OCTC_BACKEND_UNAVAILABLE", "OCTC_PYTHON_INIT_FAILED", "OCTC_CLOSED_HANDLE",
        "OCTC_INTERNAL", "OCTC_SIZE_MISMATCH", "OCTC_FILE_ERROR", "OCTC_OUT_OF_MEMORY"};
    if (status < 0 || (size_t)status >= sizeof names / sizeof names[0])
        return "unknown status";
    return names[status];
}

OCTC_EXPORT const char *octc_version(void)
{
    return "octclassify " VERSION_TEXT;
}

OCTC_EXPORT uint32_t octc_api_version(void)
{
    return OCTC_API_VERSION;
}
