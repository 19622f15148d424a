/* The C API as a C program uses it, under AddressSanitizer and
 * UndefinedBehaviorSanitizer (make c-test). Each check names itself when
 * it fails; the program exits non-zero on the first failure. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consenso.h"

static int checks;

#define CHECK(cond)                                                          \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define OK(call) CHECK((call) == CONSENSO_RESULT_OK)

static consenso_balancer *balancer(consenso_policy policy, const char *const *names,
                                   const uint32_t *weights, size_t n) {
    consenso_balancer *b = NULL;
    OK(consenso_balancer_new(policy, NULL, &b));
    for (size_t i = 0; i < n; i++) OK(consenso_balancer_add(b, names[i], weights ? weights[i] : 1, NULL));
    return b;
}

/* The names of k successive picks, each finished as a success. */
static void pick_names(consenso_balancer *b, size_t k, char *out, size_t cap) {
    out[0] = '\0';
    for (size_t i = 0; i < k; i++) {
        consenso_pick *p = NULL;
        OK(consenso_balancer_pick(b, NULL, 0, &p));
        const char *name;
        size_t len;
        OK(consenso_pick_name(p, &name, &len));
        if (i > 0) strncat(out, " ", cap - strlen(out) - 1);
        strncat(out, name, len < cap - strlen(out) - 1 ? len : cap - strlen(out) - 1);
        OK(consenso_pick_finish(p, CONSENSO_OUTCOME_SUCCESS, CONSENSO_LATENCY_MEASURED));
    }
}

static void test_version_and_messages(void) {
    CHECK(strcmp(consenso_version(), CONSENSO_VERSION) == 0);
    char msg[128];
    size_t n = 0;
    OK(consenso_result_message(CONSENSO_RESULT_UNKNOWN_ENDPOINT, msg, sizeof msg, &n));
    CHECK(n == strlen(msg) && strstr(msg, "endpoint") != NULL);
    char tiny[3];
    size_t untouched = 77;
    CHECK(consenso_result_message(CONSENSO_RESULT_OK, tiny, sizeof tiny, &untouched) ==
          CONSENSO_RESULT_BUFFER_TOO_SMALL);
    CHECK(untouched == strlen("success"));
    CHECK(consenso_result_message(CONSENSO_RESULT_NOT_LEADER, NULL, 0, &n) == CONSENSO_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == strlen("this node is not the leader"));
}

static void test_policies(void) {
    const char *names[] = {"a", "b", "c"};
    const uint32_t weights[] = {5, 1, 1};
    char seq[256];
    consenso_balancer *wrr = balancer(CONSENSO_POLICY_WEIGHTED_ROUND_ROBIN, names, weights, 3);
    pick_names(wrr, 7, seq, sizeof seq);
    CHECK(strcmp(seq, "a a b a c a a") == 0);
    consenso_balancer_free(wrr);

    consenso_balancer *rr = balancer(CONSENSO_POLICY_ROUND_ROBIN, names, NULL, 3);
    pick_names(rr, 4, seq, sizeof seq);
    CHECK(strcmp(seq, "a b c a") == 0);
    /* Re-weighting and removing by id keep the rest. */
    uint64_t id = 0;
    OK(consenso_balancer_select(rr, NULL, 0, &id));
    CHECK(id == 2); /* b's turn */
    OK(consenso_balancer_remove_id(rr, id));
    size_t len = 0;
    OK(consenso_balancer_len(rr, &len));
    CHECK(len == 2);
    consenso_endpoint_stats stats[3];
    size_t count = 0;
    OK(consenso_balancer_stats(rr, stats, 3, sizeof stats[0], &count));
    CHECK(count == 2 && stats[0].id == 1 && stats[0].successes == 2 && stats[1].id == 3);
    char name[8];
    size_t written = 0;
    OK(consenso_balancer_endpoint_name(rr, 3, name, sizeof name, &written));
    CHECK(written == 1 && strcmp(name, "c") == 0);
    consenso_balancer_free(rr);
}

