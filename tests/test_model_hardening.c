/*
 * test_model_hardening.c - the library side of issue 7's 2.2 and 2.6:
 *   - a network, its workspaces or its trainer that cannot fit the machine
 *     is BP_ENOMEM with its size ("this network needs ..."), computed
 *     before anything is allocated and without size_t overflow;
 *   - bp_net_load reads /dev/zero, a pipe that never ends and a file
 *     followed by garbage in bounded memory;
 *   - loading a model with many metadata keys is linear (no bp_net_set_meta
 *     search per key).
 * Nothing here is timed; the sizes are far beyond any machine, so the
 * checks hold everywhere, ASan included (no allocation is attempted).
 */
#include "backprop.h"
#include "check.h"
#include "internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_huge_networks(void)
{
    bp_net *net = (bp_net *)1;
    bp_error err = {0};
    /* 10^16 parameters: 36 PiB. */
    bp_status s = bp_net_create(&net, 4, "dense(100000000) dense(100000000)", 1, &err);
    CHECK(s == BP_ENOMEM && net == NULL, "10^16 parameters: %s", bp_status_name(s));
    CHECK(strstr(err.message, "this network needs") && strstr(err.message, "PiB") &&
              strstr(err.message, "parameters"),
          "message names the size: %s", err.message);

    /* 1024 layers of 10^8 x 10^8: the parameter count overflows 64 bits
     * without saturation; it must still be a clean BP_ENOMEM. */
    size_t cap = 1000 * 17 + 1;
    char *spec = malloc(cap);
    CHECK(spec != NULL, "malloc");
    if (spec) {
        spec[0] = '\0';
        for (int i = 0; i < 1000; i++) strcat(spec, "dense(100000000) ");
        net = NULL;
        s = bp_net_create(&net, 100000000, spec, 1, &err);
        CHECK(s == BP_ENOMEM && net == NULL, "10^19 parameters: %s", bp_status_name(s));
        CHECK(strstr(err.message, "this network needs") != NULL, "overflow message: %s", err.message);
        free(spec);
    }

    /* Parameters fit, activations for a huge batch do not: bp_net_reserve. */
    net = NULL;
    s = bp_net_create(&net, 1, "dense(1000000) relu dense(1)", 1, &err);
    CHECK(s == BP_OK, "small net: %s", err.message);
    if (s == BP_OK) {
        s = bp_net_reserve(net, 2000000000, &err);
        CHECK(s == BP_ENOMEM, "reserve 2*10^9 samples: %s", bp_status_name(s));
        CHECK(strstr(err.message, "activations for batch 2000000000") != NULL, "reserve message: %s",
              err.message);
        CHECK(net->max_batch == 0 && net->act_full == NULL && net->infer_batch == 0 &&
                  net->pp[0] == NULL && net->pp[1] == NULL,
              "nothing reserved after the refusal");
        /* The trainer's reservation (every layer's output) is refused too. */
        s = bp_net_reserve_train(net, 2000000000, &err);
        CHECK(s == BP_ENOMEM && strstr(err.message, "activations for batch 2000000000") != NULL,
              "training reservation for 2*10^9 samples: %s", err.message);
        CHECK(net->max_batch == 0 && net->act_full == NULL, "nothing reserved after that refusal");

        /* The trainer's estimate includes its batch workspaces. */
        bp_train_config cfg;
        bp_train_config_default(&cfg, BP_ADAM);
        cfg.loss = BP_LOSS_MSE;
        bp_trainer *tr = (bp_trainer *)1;
        s = bp_trainer_create(&tr, net, &cfg, 2000000000, &err);
        CHECK(s == BP_ENOMEM && tr == NULL, "trainer for batch 2*10^9: %s", bp_status_name(s));
        CHECK(strstr(err.message, "gradients, optimizer state, activations for batch 2000000000") != NULL,
              "trainer message: %s", err.message);
        /* A normal batch still works. */
        s = bp_trainer_create(&tr, net, &cfg, 4, &err);
        CHECK(s == BP_OK, "trainer for batch 4: %s", err.message);
        bp_trainer_free(s == BP_OK ? tr : NULL);
    }
    bp_net_free(net);

    /* The same estimate before the network exists. */
    bp_train_config cfg;
    bp_train_config_default(&cfg, BP_ADAM);
    s = bp_train_memory_check("dense(100000000) relu dense(3)", 4, &cfg, 2000000, &err);
    CHECK(s == BP_ENOMEM && strstr(err.message, "activations for batch 2000000"),
          "bp_train_memory_check, batch 2*10^6: %s", err.message);
    s = bp_train_memory_check("dense(16) relu dense(3)", 4, &cfg, 32, &err);
    CHECK(s == BP_OK, "bp_train_memory_check, a small network: %s", bp_status_name(s));
    s = bp_train_memory_check("dense(", 4, &cfg, 32, &err);
    CHECK(s == BP_ESPEC, "bp_train_memory_check, a bad spec: %s", bp_status_name(s));

    s = bp_memory_check(UINT64_MAX, "this buffer", NULL, &err);
    CHECK(s == BP_ENOMEM && strstr(err.message, "this buffer needs more than 16 EiB; ") != NULL,
          "bp_memory_check(UINT64_MAX): %s", err.message);
    s = bp_memory_check(4096, "this buffer", "a page", &err);
    CHECK(s == BP_OK, "bp_memory_check(4096): %s", bp_status_name(s));
}

