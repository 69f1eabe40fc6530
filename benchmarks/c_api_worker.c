/*
 * c_api_worker: the C API driven over a pipe, for benchmarks/test_c_api_bench.py.
 *
 *   c_api_worker BUNDLE VOLUME.raw N_BSCANS DEPTH N_ASCANS BSCAN_MM AXIAL_MM ASCAN_MM LATERALITY
 *
 * Reads the uint8 volume (C order (n_bscans, depth, n_ascans)), calls octc_open on BUNDLE (ONNX
 * Runtime) and answers each line "classify" on stdin with one octc_classify. Every answer is one
 * JSON line on stdout: {"status", "error"} for the open, {"status", "error", "gradable",
 * "probability_sum", "latency_ms"} for a classification. Any other line, or the end of stdin,
 * closes the handle and ends the process.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "octclassify.h"

static void answer(octc_status status, const char *fields)
{
    printf("{\"status\": %d, \"error\": \"", (int)status);
    for (const char *c = status != OCTC_OK ? octc_last_error() : ""; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            putchar('\\');
        putchar((unsigned char)*c < 0x20 ? ' ' : *c);
    }
    printf("\"%s}\n", fields);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 10) {
        fprintf(stderr, "usage: %s BUNDLE VOLUME.raw N_BSCANS DEPTH N_ASCANS BSCAN_MM AXIAL_MM ASCAN_MM "
                        "LATERALITY\n", argv[0]);
        return 2;
    }
    int64_t shape[3];
    double spacing_mm[3];
    size_t n_bytes = 1;
    for (int i = 0; i < 3; i++) {
        shape[i] = strtoll(argv[3 + i], NULL, 10);
        spacing_mm[i] = strtod(argv[6 + i], NULL);
        n_bytes *= (size_t)(shape[i] > 0 ? shape[i] : 0);
    }
    uint8_t *voxels = malloc(n_bytes ? n_bytes : 1);
    FILE *in = fopen(argv[2], "rb");
    if (in == NULL || voxels == NULL || fread(voxels, 1, n_bytes, in) != n_bytes) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", n_bytes, argv[2]);
        return 2;
    }
    fclose(in);
    octc_classifier *clf;
    octc_status status = octc_open(argv[1], "onnxruntime", &clf);
    answer(status, "");
    if (status != OCTC_OK)
        return 1;
    char line[64], fields[256];
    while (fgets(line, sizeof line, stdin) != NULL && strcmp(line, "classify\n") == 0) {
        octc_result r;
        status = octc_classify(clf, voxels, n_bytes, OCTC_UINT8, shape[0], shape[1], shape[2], spacing_mm,
                               argv[9], &r);
        double sum = 0.0;
        for (int c = 0; c < OCTC_N_CLASSES; c++)
            sum += r.probabilities[c];
        snprintf(fields, sizeof fields, ", \"gradable\": %d, \"probability_sum\": %.17g, \"latency_ms\": %.3f",
                 (int)r.gradable, r.gradable ? sum : 0.0, r.latency_ms);
        answer(status, fields);
    }
    octc_close(clf);
    free(voxels);
    return 0;
}
