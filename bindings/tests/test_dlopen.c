/* A firmware that loads the library as a plugin, dlopen() with RTLD_LOCAL, gets a working Python
   (its extension modules need libpython's symbols global). Usage: test_dlopen LIBRARY FIXTURES_DIR */
#include <dlfcn.h>

#include "common.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s LIBRARY FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    typedef octc_status (*open_function)(const char *, const char *, octc_classifier **);
    typedef octc_status (*close_function)(octc_classifier *);
    typedef const char *(*error_function)(void);
    open_function open = (open_function)dlsym(library, "octc_open");
    close_function close = (close_function)dlsym(library, "octc_close");
    error_function last_error = (error_function)dlsym(library, "octc_last_error");
    char bundle[1024];
    snprintf(bundle, sizeof bundle, "%s/bundle", argv[2]);
    octc_classifier *classifier = NULL;
    octc_status status = open(bundle, "onnxruntime", &classifier);
    CHECK(status == OCTC_OK, "octc_open after dlopen(RTLD_LOCAL): %d: %s", status, last_error());
    if (status == OCTC_OK)
        CHECK(close(classifier) == OCTC_OK, "octc_close: %s", last_error());
    return finish("test_dlopen");
}
