/* The textbook load balancer, in C: servers that process requests, and a
 * balancer that picks one per request and learns from how it went.
 *
 * Three servers, one of them slow. With least_response_time the balancer
 * soon sends most requests to the fast two; every pick is finished with
 * the request's latency and outcome. Then a hash ring places a few keys.
 *
 * Build and run: make c-example */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consenso.h"

struct server {
    const char *name;
    uint64_t latency_ns; /* how long this server takes per request */
    uint64_t id;         /* its id in the balancer */
    unsigned served;
};

/* "Processes" a request: returns its latency; one request in 100 fails. */
static uint64_t process(struct server *s, unsigned request, int *failed) {
    s->served++;
    *failed = request % 100 == 0;
    return s->latency_ns;
}

static void check(consenso_result r, const char *what) {
    if (r != CONSENSO_RESULT_OK) {
        char msg[128];
        size_t n;
        consenso_result_message(r, msg, sizeof msg, &n);
        fprintf(stderr, "%s: %s (%u)\n", what, msg, (unsigned)r);
        exit(1);
    }
}

static struct server *by_id(struct server *servers, size_t n, uint64_t id) {
    for (size_t i = 0; i < n; i++)
        if (servers[i].id == id) return &servers[i];
    return NULL;
}

int main(void) {
    struct server servers[] = {
        {"alpha", 2000000, 0, 0},  /* 2 ms */
        {"beta", 2000000, 0, 0},   /* 2 ms */
        {"gamma", 40000000, 0, 0}, /* 40 ms: the slow one */
    };
    const size_t n = sizeof servers / sizeof servers[0];
    printf("consenso %s: load balancer example\n", consenso_version());

    consenso_balancer *lb = NULL;
    check(consenso_balancer_new(CONSENSO_POLICY_LEAST_RESPONSE_TIME, NULL, &lb), "new");
    for (size_t i = 0; i < n; i++)
        check(consenso_balancer_add(lb, servers[i].name, 1, &servers[i].id), "add");

    for (unsigned request = 1; request <= 3000; request++) {
        consenso_pick *pick = NULL;
        check(consenso_balancer_pick(lb, NULL, 0, &pick), "pick");
        struct server *s = by_id(servers, n, consenso_pick_id(pick));
        int failed = 0;
        uint64_t latency = process(s, request, &failed);
        check(consenso_pick_finish(pick, failed ? CONSENSO_OUTCOME_FAILURE : CONSENSO_OUTCOME_SUCCESS,
                                   latency),
              "finish");
    }

    consenso_endpoint_stats stats[3];
    size_t count = 0;
    check(consenso_balancer_stats(lb, stats, 3, sizeof stats[0], &count), "stats");
    printf("least_response_time over 3000 requests:\n");
    for (size_t i = 0; i < count; i++) {
        struct server *s = by_id(servers, n, stats[i].id);
        printf("  %-6s served %4u  ewma %6.2f ms  ok %4llu  failed %llu\n", s->name, s->served,
               stats[i].ewma_latency * 1e3, (unsigned long long)stats[i].successes,
               (unsigned long long)stats[i].failures);
    }
    consenso_balancer_free(lb);

    const char *names[] = {"alpha", "beta", "gamma"};
    consenso_hash *ring = NULL;
    check(consenso_hash_new(CONSENSO_HASH_ALGORITHM_MAGLEV, 0, names, NULL, 3, &ring), "hash_new");
    const char *keys[] = {"user:1", "user:2", "user:3", "user:4"};
    printf("maglev placement:\n");
    for (size_t k = 0; k < 4; k++) {
        size_t replicas[2], found = 0;
        check(consenso_hash_get_n(ring, (const uint8_t *)keys[k], strlen(keys[k]), 2, replicas,
                                  &found),
              "get_n");
        printf("  %-7s -> %s (then %s)\n", keys[k], names[replicas[0]], names[replicas[1]]);
    }
    consenso_hash_free(ring);
    return 0;
}
