/* For the C tests: catch what the process writes to stdout and stderr (file descriptors 1 and 2)
   while the library runs, to check that the library writes nothing. */
#ifndef OCTC_TESTS_OUTPUT_H
#define OCTC_TESTS_OUTPUT_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct captured_output {
    FILE *file;
    int saved_stdout, saved_stderr;
} captured_output;

/* From now on, fds 1 and 2 write into a temporary file. */
static inline captured_output capture_output(void)
{
    captured_output c;
    fflush(stdout);
    fflush(stderr);
    c.file = tmpfile();
    c.saved_stdout = dup(1);
    c.saved_stderr = dup(2);
    if (c.file == NULL || c.saved_stdout < 0 || c.saved_stderr < 0 || dup2(fileno(c.file), 1) < 0
        || dup2(fileno(c.file), 2) < 0) {
        perror("capture_output");
        exit(2);
    }
    return c;
}

/* Put fds 1 and 2 back; copy the start of what was written into text (NUL-terminated) and return
   how many bytes were written in all. */
static inline size_t end_capture(captured_output *c, char *text, size_t size)
{
    fflush(stdout);
    fflush(stderr);
    dup2(c->saved_stdout, 1);
    dup2(c->saved_stderr, 2);
    close(c->saved_stdout);
    close(c->saved_stderr);
    fseek(c->file, 0, SEEK_END);
    long n = ftell(c->file);
    rewind(c->file);
    size_t got = fread(text, 1, size - 1, c->file);
    text[got] = '\0';
    fclose(c->file);
    return n > 0 ? (size_t)n : 0;
}

#endif
