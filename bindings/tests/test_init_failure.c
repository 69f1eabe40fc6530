/* When the embedded Python cannot start, every call, not only the first, returns
   OCTC_PYTHON_INIT_FAILED with a message that says why, never OCTC_OK; the library version still
   answers. CMakeLists.txt runs it with environments that break each step of the start.
   Usage: test_init_failure EXPECTED_MESSAGE_PART */
#include <stdint.h>

#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s EXPECTED_MESSAGE_PART\n", argv[0]);
        return 2;
    }
    octc_classifier *clf = NULL;
    octc_result r;
    const double spacing_mm[3] = {0.1, 0.004, 0.1};
    uint8_t voxels[2 * 32 * 8] = {0};
    for (int attempt = 0; attempt < 3; attempt++) {
        octc_status statuses[] = {
            octc_open("/any/bundle", "onnxruntime", &clf),
            octc_classify((octc_classifier *)1, voxels, OCTC_UINT8, 2, 32, 8, spacing_mm, "OD", &r),
            octc_close((octc_classifier *)1),
        };
        for (int i = 0; i < 3; i++)
            CHECK(statuses[i] == OCTC_PYTHON_INIT_FAILED, "attempt %d, call %d: %s", attempt, i,
                  octc_status_name(statuses[i]));
        CHECK(strstr(octc_last_error(), argv[1]) != NULL, "message \"%s\" lacks \"%s\"", octc_last_error(),
              argv[1]);
    }
    CHECK(clf == NULL, "a failed open set the handle");
    printf("message: %s\n", octc_last_error());
    CHECK(strncmp(octc_version(), "octclassify ", 12) == 0, "version \"%s\"", octc_version());
    return finish("test_init_failure");
}
