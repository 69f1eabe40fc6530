/* Four threads classifying at once on one shared handle give the serial answers, bit for bit, and
   each thread keeps its own error message. Usage: test_threads FIXTURES_DIR */
#include <pthread.h>

#include "common.h"

#define N_THREADS 4
#define CALLS_PER_THREAD 5

static fixture fixtures[MAX_FIXTURES];
static octc_result serial[MAX_FIXTURES];
static int n_fixtures;
static octc_classifier *classifier;

typedef struct job {
    int index;
    int mismatches;
    int errors;
} job;

static void *classify_repeatedly(void *argument)
{
    job *j = argument;
    for (int call = 0; call < CALLS_PER_THREAD; call++) {
        int i = (j->index + call) % n_fixtures;
        const fixture *f = &fixtures[i];
        octc_result r;
        octc_status status = classify_fixture(classifier, f, &r);
        if (status != OCTC_OK || octc_last_error()[0] != '\0') {
            fprintf(stderr, "thread %d: %s: %s\n", j->index, octc_status_name(status), octc_last_error());
            j->errors++;
        }
        if (r.gradable != serial[i].gradable || r.label != serial[i].label
            || memcmp(r.probabilities, serial[i].probabilities, sizeof r.probabilities) != 0
            || strcmp(r.reason, serial[i].reason) != 0)
            j->mismatches++;
        /* an error in this thread: its message is this thread's, whatever the others do */
        status = octc_classify(classifier, f->voxels, f->n_bytes, 100 + j->index, f->shape[0], f->shape[1],
                               f->shape[2], f->spacing_mm, f->laterality, &r);
        char expected[32];
        snprintf(expected, sizeof expected, "dtype %d is unknown", 100 + j->index);
        if (status != OCTC_UNKNOWN_DTYPE || strstr(octc_last_error(), expected) == NULL) {
            fprintf(stderr, "thread %d: message \"%s\"\n", j->index, octc_last_error());
            j->errors++;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    n_fixtures = fixtures_of_arguments(argc, argv, fixtures);
    classifier = open_fixture_bundle(argv[1]);
    for (int i = 0; i < n_fixtures; i++) {
        octc_status status = classify_fixture(classifier, &fixtures[i], &serial[i]);
        CHECK(status == OCTC_OK, "serial %s: %s", fixtures[i].file, octc_last_error());
    }
    pthread_t threads[N_THREADS];
    job jobs[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        jobs[t] = (job){.index = t};
        CHECK(pthread_create(&threads[t], NULL, classify_repeatedly, &jobs[t]) == 0, "pthread_create");
    }
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(threads[t], NULL);
        CHECK(jobs[t].errors == 0, "thread %d: %d errors", t, jobs[t].errors);
        CHECK(jobs[t].mismatches == 0, "thread %d: %d of %d answers differ from the serial ones", t,
              jobs[t].mismatches, CALLS_PER_THREAD);
    }
    printf("%d threads x %d calls on one handle: %s the serial answers\n", N_THREADS, CALLS_PER_THREAD,
           failures ? "NOT all equal to" : "all bit-identical to");
    CHECK(octc_close(classifier) == OCTC_OK, "close: %s", octc_last_error());
    return finish("test_threads");
}
