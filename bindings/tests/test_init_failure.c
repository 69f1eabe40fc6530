/* When the embedded Python cannot start, every call that needs it, not only the first, returns
   OCTC_PYTHON_INIT_FAILED with a message that says why (matching EXPECTED, an extended regular
   expression), never OCTC_OK, and nothing is written to stdout or stderr; the calls that need no
   Python still answer. CMakeLists.txt runs it on broken copies of the runtime folder.
   Usage: test_init_failure FOLDER_OF_THE_LIBRARY EXPECTED */
#include <dlfcn.h>
#include <regex.h>

#include "common.h"
#include "output.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s FOLDER_OF_THE_LIBRARY EXPECTED\n", argv[0]);
        return 2;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/liboctclassify.so.0", argv[1]);
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    octc_status (*open)(const char *, const char *, octc_classifier **) =
        (octc_status (*)(const char *, const char *, octc_classifier **))dlsym(library, "octc_open");
    octc_status (*classify)(octc_classifier *, const void *, size_t, octc_dtype, int64_t, int64_t, int64_t,
                            const double *, const char *, octc_result *) =
        (octc_status (*)(octc_classifier *, const void *, size_t, octc_dtype, int64_t, int64_t, int64_t,
                         const double *, const char *, octc_result *))dlsym(library, "octc_classify");
    octc_status (*close)(octc_classifier *) = (octc_status (*)(octc_classifier *))dlsym(library, "octc_close");
    const char *(*last_error)(void) = (const char *(*)(void))dlsym(library, "octc_last_error");
    const char *(*version)(void) = (const char *(*)(void))dlsym(library, "octc_version");
    regex_t expected;
    if (regcomp(&expected, argv[2], REG_EXTENDED | REG_NOSUB) != 0) {
        fprintf(stderr, "bad regular expression %s\n", argv[2]);
        return 2;
    }

    captured_output output = capture_output();
    octc_classifier *clf = (octc_classifier *)1;
    octc_result r;
    const double spacing_mm[3] = {0.1, 0.004, 0.1};
    uint8_t voxels[2 * 32 * 8] = {0};
    char messages[3][3][512];
    octc_status statuses[3][3];
    for (int attempt = 0; attempt < 3; attempt++) {
        statuses[attempt][0] = open("/any/bundle", "onnxruntime", &clf);
        snprintf(messages[attempt][0], sizeof messages[attempt][0], "%s", last_error());
        statuses[attempt][1] = classify((octc_classifier *)1, voxels, sizeof voxels, OCTC_UINT8, 2, 32, 8,
                                        spacing_mm, "OD", &r);
        snprintf(messages[attempt][1], sizeof messages[attempt][1], "%s", last_error());
        statuses[attempt][2] = close((octc_classifier *)1);
        snprintf(messages[attempt][2], sizeof messages[attempt][2], "%s", last_error());
    }
    char written[256];
    size_t n_written = end_capture(&output, written, sizeof written);

    for (int attempt = 0; attempt < 3; attempt++)
        for (int i = 0; i < 3; i++) {
            CHECK(statuses[attempt][i] == OCTC_PYTHON_INIT_FAILED, "attempt %d, call %d: %d", attempt, i,
                  statuses[attempt][i]);
            CHECK(regexec(&expected, messages[attempt][i], 0, NULL, 0) == 0, "message \"%s\" does not match %s",
                  messages[attempt][i], argv[2]);
        }
    CHECK(clf == NULL, "a failed open set the handle");
    CHECK(n_written == 0, "the library wrote %zu bytes to stdout or stderr: %s", n_written, written);
    printf("message: %s\n", messages[0][0]);
    CHECK(strncmp(version(), "octclassify ", 12) == 0, "version \"%s\"", version());
    return finish("test_init_failure");
}
