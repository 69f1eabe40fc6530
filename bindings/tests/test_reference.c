/* The C API gives the Python API's answer: same label, probabilities within 1e-6, on every fixture
   volume (uint8, uint16 and float32, both eyes, one ungradable), and says what answered: the
   bundle id, no signer (no trusted keys), the backend, precision and SDK version.
   Usage: test_reference FIXTURES_DIR */
#include "common.h"

#define TOLERANCE 1e-6

int main(int argc, char **argv)
{
    fixture fixtures[MAX_FIXTURES];
    int n = fixtures_of_arguments(argc, argv, fixtures);
    octc_classifier *classifier = open_fixture_bundle(argv[1]);
    double max_difference = 0.0;
    for (int i = 0; i < n; i++) {
        const fixture *f = &fixtures[i];
        octc_result r;
        octc_status status = classify_fixture(classifier, f, &r);
        CHECK(status == OCTC_OK, "%s: %s: %s", f->file, octc_status_name(status), octc_last_error());
        CHECK(r.gradable == f->gradable, "%s: gradable %d, Python %d", f->file, r.gradable, f->gradable);
        CHECK(r.latency_ms > 0.0, "%s: latency %g ms", f->file, r.latency_ms);
        CHECK(strcmp(r.bundle_id, bundle_fact(argv[1], "bundle_id")) == 0, "%s: bundle id %s", f->file, r.bundle_id);
        CHECK(strlen(r.bundle_id) == 64, "%s: bundle id %s is no sha256", f->file, r.bundle_id);
        CHECK(strcmp(r.sdk_version, bundle_fact(argv[1], "sdk_version")) == 0, "%s: SDK %s", f->file, r.sdk_version);
        CHECK(strcmp(r.backend, "onnxruntime") == 0 && strcmp(r.precision, "fp32") == 0, "%s: %s %s", f->file,
              r.backend, r.precision);
        CHECK(r.signer[0] == '\0', "%s: signer %s without trusted keys", f->file, r.signer);
        if (!f->gradable) {
            CHECK(r.label == OCTC_CLASS_NONE && r.label_name[0] == '\0', "%s: ungradable but label %d",
                  f->file, r.label);
            CHECK(r.reason[0] != '\0', "%s: ungradable without a reason", f->file);
            CHECK(isnan(r.probabilities[0]), "%s: ungradable but probabilities", f->file);
            printf("%s: ungradable (%s), %.1f ms\n", f->file, r.reason, r.latency_ms);
            continue;
        }
        CHECK(strcmp(r.label_name, f->label) == 0, "%s: label %s, Python %s", f->file, r.label_name,
              f->label);
        CHECK(r.label >= 0 && r.label < OCTC_N_CLASSES, "%s: label index %d", f->file, r.label);
        for (int c = 0; c < OCTC_N_CLASSES; c++) {
            double difference = fabs(r.probabilities[c] - f->probabilities[c]);
            CHECK(difference <= TOLERANCE, "%s: probability %d is %.17g, Python %.17g", f->file, c,
                  r.probabilities[c], f->probabilities[c]);
            if (difference > max_difference)
                max_difference = difference;
        }
        printf("%s: %s p=%.6f, %.1f ms\n", f->file, r.label_name, r.probabilities[r.label], r.latency_ms);
    }
    printf("largest C - Python probability difference: %.3g over %d volumes\n", max_difference, n);
    CHECK(octc_close(classifier) == OCTC_OK, "close: %s", octc_last_error());
    return finish("test_reference");
}
