/* Every misuse returns its own status with a message, and the process keeps running: NULL pointers,
   zero or negative dimensions, unknown dtypes, a missing bundle, an unknown backend, bad laterality
   or spacing, a pointer that is no handle, a closed handle. Usage: test_errors FIXTURES_DIR */
#include <stdint.h>

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
    printf("%-40s %-26s %s\n", what, octc_status_name(status), message);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    fixture fixtures[MAX_FIXTURES];
    load_fixtures(argv[1], fixtures);
    const fixture *f = &fixtures[0];
    const int64_t *s = f->shape;
    char bundle[1024];
    snprintf(bundle, sizeof bundle, "%s/bundle", argv[1]);
    CHECK(strncmp(octc_version(), "octclassify ", 12) == 0, "version \"%s\"", octc_version());

    octc_classifier *clf = (octc_classifier *)1;
    expect(octc_open(NULL, "onnxruntime", &clf), OCTC_NULL_POINTER, "open: NULL bundle path");
    CHECK(clf == NULL, "a failed open leaves the handle set");
    expect(octc_open(bundle, "onnxruntime", NULL), OCTC_NULL_POINTER, "open: NULL out handle");
    expect(octc_open("/no/such/bundle", "onnxruntime", &clf), OCTC_BUNDLE_ERROR, "open: missing bundle");
    expect(octc_open(argv[1], "onnxruntime", &clf), OCTC_BUNDLE_ERROR, "open: folder that is no bundle");
    expect(octc_open(bundle, "no-such-backend", &clf), OCTC_INVALID_ARGUMENT, "open: unknown backend");
    expect(octc_open(bundle, "onnxruntime", &clf), OCTC_OK, "open");

    octc_result r;
    const double bad_spacing[3] = {f->spacing_mm[0], -1.0, f->spacing_mm[2]};
    uint8_t tiny[8] = {0};
    expect(octc_classify(NULL, f->voxels, f->dtype, s[0], s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_NULL_POINTER, "classify: NULL handle");
    expect(octc_classify(clf, NULL, f->dtype, s[0], s[1], s[2], f->spacing_mm, "OD", &r), OCTC_NULL_POINTER,
           "classify: NULL voxels");
    expect(octc_classify(clf, f->voxels, f->dtype, s[0], s[1], s[2], NULL, "OD", &r), OCTC_NULL_POINTER,
           "classify: NULL spacing");
    expect(octc_classify(clf, f->voxels, f->dtype, s[0], s[1], s[2], f->spacing_mm, NULL, &r),
           OCTC_NULL_POINTER, "classify: NULL laterality");
    expect(octc_classify(clf, f->voxels, f->dtype, s[0], s[1], s[2], f->spacing_mm, "OD", NULL),
           OCTC_NULL_POINTER, "classify: NULL result");
    expect(octc_classify(clf, f->voxels, f->dtype, 0, s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: zero n_bscans");
    expect(octc_classify(clf, f->voxels, f->dtype, s[0], -s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: negative depth");
    expect(octc_classify(clf, f->voxels, f->dtype, s[0], s[1], -1, f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: negative n_ascans");
    expect(octc_classify(clf, f->voxels, f->dtype, INT64_MAX, 2, 2, f->spacing_mm, "OD", &r),
           OCTC_BAD_DIMENSIONS, "classify: overflowing dimensions");
    expect(octc_classify(clf, f->voxels, (octc_dtype)0, s[0], s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_UNKNOWN_DTYPE, "classify: dtype 0");
    expect(octc_classify(clf, f->voxels, (octc_dtype)99, s[0], s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_UNKNOWN_DTYPE, "classify: dtype 99");
    expect(octc_classify(clf, tiny, OCTC_UINT8, 2, 2, 2, f->spacing_mm, "OD", &r), OCTC_INVALID_ARGUMENT,
           "classify: too few samples");
    expect(octc_classify(clf, f->voxels, f->dtype, s[0], s[1], s[2], f->spacing_mm, "XX", &r),
           OCTC_INVALID_ARGUMENT, "classify: unknown laterality");
    expect(octc_classify(clf, f->voxels, f->dtype, s[0], s[1], s[2], bad_spacing, "OD", &r),
           OCTC_INVALID_ARGUMENT, "classify: negative spacing");
    octc_classifier *no_handle = (octc_classifier *)(uintptr_t)0xdead;
    expect(octc_classify(no_handle, f->voxels, f->dtype, s[0], s[1], s[2], f->spacing_mm, "OD", &r),
           OCTC_INVALID_ARGUMENT, "classify: pointer that is no handle");
    CHECK(r.label == OCTC_CLASS_NONE && r.gradable == 0, "a failed classify leaves a result");

    expect(classify_fixture(clf, f, &r), OCTC_OK, "classify after the errors");
    CHECK(strcmp(r.label_name, f->label) == 0, "label %s, expected %s", r.label_name, f->label);

    expect(octc_close(NULL), OCTC_NULL_POINTER, "close: NULL handle");
    expect(octc_close(clf), OCTC_OK, "close");
    expect(classify_fixture(clf, f, &r), OCTC_CLOSED_HANDLE, "classify: closed handle");
    expect(octc_close(clf), OCTC_CLOSED_HANDLE, "close: closed handle");

    expect(octc_open(bundle, NULL, &clf), OCTC_OK, "open: NULL backend (auto) after all that");
    expect(octc_close(clf), OCTC_OK, "close");
    return finish("test_errors");
}