static void test_consistent_hash_with_a_bound(void) {
    consenso_balancer_options *o = NULL;
    OK(consenso_balancer_options_new(&o));
    OK(consenso_balancer_options_set_hash(o, CONSENSO_HASH_ALGORITHM_MAGLEV, 1009));
    CHECK(consenso_balancer_options_set_bound(o, 1.0) == CONSENSO_RESULT_INVALID_ARGUMENT);
    OK(consenso_balancer_options_set_bound(o, 1.25));
    consenso_balancer *b = NULL;
    OK(consenso_balancer_new(CONSENSO_POLICY_CONSISTENT_HASH, o, &b));
    consenso_balancer_options_free(o);
    const char *names[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < 4; i++) OK(consenso_balancer_add(b, names[i], 1, NULL));
    consenso_pick *p = NULL;
    CHECK(consenso_balancer_pick(b, NULL, 0, &p) == CONSENSO_RESULT_KEY_REQUIRED);
    CHECK(p == NULL);
    /* Hold 40 picks of one key: the bound spreads them, ceil(1.25 * 40 / 4) = 13 at most. */
    consenso_pick *held[40];
    for (size_t i = 0; i < 40; i++) OK(consenso_balancer_pick(b, (const uint8_t *)"hot", 3, &held[i]));
    consenso_endpoint_stats stats[4];
    size_t count = 0;
    OK(consenso_balancer_stats(b, stats, 4, sizeof stats[0], &count));
    for (size_t i = 0; i < count; i++) CHECK(stats[i].in_flight <= 13);
    for (size_t i = 0; i < 40; i++) consenso_pick_free(held[i]);
    OK(consenso_balancer_stats(b, stats, 4, sizeof stats[0], &count));
    for (size_t i = 0; i < count; i++) CHECK(stats[i].in_flight == 0 && stats[i].successes == 0);
    consenso_balancer_free(b);
}

