/* octc_open_with_options: defaults, the struct_size rules, each field (threads, backend,
   precision, engine cache folder, trusted keys, logger) doing what the header says, and every
   unusable value refused with its status. Usage: test_options FIXTURES_DIR */
#include <dirent.h>
#include <pthread.h>
#include <time.h>

#include "common.h"

#define MAX_MESSAGES 64

typedef struct log_book {
    int n;
    int levels[MAX_MESSAGES];
    char messages[MAX_MESSAGES][256];
} log_book;

static void keep(void *user_data, int32_t level, const char *message)
{
    log_book *book = user_data;
    if (book->n < MAX_MESSAGES) {
        book->levels[book->n] = level;
        snprintf(book->messages[book->n++], sizeof book->messages[0], "%s", message);
    }
}

static int logged(const log_book *book, int level, const char *part)
{
    for (int i = 0; i < book->n; i++)
        if (book->levels[i] == level && strstr(book->messages[i], part) != NULL)
            return 1;
    return 0;
}

static int n_threads(void)
{
    DIR *tasks = opendir("/proc/self/task");
    int n = 0;
    while (tasks != NULL && readdir(tasks) != NULL)
        n++;
    if (tasks != NULL)
        closedir(tasks);
    return n - 2; /* "." and ".." */
}

/* The process's thread count once it holds still: a thread that loading joined (the bundle's reader)
   stays listed for a moment after the join returns, longer under a sanitizer. Counted every 10 ms
   until ten counts in a row agree, for at most 3 s. */
static int settled_threads(void)
{
    const struct timespec tick = {0, 10 * 1000 * 1000};
    int n = n_threads(), same = 0;
    for (int i = 0; i < 300 && same < 10; i++) {
        nanosleep(&tick, NULL);
        int now = n_threads();
        same = now == n ? same + 1 : 0;
        n = now;
    }
    return n;
}

static octc_status open_with(const char *bundle, const octc_options *options, octc_classifier **clf,
                             const char *what)
{
    octc_status status = octc_open_with_options(bundle, options, clf);
    printf("%-46s %-24s %.140s\n", what, octc_status_name(status), octc_last_error());
    return status;
}

static void expect_refused(const char *bundle, const octc_options *options, octc_status expected, const char *what)
{
    octc_classifier *clf = (octc_classifier *)1;
    octc_status status = open_with(bundle, options, &clf, what);
    CHECK(status == expected, "%s: %s, expected %s", what, octc_status_name(status), octc_status_name(expected));
    CHECK(clf == NULL && octc_last_error()[0] != '\0', "%s: handle set or no message", what);
}

/* Open with options, classify the first fixture and close; the result in *r. */
static void open_classify_close(const char *bundle, const octc_options *options, const fixture *f, octc_result *r,
                                const char *what)
{
    octc_classifier *clf = NULL;
    octc_status status = open_with(bundle, options, &clf, what);
    CHECK(status == OCTC_OK, "%s: %s", what, octc_last_error());
    if (status != OCTC_OK)
        return;
    CHECK(classify_fixture(clf, f, r) == OCTC_OK, "%s: classify: %s", what, octc_last_error());
    CHECK(octc_close(clf) == OCTC_OK, "%s: close: %s", what, octc_last_error());
}

