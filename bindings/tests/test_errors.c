/* Every misuse returns its own status with a message, and the process keeps running: NULL pointers,
   empty strings, a path longer than PATH_MAX, zero, negative or too many dimensions, a buffer of
   the wrong size, unknown dtypes, a missing bundle, an unknown backend, bad laterality, spacing or
   voxels, a pointer that is no handle, a closed handle. A blank volume is ungradable, not an error.
   Calls that need no Python (closing NULL, a handle before any open) do not start it.
   Usage: test_errors FIXTURES_DIR */
#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>
#include <time.h>

#include "common.h"

static void expect(octc_status status, octc_status expected, const char *what)
{
    const char *message = octc_last_error();
    CHECK(status == expected, "%s: %s, expected %s (%s)", what, octc_status_name(status),
          octc_status_name(expected), message);
    if (expected == OCTC_OK)
        CHECK(message[0] == '\0', "%s: succeeded but the message is \"%s\"", what, message);
    else
        CHECK(message[0] != '\0', "%s: %s without a message", what, octc_status_name(status));
    printf("%-44s %-26s %.150s\n", what, octc_status_name(status), message);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    int (*python_started)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    CHECK(python_started != NULL && !python_started(), "Python runs before the first call");
    double start_ms = now_ms();
    expect(octc_close(NULL), OCTC_NULL_POINTER, "close: NULL handle, first call");
    expect(octc_close((octc_classifier *)1), OCTC_INVALID_ARGUMENT, "close: a handle before any open");
    octc_result r;
    uint8_t tiny[8] = {0};
    const double spacing_mm[3] = {0.1, 0.004, 0.1};
    expect(octc_classify((octc_classifier *)1, tiny, sizeof tiny, OCTC_UINT8, 2, 2, 2, spacing_mm, "OD", &r),
           OCTC_INVALID_ARGUMENT, "classify: a handle before any open");
    CHECK(!python_started(), "a call that needs no Python started it");
    CHECK(now_ms() - start_ms < 50.0, "calls that need no Python took %.1f ms", now_ms() - start_ms);

    fixture fixtures[MAX_FIXTURES];
    fixtures_of_arguments(argc, argv, fixtures);
    const fixture *f = &fixtures[0];
    const int64_t *s = f->shape;
    char bundle[1024], long_path[PATH_MAX + 100];
    snprintf(bundle, sizeof bundle, "%s/bundle", argv[1]);
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    CHECK(strncmp(octc_version(), "octclassify ", 12) == 0, "version \"%s\"", octc_version());

    octc_classifier *clf = (octc_classifier *)1;
    expect(octc_open(NULL, "onnxruntime", &clf), OCTC_NULL_POINTER, "open: NULL bundle path");
    CHECK(clf == NULL, "a failed open leaves the handle set");
    expect(octc_open(bundle, "onnxruntime", NULL), OCTC_NULL_POINTER, "open: NULL out handle");
    expect(octc_open("", "onnxruntime", &clf), OCTC_INVALID_ARGUMENT, "open: empty bundle path");
    expect(octc_open(long_path, "onnxruntime", &clf), OCTC_INVALID_ARGUMENT, "open: path longer than PATH_MAX");
    expect(octc_open(bundle, "", &clf), OCTC_INVALID_ARGUMENT, "open: empty backend name");
    CHECK(!python_started(), "a refused argument started Python");
    expect(octc_open("/no/such/bundle", "onnxruntime", &clf), OCTC_BUNDLE_ERROR, "open: missing bundle");
    expect(octc_open(argv[1], "onnxruntime", &clf), OCTC_BUNDLE_ERROR, "open: folder that is no bundle");
    expect(octc_open(bundle, "no-such-backend", &clf), OCTC_INVALID_ARGUMENT, "open: unknown backend");
    expect(octc_open(bundle, "onnxruntime", &clf), OCTC_OK, "open");

    const double bad_spacing[3] = {f->spacing_mm[0], -1.0, f->spacing_mm[2]};
    const size_t n = f->n_bytes;
    expect(octc_classify(NULL, f->voxels, n, f->dtype, s[0], s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_NULL_POINTER, "classify: NULL handle");
    expect(octc_classify(clf, NULL, n, f->dtype, s[0], s[1], s[2], f->spacing_mm, "OD", &r), OCTC_NULL_POINTER,
           "classify: NULL voxels");
    expect(octc_classify(clf, f->voxels, n, f->dtype, s[0], s[1], s[2], NULL, "OD", &r), OCTC_NULL_POINTER,
           "classify: NULL spacing");
    expect(octc_classify(clf, f->voxels, n, f->dtype, s[0], s[1], s[2], f->spacing_mm, NULL, &r),
           OCTC_NULL_POINTER, "classify: NULL laterality");
    expect(octc_classify(clf, f->voxels, n, f->dtype, s[0], s[1], s[2], f->spacing_mm, "OD", NULL),
           OCTC_NULL_POINTER, "classify: NULL result");
    expect(octc_classify(clf, f->voxels, n, f->dtype, 0, s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: zero n_bscans");
    expect(octc_classify(clf, f->voxels, n, f->dtype, s[0], -s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: negative depth");
    expect(octc_classify(clf, f->voxels, n, f->dtype, s[0], s[1], -1, f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: negative n_ascans");
    expect(octc_classify(clf, f->voxels, n, f->dtype, INT64_MAX, 2, 2, f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: overflowing dimensions");
    expect(octc_classify(clf, f->voxels, n, f->dtype, 1000000, 1000000, 1000000, f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: 1e6 x 1e6 x 1e6 voxels");
    expect(octc_classify(clf, f->voxels, (size_t)OCTC_MAX_VOXELS + 1, OCTC_UINT8, 1, 1, OCTC_MAX_VOXELS + 1,
                         f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: OCTC_MAX_VOXELS + 1 voxels");
    expect(octc_classify(clf, f->voxels, (size_t)1 << 20, OCTC_UINT16, 512, 496, 512, f->spacing_mm, "OD", &r),
           OCTC_SIZE_MISMATCH, "classify: 512 x 496 x 512 in a 1 MiB buffer");
    expect(octc_classify(clf, f->voxels, n + 1, f->dtype, s[0], s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_SIZE_MISMATCH, "classify: buffer one byte too long");
    expect(octc_classify(clf, f->voxels, n, 0, s[0], s[1], s[2], f->spacing_mm, "OD", &r), OCTC_UNKNOWN_DTYPE,
           "classify: dtype 0");
    expect(octc_classify(clf, f->voxels, n, 99, s[0], s[1], s[2], f->spacing_mm, "OD", &r), OCTC_UNKNOWN_DTYPE,
           "classify: dtype 99");
    expect(octc_classify(clf, tiny, sizeof tiny, OCTC_UINT8, 2, 2, 2, f->spacing_mm, "OD", &r),
           OCTC_INVALID_ARGUMENT, "classify: too few samples");
    expect(octc_classify(clf, f->voxels, n, f->dtype, s[0], s[1], s[2], f->spacing_mm, "XX", &r),
           OCTC_INVALID_ARGUMENT, "classify: unknown laterality");
    expect(octc_classify(clf, f->voxels, n, f->dtype, s[0], s[1], s[2], f->spacing_mm, "", &r),
           OCTC_INVALID_ARGUMENT, "classify: empty laterality");
    expect(octc_classify(clf, f->voxels, n, f->dtype, s[0], s[1], s[2], bad_spacing, "OD", &r),
           OCTC_INVALID_ARGUMENT, "classify: negative spacing");
    octc_classifier *no_handle = (octc_classifier *)(uintptr_t)0xdead;
    expect(octc_classify(no_handle, f->voxels, n, f->dtype, s[0], s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_INVALID_ARGUMENT, "classify: pointer that is no handle");
    CHECK(r.label == OCTC_CLASS_NONE && r.gradable == 0 && isnan(r.probabilities[0]), "a failed classify left a result");

    size_t n_voxels = (size_t)(s[0] * s[1] * s[2]);
    float *nan_volume = calloc(n_voxels, sizeof(float));
    nan_volume[n_voxels / 2] = NAN;
    expect(octc_classify(clf, nan_volume, n_voxels * sizeof(float), OCTC_FLOAT32, s[0], s[1], s[2], f->spacing_mm,
                         "OD", &r),
           OCTC_INVALID_ARGUMENT, "classify: a NaN voxel");
    uint8_t *blank = calloc(n_voxels, 1);
    expect(octc_classify(clf, blank, n_voxels, OCTC_UINT8, s[0], s[1], s[2], f->spacing_mm, "OD", &r), OCTC_OK,
           "classify: blank volume (all zero)");
    CHECK(r.gradable == 0 && r.label == OCTC_CLASS_NONE && r.reason[0] != '\0',
          "blank volume: gradable %d, label %d, reason \"%s\"", r.gradable, r.label, r.reason);
    free(blank);
    free(nan_volume);

    expect(classify_fixture(clf, f, &r), OCTC_OK, "classify after the errors");
    CHECK(strcmp(r.label_name, f->label) == 0, "label %s, expected %s", r.label_name, f->label);

    expect(octc_close(NULL), OCTC_NULL_POINTER, "close: NULL handle");
    expect(octc_close(clf), OCTC_OK, "close");
    expect(classify_fixture(clf, f, &r), OCTC_CLOSED_HANDLE, "classify: closed handle");
    expect(octc_close(clf), OCTC_CLOSED_HANDLE, "close: closed handle");

    expect(octc_open(bundle, NULL, &clf), OCTC_OK, "open: NULL backend (auto) after all that");
    expect(octc_close(clf), OCTC_OK, "close");
    CHECK(strcmp(octc_status_name(OCTC_OUT_OF_MEMORY), "OCTC_OUT_OF_MEMORY") == 0
              && strcmp(octc_status_name(-1), "unknown status") == 0,
          "status names");
    return finish("test_errors");
}
