/* Shared by the C tests: the fixtures written by make_fixtures.py and a check macro. */
#ifndef OCTC_TESTS_COMMON_H
#define OCTC_TESTS_COMMON_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "octclassify.h"

#define MAX_FIXTURES 8

/* One volume of fixtures.txt with the Python API's answer. */
typedef struct fixture {
    char file[256];
    octc_dtype dtype;
    int64_t shape[3];
    double spacing_mm[3];
    char laterality[4];
    int gradable;
    char label[OCTC_LABEL_CHARS];
    double probabilities[OCTC_N_CLASSES];
    void *voxels;
    size_t n_bytes;
} fixture;

static int failures;

#define CHECK(condition, ...)                                              \
    do {                                                                   \
        if (!(condition)) {                                                \
            failures++;                                                    \
            fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

static inline octc_dtype dtype_of(const char *name)
{
    if (strcmp(name, "uint8") == 0)
        return OCTC_UINT8;
    if (strcmp(name, "uint16") == 0)
        return OCTC_UINT16;
    if (strcmp(name, "float32") == 0)
        return OCTC_FLOAT32;
    fprintf(stderr, "unknown dtype %s in fixtures.txt\n", name);
    exit(2);
}

static inline void *read_file(const char *path, size_t n_bytes)
{
    FILE *in = fopen(path, "rb");
    void *data = malloc(n_bytes);
    if (in == NULL || data == NULL || fread(data, 1, n_bytes, in) != n_bytes) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", n_bytes, path);
        exit(2);
    }
    fclose(in);
    return data;
}

/* Read <dir>/fixtures.txt and every volume it names; return the number of fixtures. */
static inline int load_fixtures(const char *dir, fixture *fixtures)
{
    char path[1024], dtype[16];
    snprintf(path, sizeof path, "%s/fixtures.txt", dir);
    FILE *in = fopen(path, "r");
    if (in == NULL) {
        fprintf(stderr, "cannot read %s: run make_fixtures.py first\n", path);
        exit(2);
    }
    int n = 0;
    fixture *f = fixtures;
    const char *format = "%255s %15s %" SCNd64 " %" SCNd64 " %" SCNd64 " %lf %lf %lf %3s %d %7s"
                         " %lf %lf %lf %lf %lf";
    while (n < MAX_FIXTURES
           && fscanf(in, format, f->file, dtype, &f->shape[0], &f->shape[1], &f->shape[2], &f->spacing_mm[0],
                     &f->spacing_mm[1], &f->spacing_mm[2], f->laterality, &f->gradable, f->label,
                     &f->probabilities[0], &f->probabilities[1], &f->probabilities[2], &f->probabilities[3],
                     &f->probabilities[4])
                  == 16) {
        f->dtype = dtype_of(dtype);
        size_t item_size = f->dtype == OCTC_UINT8 ? 1 : f->dtype == OCTC_UINT16 ? 2 : 4;
        snprintf(path, sizeof path, "%s/%s", dir, f->file);
        f->n_bytes = (size_t)(f->shape[0] * f->shape[1] * f->shape[2]) * item_size;
        f->voxels = read_file(path, f->n_bytes);
        n++;
        f++;
    }
    fclose(in);
    if (n == 0) {
        fprintf(stderr, "no fixtures in %s/fixtures.txt\n", dir);
        exit(2);
    }
    return n;
}

/* The fixtures of the test's only argument, FIXTURES_DIR, or exit with the usage. */
static inline int fixtures_of_arguments(int argc, char **argv, fixture *fixtures)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        exit(2);
    }
    return load_fixtures(argv[1], fixtures);
}

/* The value of line "KEY value" of <dir>/bundle.txt (make_fixtures.py), or exit. */
static inline const char *bundle_fact(const char *dir, const char *key)
{
    static char value[128];
    char path[1024], name[64];
    snprintf(path, sizeof path, "%s/bundle.txt", dir);
    FILE *in = fopen(path, "r");
    while (in != NULL && fscanf(in, "%63s %127s", name, value) == 2)
        if (strcmp(name, key) == 0) {
            fclose(in);
            return value;
        }
    fprintf(stderr, "no %s in %s\n", key, path);
    exit(2);
}

static inline octc_status classify_fixture(octc_classifier *classifier, const fixture *f, octc_result *result)
{
    return octc_classify(classifier, f->voxels, f->n_bytes, f->dtype, f->shape[0], f->shape[1], f->shape[2],
                         f->spacing_mm, f->laterality, result);
}

/* Open <dir>/bundle on ONNX Runtime (the backend of the Python answers), or exit. */
static inline octc_classifier *open_fixture_bundle(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/bundle", dir);
    octc_classifier *classifier = NULL;
    octc_status status = octc_open(path, "onnxruntime", &classifier);
    if (status != OCTC_OK) {
        fprintf(stderr, "octc_open(%s): %s: %s\n", path, octc_status_name(status), octc_last_error());
        exit(1);
    }
    return classifier;
}

static inline int finish(const char *test)
{
    printf("%s: %s (%d failed checks)\n", test, failures ? "FAILED" : "passed", failures);
    return failures ? 1 : 0;
}

#endif