int main(int argc, char **argv)
{
    fixture fixtures[MAX_FIXTURES];
    fixtures_of_arguments(argc, argv, fixtures);
    const fixture *f = &fixtures[0];
    char bundle[1024], vendor_key[1024], other_key[1024], keys[1024];
    snprintf(bundle, sizeof bundle, "%s/bundle", argv[1]);
    snprintf(vendor_key, sizeof vendor_key, "%s/signing/vendor.pub.pem", argv[1]);
    snprintf(other_key, sizeof other_key, "%s/signing/other.pub.pem", argv[1]);
    snprintf(keys, sizeof keys, "%s/trusted", argv[1]);
    const char *signer = bundle_fact(argv[1], "signer");

    octc_options o;
    memset(&o, 0xff, sizeof o);
    octc_options_init(&o);
    CHECK(o.struct_size == sizeof o && o.threads == 0 && o.backend == NULL && o.precision == NULL
              && o.engine_cache_dir == NULL && o.trusted_keys == NULL && o.logger == NULL
              && o.logger_user_data == NULL,
          "octc_options_init does not give the defaults");
    octc_result r;

    /* defaults: NULL options, or the initialised struct */
    open_classify_close(bundle, NULL, f, &r, "NULL options");
    CHECK(strcmp(r.label_name, f->label) == 0 && strcmp(r.backend, "onnxruntime") == 0 && r.signer[0] == '\0',
          "NULL options: %s on %s, signer \"%s\"", r.label_name, r.backend, r.signer);

    /* struct_size: smaller refused; larger accepted only with zeros beyond the known fields */
    struct { octc_options known; uint64_t later_field; } bigger;
    memset(&bigger, 0, sizeof bigger);
    octc_options_init(&bigger.known);
    bigger.known.struct_size = (uint32_t)sizeof bigger;
    open_classify_close(bundle, &bigger.known, f, &r, "struct_size larger, unknown fields zero");
    bigger.later_field = 1;
    expect_refused(bundle, &bigger.known, OCTC_INVALID_ARGUMENT, "struct_size larger, unknown field set");
    octc_options_init(&o);
    o.struct_size = 4;
    expect_refused(bundle, &o, OCTC_INVALID_ARGUMENT, "struct_size 4");
    o.struct_size = 0xdeadbeef;
    expect_refused(bundle, &o, OCTC_INVALID_ARGUMENT, "struct_size garbage (no octc_options_init)");

    /* unusable values */
    const char *empty = "";
    const char **texts[] = {&o.backend, &o.precision, &o.engine_cache_dir, &o.trusted_keys};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        octc_options_init(&o);
        *texts[i] = empty;
        expect_refused(bundle, &o, OCTC_INVALID_ARGUMENT, "an empty string");
    }
    octc_options_init(&o);
    o.threads = -1;
    expect_refused(bundle, &o, OCTC_INVALID_ARGUMENT, "threads -1");
    octc_options_init(&o);
    o.precision = "fp64";
    expect_refused(bundle, &o, OCTC_INVALID_ARGUMENT, "precision fp64");
    octc_options_init(&o);
    o.backend = "no-such-backend";
    expect_refused(bundle, &o, OCTC_INVALID_ARGUMENT, "backend no-such-backend");

    /* precision and engine cache folder (TensorRT's only: ONNX Runtime on the CPU ignores it) */
    octc_options_init(&o);
    o.backend = "onnxruntime";
    o.precision = "fp16";
    o.engine_cache_dir = argv[1];
    open_classify_close(bundle, &o, f, &r, "fp16, an engine cache folder");
    CHECK(strcmp(r.precision, "fp16") == 0 && r.gradable == f->gradable, "fp16: precision %s", r.precision);

    /* trusted keys: the signer's key file or a folder holding it; another key or none refused */
    octc_options_init(&o);
    o.trusted_keys = vendor_key;
    open_classify_close(bundle, &o, f, &r, "trusted key: the signer's");
    CHECK(strcmp(r.signer, signer) == 0, "signer \"%s\", expected %s", r.signer, signer);
    o.trusted_keys = keys;
    open_classify_close(bundle, &o, f, &r, "trusted keys: a folder with the signer's");
    CHECK(strcmp(r.signer, signer) == 0, "signer \"%s\", expected %s", r.signer, signer);
    o.trusted_keys = other_key;
    expect_refused(bundle, &o, OCTC_BUNDLE_ERROR, "trusted key: another key");
    o.trusted_keys = "/no/such/key.pem";
    expect_refused(bundle, &o, OCTC_BUNDLE_ERROR, "trusted key: missing file");

    /* threads: ONNX Runtime runs one pool of (threads - 1) workers per network session */
    octc_classifier *one, *two;
    octc_options_init(&o);
    o.backend = "onnxruntime";
    int before = settled_threads();
    o.threads = 1;
    CHECK(open_with(bundle, &o, &one, "threads 1") == OCTC_OK, "threads 1: %s", octc_last_error());
    int with_one = settled_threads();
    o.threads = 2;
    CHECK(open_with(bundle, &o, &two, "threads 2") == OCTC_OK, "threads 2: %s", octc_last_error());
    int with_two = settled_threads();
    printf("threads in the process: %d, +%d with threads 1, +%d more with threads 2\n", before, with_one - before,
           with_two - with_one);
    CHECK(with_two - with_one >= (with_one - before) + 4, "threads 2 added %d threads, threads 1 %d",
          with_two - with_one, with_one - before);
    octc_close(one);
    octc_close(two);

    /* logger: gets the SDK's INFO messages and the refusals of calls on its handle, with user_data */
    log_book book = {0};
    octc_options_init(&o);
    o.logger = keep;
    o.logger_user_data = &book;
    octc_classifier *clf = NULL;
    CHECK(open_with(bundle, &o, &clf, "logger, auto backend") == OCTC_OK, "logger: %s", octc_last_error());
    CHECK(logged(&book, OCTC_LOG_INFO, "auto backend: onnxruntime"), "the logger missed the auto backend's choice");
    CHECK(octc_classify(clf, f->voxels, f->n_bytes, f->dtype, f->shape[0], f->shape[1], f->shape[2], f->spacing_mm,
                        "XX", &r) == OCTC_INVALID_ARGUMENT, "classify with laterality XX");
    CHECK(logged(&book, OCTC_LOG_INFO, "octc_classify: "), "the logger missed the refused classify");
    int n_logged = book.n;
    octc_classifier *quiet = NULL;
    CHECK(octc_open(bundle, "onnxruntime", &quiet) == OCTC_OK, "open without logger: %s", octc_last_error());
    octc_classify(quiet, f->voxels, f->n_bytes, f->dtype, f->shape[0], f->shape[1], f->shape[2], f->spacing_mm,
                  "XX", &r);
    CHECK(book.n == n_logged, "a call on another handle reached this handle's logger");
    for (int i = 0; i < book.n; i++)
        printf("logged (%d): %s\n", book.levels[i], book.messages[i]);
    octc_close(quiet);
    octc_close(clf);
    return finish("test_options");
}
