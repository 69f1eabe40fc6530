/* 200 classify calls do not grow resident memory (VmRSS) by more than 50 MB after a warm-up.
   Usage: test_memory FIXTURES_DIR */
#include "common.h"

#define WARM_UP_CALLS 20
#define CALLS 200
#define LIMIT_MB 50.0

static double resident_mb(void)
{
    FILE *in = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (in != NULL && fgets(line, sizeof line, in) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (in != NULL)
        fclose(in);
    return kb / 1024.0;
}

static int classify_calls(octc_classifier *classifier, const fixture *fixtures, int n_fixtures, int calls)
{
    int errors = 0;
    octc_result r;
    for (int call = 0; call < calls; call++)
        errors += classify_fixture(classifier, &fixtures[call % n_fixtures], &r) != OCTC_OK;
    return errors;
}

int main(int argc, char **argv)
{
    fixture fixtures[MAX_FIXTURES];
    int n = fixtures_of_arguments(argc, argv, fixtures);
    octc_classifier *classifier = open_fixture_bundle(argv[1]);
    int errors = classify_calls(classifier, fixtures, n, WARM_UP_CALLS);
    double before_mb = resident_mb();
    errors += classify_calls(classifier, fixtures, n, CALLS);
    double after_mb = resident_mb();
    printf("VmRSS %.1f MB after %d warm-up calls, %.1f MB after %d more: %+.1f MB\n", before_mb,
           WARM_UP_CALLS, after_mb, CALLS, after_mb - before_mb);
    CHECK(before_mb > 0.0, "VmRSS not found in /proc/self/status");
    CHECK(after_mb - before_mb <= LIMIT_MB, "resident memory grew by %.1f MB (limit %.0f MB)",
          after_mb - before_mb, LIMIT_MB);
    CHECK(errors == 0, "%d of %d calls failed (last: %s)", errors, WARM_UP_CALLS + CALLS, octc_last_error());
    CHECK(octc_close(classifier) == OCTC_OK, "close: %s", octc_last_error());
    return finish("test_memory");
}
