/*
 * classify_volume: classify one raw OCT volume file through the C API and print the answer.
 *
 *   classify_volume BUNDLE VOLUME.raw DTYPE N_BSCANS DEPTH N_ASCANS BSCAN_MM AXIAL_MM ASCAN_MM
 *                   LATERALITY [BACKEND]
 *
 * VOLUME.raw: the voxels only, C order (n_bscans, depth, n_ascans), native byte order.
 * DTYPE: uint8, uint16 or float32. LATERALITY: OD or OS. BACKEND: auto (default), onnxruntime,
 * tensorrt or torch. Exit status: 0 classified (also when ungradable), 1 the library said no,
 * 2 bad command line or unreadable file. Build it against an installed library with
 *     cc classify_volume.c $(pkg-config --cflags --libs octclassify) -Wl,-rpath,<prefix>/lib
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "octclassify.h"

static const char *const CLASS_NAMES[OCTC_N_CLASSES] = {"normal", "FI", "GE", "MY", "SS"};

static int parse_dtype(const char *name, octc_dtype *dtype, size_t *item_size)
{
    static const struct { const char *name; octc_dtype dtype; size_t size; } dtypes[] = {
        {"uint8", OCTC_UINT8, 1}, {"uint16", OCTC_UINT16, 2}, {"float32", OCTC_FLOAT32, 4}};
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *dtype = dtypes[i].dtype;
            *item_size = dtypes[i].size;
            return 1;
        }
    return 0;
}

/* The whole file, which must hold exactly n_bytes; NULL (and a message) otherwise. */
static void *read_volume(const char *path, size_t n_bytes)
{
    FILE *in = fopen(path, "rb");
    if (in == NULL) {
        perror(path);
        return NULL;
    }
    void *voxels = malloc(n_bytes);
    size_t got = voxels ? fread(voxels, 1, n_bytes, in) : 0;
    int extra = fgetc(in) != EOF;
    fclose(in);
    if (voxels == NULL || got != n_bytes || extra) {
        fprintf(stderr, "%s does not hold exactly %zu bytes (the dimensions times the voxel size)\n", path,
                n_bytes);
        free(voxels);
        return NULL;
    }
    return voxels;
}

int main(int argc, char **argv)
{
    if (argc != 11 && argc != 12) {
        fprintf(stderr, "usage: %s BUNDLE VOLUME.raw uint8|uint16|float32 N_BSCANS DEPTH N_ASCANS "
                        "BSCAN_MM AXIAL_MM ASCAN_MM OD|OS [BACKEND]\n", argv[0]);
        return 2;
    }
    octc_dtype dtype;
    size_t item_size;
    if (!parse_dtype(argv[3], &dtype, &item_size)) {
        fprintf(stderr, "unknown dtype %s: use uint8, uint16 or float32\n", argv[3]);
        return 2;
    }
    int64_t shape[3];
    double spacing_mm[3];
    size_t n_bytes = item_size;
    for (int i = 0; i < 3; i++) {
        shape[i] = strtoll(argv[4 + i], NULL, 10);
        spacing_mm[i] = strtod(argv[7 + i], NULL);
        if (shape[i] <= 0) {
            fprintf(stderr, "dimension %s is not a positive number\n", argv[4 + i]);
            return 2;
        }
        n_bytes *= (size_t)shape[i];
    }
    void *voxels = read_volume(argv[2], n_bytes);
    if (voxels == NULL)
        return 2;

    if (octc_api_version() >> 16 != OCTC_VERSION_MAJOR || octc_api_version() < OCTC_API_VERSION) {
        fprintf(stderr, "%s is older than the header this program was built with\n", octc_version());
        return 1;
    }
    octc_options options;
    octc_options_init(&options);
    options.backend = argc == 12 ? argv[11] : NULL; /* NULL: "auto" */
    octc_classifier *classifier;
    octc_status status = octc_open_with_options(argv[1], &options, &classifier);
    if (status != OCTC_OK) {
        fprintf(stderr, "octc_open: %s: %s\n", octc_status_name(status), octc_last_error());
        free(voxels);
        return 1;
    }
    octc_result result;
    status = octc_classify(classifier, voxels, n_bytes, dtype, shape[0], shape[1], shape[2], spacing_mm, argv[10],
                           &result);
    free(voxels); /* the library never keeps the buffer */
    if (status != OCTC_OK) {
        fprintf(stderr, "octc_classify: %s: %s\n", octc_status_name(status), octc_last_error());
        octc_close(classifier);
        return 1;
    }
    if (result.gradable) {
        printf("label: %s\n", result.label_name);
        for (int c = 0; c < OCTC_N_CLASSES; c++)
            printf("  p(%s) = %.6f\n", CLASS_NAMES[c], result.probabilities[c]);
    } else {
        printf("label: none (ungradable)\n");
    }
    if (result.reason[0] != '\0')
        printf("reason: %s\n", result.reason);
    printf("latency: %.1f ms\n", result.latency_ms);
    printf("bundle: %s (%s)\n", result.bundle_id, result.signer[0] ? result.signer : "no trusted keys");
    printf("backend: %s %s, SDK %s, %s\n", result.backend, result.precision, result.sdk_version, octc_version());
    octc_close(classifier);
    return 0;
}