/* Load from a pipe fed by a child: `head` bytes, then endless zeros. */
static bp_status load_from_endless_pipe(const uint8_t *head, size_t n, bp_net **out, bp_error *err)
{
    int fd[2];
    if (pipe(fd) != 0) return BP_EIO;
    pid_t pid = fork();
    if (pid < 0) return BP_EIO;
    if (pid == 0) {
        close(fd[0]);
        signal(SIGPIPE, SIG_DFL);
        static uint8_t zeros[65536];
        if (n && write(fd[1], head, n) != (ssize_t)n) _exit(1);
        for (;;)
            if (write(fd[1], zeros, sizeof zeros) < 0) _exit(0);
    }
    close(fd[1]);
    char path[64];
    snprintf(path, sizeof path, "/dev/fd/%d", fd[0]);
    bp_status s = bp_net_load(out, path, err);
    close(fd[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return s;
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* Run fn in a child process with a 20 s alarm and (outside ASan, which
 * reserves terabytes of address space) a 2 GB address-space limit, so a
 * reader that grows without bound fails the test instead of exhausting the
 * machine. Returns the child's status: 0 when every CHECK in fn passed. */
static int run_bounded(void (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
#ifndef UNDER_ASAN
        struct rlimit rl = {(rlim_t)2 << 30, (rlim_t)2 << 30};
        setrlimit(RLIMIT_AS, &rl);
#endif
        alarm(20);
        int before = check_failed;
        fn();
        fflush(stdout);
        _exit(check_failed == before ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_unbounded_files(void)
{
    bp_net *net = NULL;
    bp_error err = {0};
    bp_status s = bp_net_load(&net, "/dev/zero", &err);
    CHECK(s == BP_EFORMAT && net == NULL, "/dev/zero: %s", bp_status_name(s));
    CHECK(strstr(err.message, "/dev/zero") && strstr(err.message, "header"), "/dev/zero: %s",
          err.message);

    /* A valid model, then zeros forever: only the model is read. */
    bp_net *m = NULL;
    s = bp_net_create(&m, 3, "dense(2) tanh dense(1)", 5, &err);
    CHECK(s == BP_OK, "create: %s", err.message);
    uint8_t *img = NULL;
    size_t size = 0;
    if (s == BP_OK) s = bp_net_save_buffer(m, &img, &size, &err);
    CHECK(s == BP_OK, "save_buffer: %s", err.message);
    if (s == BP_OK) {
        s = load_from_endless_pipe(img, size, &net, &err);
        CHECK(s == BP_OK && net && bp_net_param_count(net) == bp_net_param_count(m),
              "model + endless pipe: %s", s == BP_OK ? "ok" : err.message);
        if (s == BP_OK)
            CHECK(memcmp(net->params, m->params, m->n_params * sizeof(bp_real)) == 0,
                  "parameters read from the pipe");
        bp_net_free(net);
        net = NULL;
        /* Only zeros: a zero header length, refused after 8 bytes. */
        s = load_from_endless_pipe(NULL, 0, &net, &err);
        CHECK(s == BP_EFORMAT && net == NULL, "endless zeros: %s", bp_status_name(s));
    }
    free(img);
    bp_net_free(m);
}

static void test_many_meta_keys(void)
{
    bp_net *m = NULL;
    bp_error err = {0};
    CHECK(bp_net_create(&m, 2, "dense(1)", 1, &err) == BP_OK, "create");
    if (!m) return;
    char k[32];
    int n = 60000;
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "key_%d", i);
        /* set_meta searches: fine for building, the load must not. */
        if (bp_net_meta_append(m, k, "v", &err) != BP_OK) break;
    }
    uint8_t *img = NULL;
    size_t size = 0;
    bp_net *back = NULL;
    CHECK(bp_net_save_buffer(m, &img, &size, &err) == BP_OK, "save: %s", err.message);
    if (img) CHECK(bp_net_load_buffer(&back, img, size, "many", &err) == BP_OK, "load: %s", err.message);
    if (back) {
        CHECK(bp_net_meta_count(back) == n + 3, "all %d keys back (%d)", n + 3, bp_net_meta_count(back));
        const char *v = bp_net_get_meta(back, "key_59999");
        CHECK(v && !strcmp(v, "v"), "last key readable");
        /* set_meta on an existing key still replaces, not duplicates. */
        CHECK(bp_net_set_meta(back, "key_7", "w", &err) == BP_OK &&
                  bp_net_meta_count(back) == n + 3 && !strcmp(bp_net_get_meta(back, "key_7"), "w"),
              "set_meta replaces");
    }
    bp_net_free(back);
    free(img);
    bp_net_free(m);
}

int main(void)
{
    test_huge_networks();
    int st = run_bounded(test_unbounded_files);
    CHECK(st == 0, "model files that never end are read in bounded memory and time (child status %d)",
          st);
    test_many_meta_keys();
    return check_done("test_model_hardening");
}