static void test_bad_input(void) {
    consenso_balancer *b = NULL;
    CHECK(consenso_balancer_new(99, NULL, &b) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_balancer_new(CONSENSO_POLICY_RANDOM, NULL, NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    OK(consenso_balancer_new(CONSENSO_POLICY_RANDOM, NULL, &b));
    consenso_pick *p = NULL;
    CHECK(consenso_balancer_pick(b, NULL, 0, &p) == CONSENSO_RESULT_NO_ENDPOINTS);
    CHECK(consenso_balancer_add(b, "x", 0, NULL) == CONSENSO_RESULT_INVALID_WEIGHT);
    CHECK(consenso_balancer_add(b, NULL, 1, NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_balancer_add(b, "\xff\xfe", 1, NULL) == CONSENSO_RESULT_INVALID_UTF8);
    OK(consenso_balancer_add(b, "x", 1, NULL));
    CHECK(consenso_balancer_add(b, "x", 1, NULL) == CONSENSO_RESULT_DUPLICATE_ENDPOINT);
    CHECK(consenso_balancer_remove(b, "nope") == CONSENSO_RESULT_UNKNOWN_ENDPOINT);
    CHECK(consenso_balancer_set_weight(b, "nope", 2) == CONSENSO_RESULT_UNKNOWN_ENDPOINT);
    CHECK(consenso_balancer_set_weight(b, "x", 0) == CONSENSO_RESULT_INVALID_WEIGHT);
    CHECK(consenso_balancer_pick(NULL, NULL, 0, &p) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_pick_finish(NULL, CONSENSO_OUTCOME_SUCCESS, 0) == CONSENSO_RESULT_NULL_ARGUMENT);
    OK(consenso_balancer_pick(b, NULL, 0, &p));
    CHECK(consenso_pick_finish(p, 42, 0) == CONSENSO_RESULT_INVALID_ARGUMENT);
    /* Refused: the pick is still ours; a pick also outlives its balancer. */
    consenso_balancer_free(b);
    OK(consenso_pick_finish(p, CONSENSO_OUTCOME_FAILURE, 1000));
    consenso_balancer_free(NULL);
    consenso_pick_free(NULL);
    consenso_hash_free(NULL);
    consenso_balancer_options_free(NULL);
}

/* Every function that fills a caller's buffer reports the size it needs. */
static void test_sizes_needed_are_reported(void) {
    consenso_balancer *b = NULL;
    OK(consenso_balancer_new(CONSENSO_POLICY_ROUND_ROBIN, NULL, &b));
    uint64_t id = 0;
    OK(consenso_balancer_add(b, "a-longer-name", 1, &id));
    OK(consenso_balancer_add(b, "b", 1, NULL));
    size_t written = 0;
    CHECK(consenso_balancer_endpoint_name(b, id, NULL, 0, &written) == CONSENSO_RESULT_BUFFER_TOO_SMALL);
    CHECK(written == strlen("a-longer-name"));
    char small[4] = "xyz";
    written = 0;
    CHECK(consenso_balancer_endpoint_name(b, id, small, sizeof small, &written) == CONSENSO_RESULT_BUFFER_TOO_SMALL);
    CHECK(written == 13 && strcmp(small, "xyz") == 0);
    char *exact = malloc(written + 1);
    CHECK(exact != NULL);
    OK(consenso_balancer_endpoint_name(b, id, exact, written + 1, &written));
    CHECK(strcmp(exact, "a-longer-name") == 0);
    free(exact);
    CHECK(consenso_balancer_endpoint_name(b, id, small, sizeof small, NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_balancer_endpoint_name(b, 999, small, sizeof small, &written) == CONSENSO_RESULT_UNKNOWN_ENDPOINT);
    size_t count = 0;
    CHECK(consenso_balancer_stats(b, NULL, 0, sizeof(consenso_endpoint_stats), &count) == CONSENSO_RESULT_BUFFER_TOO_SMALL);
    CHECK(count == 2);
    consenso_endpoint_stats one[1];
    count = 0;
    CHECK(consenso_balancer_stats(b, one, 1, sizeof one[0], &count) == CONSENSO_RESULT_BUFFER_TOO_SMALL);
    CHECK(count == 2);
    CHECK(consenso_balancer_stats(b, one, 1, 4, &count) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_balancer_stats(b, one, 1, sizeof one[0], NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_balancer_stats(b, one, 1, sizeof one[0] - 1, &count) == CONSENSO_RESULT_INVALID_ARGUMENT);
    /* A later caller's larger entries: filled up to this version's fields. */
    struct later { consenso_endpoint_stats s; uint8_t extra[8]; };
    struct later room[2];
    memset(room, 0xAB, sizeof room);
    OK(consenso_balancer_stats(b, &room[0].s, 2, sizeof(struct later), &count));
    CHECK(count == 2 && room[0].s.id == id && room[1].s.weight == 1);
    CHECK(room[0].extra[0] == 0xAB && room[1].extra[7] == 0xAB);
    consenso_balancer_free(b);
}

/* An endpoint's user_data comes back with its picks. */
static void test_user_data_rides_on_endpoints(void) {
    consenso_balancer *b = NULL;
    OK(consenso_balancer_new(CONSENSO_POLICY_ROUND_ROBIN, NULL, &b));
    int pool_a = 1, pool_b = 2;
    OK(consenso_balancer_add_with_data(b, "a", 1, &pool_a, NULL));
    OK(consenso_balancer_add_with_data(b, "b", 1, &pool_b, NULL));
    OK(consenso_balancer_add(b, "c", 1, NULL));
    CHECK(consenso_balancer_add_with_data(b, "a", 1, &pool_b, NULL) == CONSENSO_RESULT_DUPLICATE_ENDPOINT);
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        consenso_pick *p = NULL;
        OK(consenso_balancer_pick(b, NULL, 0, &p));
        const char *name;
        size_t len;
        OK(consenso_pick_name(p, &name, &len));
        void *data = consenso_pick_user_data(p);
        if (name[0] == 'a') { CHECK(data == &pool_a); seen |= 1; }
        if (name[0] == 'b') { CHECK(data == &pool_b); seen |= 2; }
        if (name[0] == 'c') { CHECK(data == NULL); seen |= 4; }
        OK(consenso_pick_finish(p, CONSENSO_OUTCOME_SUCCESS, CONSENSO_LATENCY_MEASURED));
    }
    CHECK(seen == 7);
    CHECK(consenso_pick_user_data(NULL) == NULL);
    consenso_balancer_free(b);
}

/* The same bad settings the core refuses, refused by the setters, which then
 * change nothing: the options keep the last good values. */
static void test_settings_are_checked_by_the_core(void) {
    consenso_balancer_options *o = NULL;
    OK(consenso_balancer_options_new(&o));
    OK(consenso_balancer_options_set_ejection(o, 1, 60000, 120000, 1.0));
    CHECK(consenso_balancer_options_set_ejection(o, 7, 60000, 1000, 0.5) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_balancer_options_set_ejection(o, 7, 1, 2, 0.0 / 0.0) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_balancer_options_set_ejection(o, 7, 1, 2, 1.5) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_balancer_options_set_panic_threshold(o, 0.0 / 0.0) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_balancer_options_set_panic_threshold(o, -0.5) == CONSENSO_RESULT_INVALID_ARGUMENT);
    OK(consenso_balancer_options_set_panic_threshold(o, 0.0));
    CHECK(consenso_balancer_options_set_ewma_decay(o, 0) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_balancer_options_set_bound(o, 0.0 / 0.0) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_balancer_options_set_bound(o, 1.0 / 0.0) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_balancer_options_set_hash(o, CONSENSO_HASH_ALGORITHM_MAGLEV, 0xFFFFFFFFu) ==
          CONSENSO_RESULT_INVALID_ARGUMENT);
    consenso_balancer *b = NULL;
    OK(consenso_balancer_new(CONSENSO_POLICY_ROUND_ROBIN, o, &b));
    OK(consenso_balancer_add(b, "bad", 1, NULL));
    OK(consenso_balancer_add(b, "good", 1, NULL));
    /* One failure ejects: the refused call's 7 did not replace the 1. */
    consenso_pick *p = NULL;
    OK(consenso_balancer_pick(b, NULL, 0, &p));
    CHECK(consenso_pick_id(p) == 1);
    OK(consenso_pick_finish(p, CONSENSO_OUTCOME_FAILURE, 1000));
    consenso_endpoint_stats stats[2];
    size_t count = 0;
    OK(consenso_balancer_stats(b, stats, 2, sizeof stats[0], &count));
    CHECK(stats[0].ejected && stats[0].ejections == 1);
    consenso_balancer_free(b);
    /* Hashing options are for the consistent_hash policy only. */
    OK(consenso_balancer_options_set_bound(o, 1.5));
    b = NULL;
    CHECK(consenso_balancer_new(CONSENSO_POLICY_RANDOM, o, &b) == CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(b == NULL);
    OK(consenso_balancer_new(CONSENSO_POLICY_CONSISTENT_HASH, o, &b));
    consenso_balancer_free(b);
    consenso_balancer_options_free(o);
}

/* Times as long as the API takes them: an ejection of UINT64_MAX ms lasts
 * (and no clock arithmetic wraps or panics), a slow start of UINT64_MAX ms
 * lets every call work, a latency of UINT64_MAX - 1 ns is recorded. */
static void test_times_at_their_limits(void) {
    consenso_balancer_options *o = NULL;
    OK(consenso_balancer_options_new(&o));
    OK(consenso_balancer_options_set_ejection(o, 1, UINT64_MAX, UINT64_MAX, 1.0));
    OK(consenso_balancer_options_set_panic_threshold(o, 0.0));
    OK(consenso_balancer_options_set_slow_start(o, UINT64_MAX));
    OK(consenso_balancer_options_set_ewma_decay(o, UINT64_MAX));
    consenso_balancer *b = NULL;
    OK(consenso_balancer_new(CONSENSO_POLICY_LEAST_RESPONSE_TIME, o, &b));
    consenso_balancer_options_free(o);
    OK(consenso_balancer_add(b, "a", 1, NULL));
    OK(consenso_balancer_add(b, "b", 1, NULL));
    size_t len = 0;
    OK(consenso_balancer_len(b, &len));
    CHECK(len == 2);
    consenso_pick *p = NULL;
    OK(consenso_balancer_pick(b, NULL, 0, &p));
    uint64_t failed = consenso_pick_id(p);
    OK(consenso_pick_finish(p, CONSENSO_OUTCOME_FAILURE, UINT64_MAX - 1));
    for (int i = 0; i < 50; i++) {
        OK(consenso_balancer_pick(b, NULL, 0, &p));
        CHECK(consenso_pick_id(p) != failed);
        OK(consenso_pick_finish(p, CONSENSO_OUTCOME_SUCCESS, CONSENSO_LATENCY_MEASURED));
    }
    consenso_endpoint_stats stats[2];
    size_t count = 0;
    OK(consenso_balancer_stats(b, stats, 2, sizeof stats[0], &count));
    CHECK(stats[failed - 1].ejected && stats[failed - 1].ewma_latency > 1e9);
    consenso_balancer_free(b);
}

/* Many endpoints in one call: one rebuild, all or nothing, consecutive ids,
 * the same placement as a hash ring of the same names. */
static void test_add_many(void) {
    enum { N = 2000 };
    static char storage[N][16];
    static const char *names[N];
    for (int i = 0; i < N; i++) {
        snprintf(storage[i], sizeof storage[i], "node-%d", i);
        names[i] = storage[i];
    }
    consenso_balancer_options *o = NULL;
    OK(consenso_balancer_options_new(&o));
    OK(consenso_balancer_options_set_hash(o, CONSENSO_HASH_ALGORITHM_MAGLEV, 0));
    consenso_balancer *b = NULL;
    OK(consenso_balancer_new(CONSENSO_POLICY_CONSISTENT_HASH, o, &b));
    consenso_balancer_options_free(o);
    static uint64_t ids[N];
    OK(consenso_balancer_add_many(b, names, NULL, N, ids));
    CHECK(ids[0] == 1 && ids[N - 1] == N);
    consenso_hash *h = NULL;
    OK(consenso_hash_new(CONSENSO_HASH_ALGORITHM_MAGLEV, 0, names, NULL, N, &h));
    for (int k = 0; k < 100; k++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%d", k);
        uint64_t id = 0;
        size_t index = 0;
        OK(consenso_balancer_select(b, (const uint8_t *)key, (size_t)n, &id));
        OK(consenso_hash_get(h, (const uint8_t *)key, (size_t)n, &index));
        CHECK(id == index + 1);
    }
    consenso_hash_free(h);
    /* All or nothing: a taken name, a repeated one, a zero weight, a NULL. */
    const char *more[] = {"x", "node-7"};
    const char *twice[] = {"x", "x"};
    const char *with_null[] = {"x", NULL};
    const uint32_t zero[] = {1, 0};
    uint64_t untouched[2] = {77, 77};
    CHECK(consenso_balancer_add_many(b, more, NULL, 2, untouched) == CONSENSO_RESULT_DUPLICATE_ENDPOINT);
    CHECK(consenso_balancer_add_many(b, twice, NULL, 2, untouched) == CONSENSO_RESULT_DUPLICATE_ENDPOINT);
    CHECK(consenso_balancer_add_many(b, more, zero, 2, untouched) == CONSENSO_RESULT_INVALID_WEIGHT);
    CHECK(consenso_balancer_add_many(b, with_null, NULL, 2, untouched) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(consenso_balancer_add_many(b, NULL, NULL, 2, untouched) == CONSENSO_RESULT_NULL_ARGUMENT);
    CHECK(untouched[0] == 77 && untouched[1] == 77);
    size_t len = 0;
    OK(consenso_balancer_len(b, &len));
    CHECK(len == N);
    OK(consenso_balancer_add_many(b, NULL, NULL, 0, NULL));
    uint64_t id = 0;
    OK(consenso_balancer_add(b, "x", 1, &id));
    CHECK(id == N + 1); /* no refused call used up an id */
    consenso_balancer_free(b);
}

/* Weights count under every policy: 9 to 1 gives about nine picks in ten. */
static void test_weights_count_under_every_policy(void) {
    const char *names[] = {"light", "heavy"};
    const uint32_t weights[] = {1, 9};
    const consenso_policy policies[] = {CONSENSO_POLICY_RANDOM, CONSENSO_POLICY_ROUND_ROBIN,
                                        CONSENSO_POLICY_WEIGHTED_ROUND_ROBIN,
                                        CONSENSO_POLICY_LEAST_CONNECTIONS,
                                        CONSENSO_POLICY_LEAST_RESPONSE_TIME};
    for (size_t k = 0; k < sizeof policies / sizeof policies[0]; k++) {
        consenso_balancer *b = NULL;
        OK(consenso_balancer_new(policies[k], NULL, &b));
        OK(consenso_balancer_add_many(b, names, weights, 2, NULL));
        /* Held open, so the load-aware policies see the load. */
        static consenso_pick *held[1000];
        int heavy = 0;
        for (int i = 0; i < 1000; i++) {
            OK(consenso_balancer_pick(b, NULL, 0, &held[i]));
            heavy += consenso_pick_id(held[i]) == 2;
        }
        for (int i = 0; i < 1000; i++) consenso_pick_free(held[i]);
        CHECK(heavy >= 860 && heavy <= 940);
        consenso_balancer_free(b);
    }
}

struct worker {
    consenso_balancer *b;
    int picks;
};

static void *pick_loop(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < w->picks; i++) {
        consenso_pick *p = NULL;
        if (consenso_balancer_pick(w->b, NULL, 0, &p) != CONSENSO_RESULT_OK) continue;
        consenso_pick_finish(p, CONSENSO_OUTCOME_SUCCESS, 1000);
    }
    return NULL;
}

static void test_threads_lose_no_counts(void) {
    const char *names[] = {"a", "b", "c", "d"};
    consenso_balancer *b = balancer(CONSENSO_POLICY_LEAST_CONNECTIONS, names, NULL, 4);
    pthread_t threads[4];
    struct worker w = {b, 20000};
    for (int t = 0; t < 4; t++) CHECK(pthread_create(&threads[t], NULL, pick_loop, &w) == 0);
    /* Meanwhile, churn the endpoint set. */
    for (int i = 0; i < 200; i++) {
        OK(consenso_balancer_add(b, "e", 1, NULL));
        OK(consenso_balancer_set_weight(b, "a", 1 + i % 3));
        OK(consenso_balancer_remove(b, "e"));
    }
    for (int t = 0; t < 4; t++) CHECK(pthread_join(threads[t], NULL) == 0);
    consenso_endpoint_stats stats[4];
    size_t count = 0;
    OK(consenso_balancer_stats(b, stats, 4, sizeof stats[0], &count));
    uint64_t in_flight = 0, successes = 0;
    for (size_t i = 0; i < count; i++) {
        in_flight += stats[i].in_flight;
        successes += stats[i].successes;
    }
    CHECK(in_flight == 0);
    /* Picks of "e" went with it; a, b, c, d got the rest. */
    CHECK(successes <= 80000 && successes > 40000);
    consenso_balancer_free(b);
}

static void test_hash(void) {
    const char *names[] = {"a", "b", "c"};
    const uint32_t weights[] = {1, 2, 1};
    consenso_hash *h = NULL;
    CHECK(consenso_hash_new(CONSENSO_HASH_ALGORITHM_JUMP, 0, names, weights, 3, &h) ==
          CONSENSO_RESULT_WEIGHTS_UNSUPPORTED);
    CHECK(consenso_hash_new(CONSENSO_HASH_ALGORITHM_RING, 0, names, NULL, 0, &h) ==
          CONSENSO_RESULT_NO_ENDPOINTS);
    CHECK(h == NULL);
    OK(consenso_hash_new(CONSENSO_HASH_ALGORITHM_RENDEZVOUS, 0, names, weights, 3, &h));
    size_t first = 9, again = 9, n = 0, top[3];
    OK(consenso_hash_get(h, (const uint8_t *)"key", 3, &first));
    OK(consenso_hash_get(h, (const uint8_t *)"key", 3, &again));
    CHECK(first < 3 && first == again);
    OK(consenso_hash_get_n(h, (const uint8_t *)"key", 3, 3, top, &n));
    CHECK(n == 3 && top[0] == first && top[1] != top[0] && top[2] != top[1] && top[2] != top[0]);
    size_t by_int = 9;
    OK(consenso_hash_get_u64(h, 12345, &by_int));
    CHECK(by_int < 3);
    const uint64_t loads[] = {0, 0, 0};
    CHECK(consenso_hash_get_bounded(h, (const uint8_t *)"key", 3, loads, 3, -0.5, &first) ==
          CONSENSO_RESULT_INVALID_ARGUMENT);
    CHECK(consenso_hash_get_bounded(h, (const uint8_t *)"key", 3, loads, 2, 0.25, &first) ==
          CONSENSO_RESULT_INVALID_ARGUMENT);
    const char *name;
    size_t len;
    OK(consenso_hash_name(h, 1, &name, &len));
    CHECK(len == 1 && name[0] == 'b');
    CHECK(consenso_hash_name(h, 3, &name, &len) == CONSENSO_RESULT_UNKNOWN_ENDPOINT);
    consenso_hash_free(h);
}

/* The core's own words reach C: consenso_last_error_message. */
static void test_last_error_keeps_the_detail(void) {
    consenso_balancer *b = NULL;
    OK(consenso_balancer_new(CONSENSO_POLICY_ROUND_ROBIN, NULL, &b));
    OK(consenso_balancer_add(b, "alpha", 1, NULL));
    CHECK(consenso_balancer_add(b, "alpha", 1, NULL) == CONSENSO_RESULT_DUPLICATE_ENDPOINT);
    char msg[128];
    size_t needed = 0;
    OK(consenso_last_error_message(msg, sizeof msg, &needed));
    CHECK(strcmp(msg, "endpoint \"alpha\" already exists") == 0);
    /* A call that succeeds leaves it; another thread has its own. */
    OK(consenso_balancer_add(b, "beta", 1, NULL));
    OK(consenso_last_error_message(msg, sizeof msg, &needed));
    CHECK(strstr(msg, "alpha") != NULL);
    /* A code with no more to say gives the code's own message. */
    CHECK(consenso_balancer_add(NULL, "x", 1, NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    OK(consenso_last_error_message(msg, sizeof msg, &needed));
    CHECK(strstr(msg, "NULL") != NULL);
    CHECK(consenso_last_error_message(msg, sizeof msg, NULL) == CONSENSO_RESULT_NULL_ARGUMENT);
    consenso_balancer_free(b);
}

int main(void) {
    test_version_and_messages();
    test_last_error_keeps_the_detail();
    test_policies();
    test_consistent_hash_with_a_bound();
    test_bad_input();
    test_sizes_needed_are_reported();
    test_user_data_rides_on_endpoints();
    test_settings_are_checked_by_the_core();
    test_times_at_their_limits();
    test_add_many();
    test_weights_count_under_every_policy();
    test_threads_lose_no_counts();
    test_hash();
    printf("C API: %d checks passed\n", checks);
    return 0;
}
