/* The public structs have the same layout whatever the compiler options: CMakeLists.txt builds
   this test with -fshort-enums, the library without, and the offsets are those of plain fixed-width
   fields. It then runs a classification across that boundary. Usage: test_layout FIXTURES_DIR */
#include <stddef.h>

#include "common.h"

#define EXPECT_OFFSET(type, field, offset)                                                       \
    CHECK(offsetof(type, field) == (offset), #type "." #field " at %zu, expected %zu",               \
          offsetof(type, field), (size_t)(offset))

int main(int argc, char **argv)
{
    CHECK(sizeof(octc_status) == 4 && sizeof(octc_dtype) == 4 && sizeof(octc_class) == 4, "enum-like types");
    EXPECT_OFFSET(octc_result, gradable, 0);
    EXPECT_OFFSET(octc_result, label, 4);
    EXPECT_OFFSET(octc_result, label_name, 8);
    EXPECT_OFFSET(octc_result, probabilities, 16);
    EXPECT_OFFSET(octc_result, reason, 56);
    EXPECT_OFFSET(octc_result, latency_ms, 568);
    EXPECT_OFFSET(octc_result, bundle_id, 576);
    EXPECT_OFFSET(octc_result, signer, 648);
    EXPECT_OFFSET(octc_result, backend, 672);
    EXPECT_OFFSET(octc_result, precision, 688);
    EXPECT_OFFSET(octc_result, sdk_version, 704);
    CHECK(sizeof(octc_result) == 720, "sizeof(octc_result) %zu, expected 720", sizeof(octc_result));
    const size_t p = sizeof(void *);
    EXPECT_OFFSET(octc_options, struct_size, 0);
    EXPECT_OFFSET(octc_options, threads, 4);
    EXPECT_OFFSET(octc_options, backend, 8);
    EXPECT_OFFSET(octc_options, precision, 8 + p);
    EXPECT_OFFSET(octc_options, engine_cache_dir, 8 + 2 * p);
    EXPECT_OFFSET(octc_options, trusted_keys, 8 + 3 * p);
    EXPECT_OFFSET(octc_options, logger, 8 + 4 * p);
    EXPECT_OFFSET(octc_options, logger_user_data, 8 + 5 * p);
    CHECK(sizeof(octc_options) == 8 + 6 * p, "sizeof(octc_options) %zu", sizeof(octc_options));
    CHECK(octc_api_version() == OCTC_API_VERSION, "library API version %#x, header %#x", octc_api_version(),
          OCTC_API_VERSION);
    char version[64];
    snprintf(version, sizeof version, "octclassify %d.%d.%d", OCTC_VERSION_MAJOR, OCTC_VERSION_MINOR,
             OCTC_VERSION_PATCH);
    CHECK(strcmp(octc_version(), version) == 0, "octc_version() %s, header %s", octc_version(), version);

    fixture fixtures[MAX_FIXTURES];
    fixtures_of_arguments(argc, argv, fixtures);
    octc_classifier *clf = open_fixture_bundle(argv[1]);
    octc_result r;
    octc_status status = classify_fixture(clf, &fixtures[0], &r);
    CHECK(status == OCTC_OK && r.gradable == fixtures[0].gradable && strcmp(r.label_name, fixtures[0].label) == 0
              && strcmp(r.backend, "onnxruntime") == 0,
          "classify across -fshort-enums: %s, %s on %s", octc_status_name(status), r.label_name, r.backend);
    octc_close(clf);
    return finish("test_layout");
}
