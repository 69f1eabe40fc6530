/* The library leaves the host process as it found it, before and after every call: the action of
   every signal (SIGINT at its default), the alternate signal stack and the signal mask, the
   locale, the environment, the buffering of stdout and stderr, the flags of file descriptors 0-2,
   the umask and the working directory; it writes nothing to stdout or stderr and nothing under
   $HOME or $XDG_CACHE_HOME. CMakeLists.txt runs it with every PYTHON* variable set to junk and no
   LANG. Usage: test_process_state FIXTURES_DIR */
#include <dirent.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "output.h"

#define MAX_ENVIRONMENT 512
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* glibc adds it to every action it sets: not part of the action */
#endif

extern char **environ;

typedef struct state {
    struct sigaction actions[NSIG];
    stack_t alternate_stack;
    sigset_t mask;
    char locale[1024];
    int n_environment;
    char *environment[MAX_ENVIRONMENT];
    size_t stdout_buffer, stderr_buffer;
    int stdout_line_buffered, stderr_line_buffered;
    int fd_flags[3], fd_status_flags[3];
    mode_t umask;
    char cwd[1024];
} state;

static void snapshot(state *s)
{
    memset(s, 0, sizeof *s);
    for (int signal = 1; signal < NSIG; signal++)
        sigaction(signal, NULL, &s->actions[signal]);
    sigaltstack(NULL, &s->alternate_stack);
    pthread_sigmask(SIG_BLOCK, NULL, &s->mask);
    snprintf(s->locale, sizeof s->locale, "%s", setlocale(LC_ALL, NULL));
    for (char **e = environ; *e != NULL && s->n_environment < MAX_ENVIRONMENT; e++)
        s->environment[s->n_environment++] = strdup(*e);
    s->stdout_buffer = __fbufsize(stdout);
    s->stderr_buffer = __fbufsize(stderr);
    s->stdout_line_buffered = __flbf(stdout);
    s->stderr_line_buffered = __flbf(stderr);
    for (int fd = 0; fd < 3; fd++) {
        s->fd_flags[fd] = fcntl(fd, F_GETFD);
        s->fd_status_flags[fd] = fcntl(fd, F_GETFL);
    }
    s->umask = umask(022);
    umask(s->umask);
    if (getcwd(s->cwd, sizeof s->cwd) == NULL)
        s->cwd[0] = '\0';
}

/* Describe the first difference between a and b into text; 0 if there is none. */
static int differs(const state *a, const state *b, char *text, size_t size)
{
    for (int signal = 1; signal < NSIG; signal++) {
        const struct sigaction *x = &a->actions[signal], *y = &b->actions[signal];
        int same_mask = 1;
        for (int other = 1; other < NSIG; other++)
            same_mask &= sigismember(&x->sa_mask, other) == sigismember(&y->sa_mask, other);
        if (x->sa_handler != y->sa_handler || (x->sa_flags & ~SA_RESTORER) != (y->sa_flags & ~SA_RESTORER)
            || !same_mask)
            return snprintf(text, size, "the action of signal %d (%s) changed: handler %p -> %p, flags %#x -> %#x%s",
                            signal, strsignal(signal), (void *)x->sa_handler, (void *)y->sa_handler,
                            (unsigned)x->sa_flags, (unsigned)y->sa_flags, same_mask ? "" : ", its mask");
    }
    if (a->alternate_stack.ss_sp != b->alternate_stack.ss_sp || a->alternate_stack.ss_flags != b->alternate_stack.ss_flags)
        return snprintf(text, size, "the alternate signal stack changed");
    int same_mask = 1;
    for (int signal = 1; signal < NSIG; signal++)
        same_mask &= sigismember(&a->mask, signal) == sigismember(&b->mask, signal);
    if (!same_mask)
        return snprintf(text, size, "the signal mask changed");
    if (strcmp(a->locale, b->locale) != 0)
        return snprintf(text, size, "the locale changed from %s to %s", a->locale, b->locale);
    if (a->n_environment != b->n_environment)
        return snprintf(text, size, "the environment went from %d to %d variables", a->n_environment,
                        b->n_environment);
    for (int i = 0; i < a->n_environment; i++)
        if (strcmp(a->environment[i], b->environment[i]) != 0)
            return snprintf(text, size, "environment variable %s became %s", a->environment[i], b->environment[i]);
    if (a->stdout_buffer != b->stdout_buffer || a->stdout_line_buffered != b->stdout_line_buffered
        || a->stderr_buffer != b->stderr_buffer || a->stderr_line_buffered != b->stderr_line_buffered)
        return snprintf(text, size, "the buffering of stdout or stderr changed (stdout %zu bytes -> %zu)",
                        a->stdout_buffer, b->stdout_buffer);
    for (int fd = 0; fd < 3; fd++)
        if (a->fd_flags[fd] != b->fd_flags[fd] || a->fd_status_flags[fd] != b->fd_status_flags[fd])
            return snprintf(text, size, "the flags of file descriptor %d changed", fd);
    if (a->umask != b->umask)
        return snprintf(text, size, "the umask changed");
    if (strcmp(a->cwd, b->cwd) != 0)
        return snprintf(text, size, "the working directory changed to %s", b->cwd);
    return 0;
}

