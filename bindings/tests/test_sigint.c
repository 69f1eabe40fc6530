/* Ctrl-C ends the host: a process whose SIGINT is at its default, interrupted while the library
   classifies, dies of SIGINT (the library installs no handler that would turn it into an error
   and carry on). Usage: test_sigint FIXTURES_DIR */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define WAIT_S 30

int main(int argc, char **argv)
{
    fixture fixtures[MAX_FIXTURES];
    fixtures_of_arguments(argc, argv, fixtures);
    int ready[2];
    if (pipe(ready) != 0) {
        perror("pipe");
        return 2;
    }
    pid_t child = fork();
    if (child == 0) { /* the host: open, say so, classify until interrupted */
        close(ready[0]);
        octc_classifier *clf = open_fixture_bundle(argv[1]);
        octc_result r;
        if (write(ready[1], "r", 1) != 1)
            _exit(3);
        for (;;) {
            octc_status status = classify_fixture(clf, &fixtures[0], &r);
            if (status != OCTC_OK) { /* e.g. a KeyboardInterrupt turned into an error */
                fprintf(stderr, "classify: %s: %s\n", octc_status_name(status), octc_last_error());
                _exit(4);
            }
        }
    }
    close(ready[1]);
    char byte;
    CHECK(read(ready[0], &byte, 1) == 1, "the host ended before it opened the bundle");
    struct timespec in_a_call = {0, 300 * 1000 * 1000};
    nanosleep(&in_a_call, NULL); /* ~70 ms a call: the host is in octc_classify now */
    kill(child, SIGINT);
    int status = 0;
    pid_t done = 0;
    for (int i = 0; i < WAIT_S * 10 && (done = waitpid(child, &status, WNOHANG)) == 0; i++) {
        struct timespec tenth = {0, 100 * 1000 * 1000};
        nanosleep(&tenth, NULL);
    }
    if (done == 0) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        CHECK(0, "SIGINT did not end the host within %d s", WAIT_S);
    } else {
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT, "the host %s %d, not killed by SIGINT",
              WIFSIGNALED(status) ? "died of signal" : "exited with status",
              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        printf("SIGINT during octc_classify: the host %s\n", WIFSIGNALED(status) && WTERMSIG(status) == SIGINT
               ? "died of SIGINT, as it would without the library" : "did NOT die of SIGINT");
    }
    return finish("test_sigint");
}