static int n_entries(const char *folder)
{
    DIR *d = opendir(folder);
    int n = 0;
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d != NULL)
        closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    fixture fixtures[MAX_FIXTURES];
    fixtures_of_arguments(argc, argv, fixtures);
    char home[] = "/tmp/octc-home-XXXXXX", cache[] = "/tmp/octc-cache-XXXXXX";
    if (mkdtemp(home) == NULL || mkdtemp(cache) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    setenv("HOME", home, 1);
    setenv("XDG_CACHE_HOME", cache, 1);
    struct sigaction sigint;
    sigaction(SIGINT, NULL, &sigint);
    CHECK(sigint.sa_handler == SIG_DFL, "SIGINT is not at its default when the test starts");
    printf("state checked before and after every call\n");

    char bundle[1024], written[512];
    snprintf(bundle, sizeof bundle, "%s/bundle", argv[1]);
    const fixture *f = &fixtures[0];
    state before, after;
    octc_classifier *clf = NULL;
    octc_result r;
    const char *steps[] = {"open (starts Python)", "classify", "classify with bad laterality", "classify ungradable",
                           "close", "open again", "close again"};
    enum { N_STEPS = sizeof steps / sizeof steps[0] };
    octc_status statuses[N_STEPS];
    char messages[N_STEPS][256], differences[N_STEPS][256];
    captured_output output = capture_output(); /* no CHECK until end_capture: it would write */
    for (size_t step = 0; step < N_STEPS; step++) {
        snapshot(&before);
        octc_status status = OCTC_OK;
        switch (step) {
        case 0: case 5: status = octc_open(bundle, "onnxruntime", &clf); break;
        case 1: status = classify_fixture(clf, f, &r); break;
        case 2:
            status = octc_classify(clf, f->voxels, f->n_bytes, f->dtype, f->shape[0], f->shape[1], f->shape[2],
                                   f->spacing_mm, "XX", &r) == OCTC_INVALID_ARGUMENT ? OCTC_OK : OCTC_INTERNAL;
            break;
        case 3: status = classify_fixture(clf, &fixtures[4], &r); break;
        case 4: case 6: status = octc_close(clf); break;
        }
        snapshot(&after);
        statuses[step] = status;
        snprintf(messages[step], sizeof messages[step], "%s", octc_last_error());
        if (!differs(&before, &after, differences[step], sizeof differences[step]))
            differences[step][0] = '\0';
    }
    size_t n_written = end_capture(&output, written, sizeof written);
    for (size_t step = 0; step < N_STEPS; step++) {
        CHECK(statuses[step] == OCTC_OK, "%s: %s", steps[step], messages[step]);
        CHECK(differences[step][0] == '\0', "%s: %s", steps[step], differences[step]);
    }
    CHECK(n_written == 0, "the library wrote %zu bytes to stdout or stderr: %s", n_written, written);
    CHECK(n_entries(home) == 0 && n_entries(cache) == 0, "the library wrote into $HOME (%d entries) or "
          "$XDG_CACHE_HOME (%d)", n_entries(home), n_entries(cache));
    rmdir(home);
    rmdir(cache);
    return finish("test_process_state");
}
